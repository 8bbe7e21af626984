"""ModelConfig.global_pattern: the dilated global attention. The switch and its errors, old configs, which blocks
use it (and only those), that it changes the math, and that padding still changes nothing."""

from __future__ import annotations

import pytest
import torch
from model_testing import LOGIT_TOL, make_batch, tiny_config

from kernels.registry import KernelConfig
from slr_fast.model import ModelConfig, SignModel


def test_the_switch_is_off_by_default_and_old_configs_load_dense():
    cfg = ModelConfig.preset("tiny", num_classes=5)
    assert cfg.global_pattern == "dense" and cfg.global_dilation == 1
    old = cfg.to_dict()
    del old["global_pattern"]  # a config saved before the field existed
    assert ModelConfig.from_dict(old) == cfg
    dilated = cfg.replace(global_pattern="dilated:4")
    assert dilated.global_dilation == 4 and ModelConfig.from_dict(dilated.to_dict()) == dilated
    assert "global=1 (dilated:4)" in dilated.summary()


@pytest.mark.parametrize("bad", ["sparse", "dilated", "dilated:1", "dilated:x", "dilated:300", "dilated:-2",
                                 "strided:4", " dilated:4", 4, None])
def test_bad_patterns_get_one_line_naming_the_field(bad):
    with pytest.raises(ValueError, match=r"^invalid ModelConfig: global_pattern must be 'dense' or 'dilated:K' "
                                         r"with K an integer in \[2, 256\], got ") as err:
        tiny_config(global_pattern=bad)
    assert "\n" not in str(err.value) and repr(bad) in str(err.value)


def _attention_calls(model: SignModel, batch: dict) -> list[tuple[int, int | None]]:
    """(dilation, window) of every attention call of one forward pass, in call order."""
    calls = []
    attend = model.ops.attention

    def spy(q, k, v, lengths, window, base, dilation=1):
        calls.append((dilation, window))
        return attend(q, k, v, lengths, window, base, dilation)

    model.ops.attention = spy
    model(batch["x"], batch["mask"], batch["length"])
    return calls


def test_only_the_global_blocks_attend_dilated():
    cfg = tiny_config(global_pattern="dilated:3", local_layers=2, global_layers=2)
    model = SignModel(cfg).eval()
    assert [b.attn.dilation for b in model.global_blocks] == [3, 3]
    assert [b.attn.dilation for b in model.local_blocks] == [1, 1]
    calls = _attention_calls(model, make_batch(B=2, T=12))
    # cross-part attention (no window), two local blocks (window), then the two global blocks
    assert calls == [(1, None)] * cfg.cross_layers + [(1, cfg.local_window)] * 2 + [(3, None)] * 2


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_dilated_model_changes_the_math_but_not_the_parameters_and_ignores_padding(backend):
    kernels = KernelConfig.parse(backend)
    dense = SignModel(tiny_config(), kernels=kernels).eval()
    dilated = SignModel(tiny_config(global_pattern="dilated:2"), kernels=kernels).eval()
    dilated.load_state_dict(dense.state_dict())  # the same parameters: the pattern is not a weight
    batch = make_batch(B=3, T=18, lengths=[18, 11, 1])
    ref = dilated(batch["x"], batch["mask"], batch["length"]).logits
    assert not torch.allclose(ref, dense(batch["x"], batch["mask"], batch["length"]).logits, atol=1e-4)
    # A length-1 sequence sees only itself under any pattern: it gives the dense model's logits.
    torch.testing.assert_close(ref[2], dense(batch["x"], batch["mask"], batch["length"]).logits[2], **LOGIT_TOL)
    # Garbage in the padded frames and more padding change nothing.
    beyond = torch.arange(18)[None, :] >= batch["length"][:, None]  # (B, T)
    noisy = torch.where(beyond[..., None, None], torch.randn_like(batch["x"]) * 100, batch["x"])
    longer_x = torch.cat([noisy, torch.randn(3, 7, *noisy.shape[2:])], dim=1)
    longer_mask = torch.cat([batch["mask"], torch.ones(3, 7, batch["mask"].shape[2])], dim=1)
    torch.testing.assert_close(dilated(longer_x, longer_mask, batch["length"]).logits, ref, atol=1e-5, rtol=1e-4)


def test_torch_and_native_agree_on_the_dilated_model():
    batch = make_batch(B=3, T=16, lengths=[16, 9, 4])
    outs = []
    for backend in ("torch", "native"):
        torch.manual_seed(1)
        model = SignModel(tiny_config(global_pattern="dilated:3"), kernels=KernelConfig.parse(backend)).eval()
        outs.append(model(batch["x"], batch["mask"], batch["length"]).logits)
    torch.testing.assert_close(outs[1], outs[0], **LOGIT_TOL)
