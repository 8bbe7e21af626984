"""What the model must do with its input: ignore padding and undetected points, stay deterministic in eval,
regularize only in training, handle empty and one-frame sequences, and learn a simple sign-like task."""

from __future__ import annotations

import pytest
import torch
from model_testing import NUM_CLASSES, make_batch, tiny_config

from kernels.registry import KernelConfig
from slr_fast.model import SignModel, lengths_from_mask
from slr_fast.model.layers import drop_path

# Changing padded content touches no arithmetic of the valid frames: only fp32 noise from BLAS blocking remains.
PAD_TOL = {"atol": 1e-6, "rtol": 1e-5}


def logits_of(model, batch):
    out = model(batch["x"], batch["mask"], batch["length"])
    return torch.cat([out.logits, *out.aux_logits], dim=-1)  # every head at once


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_frames_beyond_length_do_not_change_the_logits(backend):
    model = SignModel(tiny_config(), kernels=KernelConfig.parse(backend)).eval()
    batch = make_batch(B=4, T=20, lengths=[20, 13, 5, 1])
    ref = logits_of(model, batch)
    beyond = torch.arange(20)[None, :] >= batch["length"][:, None]  # (B, T)
    noisy = dict(batch)
    noisy["x"] = torch.where(beyond[..., None, None], torch.randn_like(batch["x"]) * 100, batch["x"])
    noisy["mask"] = torch.where(beyond[..., None], torch.ones_like(batch["mask"]), batch["mask"])
    torch.testing.assert_close(logits_of(model, noisy), ref, **PAD_TOL)
    # More padding (a longer batch) gives the same logits too, up to reordered fp32 sums.
    longer = {k: v for k, v in batch.items()}
    longer["x"] = torch.cat([batch["x"], torch.randn(4, 9, 87, 2)], dim=1)
    longer["mask"] = torch.cat([batch["mask"], torch.ones(4, 9, 87)], dim=1)
    torch.testing.assert_close(logits_of(model, longer), ref, atol=1e-5, rtol=1e-4)


def test_length_from_presence_when_not_given():
    batch = make_batch(B=3, T=12, lengths=[12, 7, 3])
    assert lengths_from_mask(batch["mask"]).tolist() == [12, 7, 3]
    model = SignModel(tiny_config()).eval()
    with_length = model(batch["x"], batch["mask"], batch["length"]).logits
    torch.testing.assert_close(model(batch["x"], batch["mask"]).logits, with_length, **PAD_TOL)


def test_coordinates_of_undetected_points_are_ignored():
    model = SignModel(tiny_config()).eval()
    batch = make_batch(B=3, T=10)
    ref = logits_of(model, batch)
    garbage = dict(batch)
    garbage["x"] = torch.where(batch["mask"][..., None] > 0, batch["x"], torch.randn_like(batch["x"]) * 50)
    torch.testing.assert_close(logits_of(model, garbage), ref, **PAD_TOL)


def test_a_sample_does_not_depend_on_the_rest_of_its_batch():
    model = SignModel(tiny_config()).eval()
    batch = make_batch(B=4, T=14, lengths=[14, 9, 3, 14])
    full = logits_of(model, batch)
    for i in range(4):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        torch.testing.assert_close(logits_of(model, one), full[i : i + 1], atol=1e-5, rtol=1e-4)


def test_empty_and_one_frame_sequences_give_finite_logits_and_gradients():
    model = SignModel(tiny_config())
    batch = make_batch(B=3, T=8, lengths=[0, 1, 8])
    out = model(batch["x"], batch["mask"], batch["length"])
    assert torch.isfinite(out.logits).all() and all(torch.isfinite(a).all() for a in out.aux_logits)
    (out.logits.sum() + sum(a.sum() for a in out.aux_logits)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_eval_is_deterministic_and_training_regularizes():
    model = SignModel(tiny_config(dropout=0.3, drop_path=0.2))
    batch = make_batch(B=4, T=12)
    model.eval()
    torch.testing.assert_close(logits_of(model, batch), logits_of(model, batch), atol=0, rtol=0)
    model.train()
    assert not torch.allclose(logits_of(model, batch), logits_of(model, batch))


def test_layerdrop_skips_whole_transformer_blocks_in_training_only():
    model = SignModel(tiny_config(layerdrop=0.5, local_layers=3, global_layers=3))
    calls = []
    for block in [*model.local_blocks, *model.global_blocks]:
        block.register_forward_hook(lambda mod, args, out: calls.append(mod))
    batch = make_batch(B=2, T=8)
    model.eval()
    for _ in range(5):
        model(batch["x"], batch["mask"], batch["length"])
    assert len(calls) == 5 * 6  # eval runs every block, every time
    calls.clear()
    model.train()
    torch.manual_seed(3)
    for _ in range(40):
        model(batch["x"], batch["mask"], batch["length"])
    assert 0.35 < len(calls) / (40 * 6) < 0.65  # about half the blocks run with p = 0.5


def test_drop_path_zeroes_whole_samples_and_rescales_the_rest():
    x = torch.ones(4000, 3, 5)
    y = drop_path(x, 0.25, training=True)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all())  # a sample's branch is dropped entirely or kept entirely
    assert 0.22 < dropped.float().mean() < 0.28
    assert torch.equal(drop_path(x, 0.25, training=False), x)


def test_tiny_model_learns_hand_motion_direction():
    """Four classes told apart only by which way the right hand moves: the tiny model must fit them."""
    g = torch.Generator().manual_seed(0)
    B, T = 32, 12
    labels = torch.arange(B) % 4
    batch = make_batch(B=B, T=T, lengths=[T] * B, seed=1)
    x, mask = batch["x"] * 0.1, batch["mask"]  # the rest of the body: small noise
    rh = slice(61, 82)  # right hand in the default layout
    direction = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])[labels]  # (B, 2)
    t = torch.linspace(0, 1, T)
    path = 0.5 + 0.3 * t[None, :, None] * direction[:, None, :]  # (B, T, 2)
    x[:, :, rh] = path[:, :, None, :] + 0.01 * torch.randn(B, T, 21, 2, generator=g)
    mask[:, :, rh] = 1.0
    model = SignModel(tiny_config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        out = model(x, mask, batch["length"])
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    acc = (model(x, mask, batch["length"]).logits.argmax(-1) == labels).float().mean().item()
    assert losses[-1] < 0.3 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f} (of {NUM_CLASSES} classes)"
    assert acc == 1.0, f"accuracy {acc:.2f} after 40 steps"
