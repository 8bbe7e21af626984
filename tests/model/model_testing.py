"""Shared helpers for the model tests: synthetic padded batches and the tiny test config."""

from __future__ import annotations

import torch

from slr_fast.layout import DEFAULT_LAYOUT, Layout
from slr_fast.model import ModelConfig

NUM_CLASSES = 7

# Backend comparisons, fp32 on CPU. Logits: elementwise atol/rtol. Gradients: per parameter, elementwise
# |g - g_ref| <= GRAD_ATOL_REL * max|g_ref| + GRAD_RTOL * |g_ref| (the absolute part scales with the parameter's
# gradient, since gradients of different parameters differ by orders of magnitude). Observed errors are ~1e-6
# relative: fp32 reordering in fused reductions (SDPA, online softmax, per-program dweight partials).
LOGIT_TOL = {"atol": 1e-5, "rtol": 1e-4}
GRAD_ATOL_REL = 1e-5
GRAD_RTOL = 1e-4


def tiny_config(layout: Layout = DEFAULT_LAYOUT, **overrides) -> ModelConfig:
    """The tiny preset with regularization off (unless overridden), so runs compare exactly."""
    base = dict(dropout=0.0, drop_path=0.0, layerdrop=0.0)
    base.update(overrides)
    return ModelConfig.preset("tiny", num_classes=NUM_CLASSES, layout=layout, **base)


def make_batch(B: int = 3, T: int = 16, layout: Layout = DEFAULT_LAYOUT, lengths=None, seed: int = 0) -> dict:
    """A padded batch as the loader gives it: NaN already 0, presence mask, nothing present beyond length.

    Sequence 0 has no left hand at all and sequence 1 loses its right hand for a few frames, so the learned
    "absent" tokens and the presence masks are exercised.
    """
    g = torch.Generator().manual_seed(seed)
    P, C = layout.num_points, layout.num_channels
    if lengths is None:
        lengths = [T] + [max(1, T // 2)] * (B - 1)
    lengths = torch.tensor(lengths, dtype=torch.int32)
    x = torch.rand(B, T, P, C, generator=g)
    mask = (torch.rand(B, T, P, generator=g) > 0.2).float()
    slices = layout.part_slices()
    if "left_hand" in slices and B > 0:
        mask[0, :, slices["left_hand"]] = 0
    if "right_hand" in slices and B > 1:
        mask[1, 2:5, slices["right_hand"]] = 0
    beyond = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T) padded frames
    mask[beyond] = 0
    x = x * mask.unsqueeze(-1)
    return {"x": x, "mask": mask, "length": lengths}


def assert_grads_close(grads: dict, ref: dict, what: str) -> None:
    """Every parameter's gradient matches the reference's under the tolerance above, naming the parameter."""
    assert grads.keys() == ref.keys()
    for name, g_ref in ref.items():
        g = grads[name]
        assert g is not None and g_ref is not None, f"{what}: {name} got no gradient"
        atol = GRAD_ATOL_REL * float(g_ref.abs().max()) + 1e-12
        torch.testing.assert_close(g, g_ref, atol=atol, rtol=GRAD_RTOL, msg=lambda m, n=name: f"{what} grad {n}: {m}")
