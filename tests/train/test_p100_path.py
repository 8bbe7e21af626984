"""The P100 (sm_60) path: `auto` picks PyTorch kernels, Triton is refused clearly, fp16 + loss scaling trains."""

import pytest
import torch

from kernels.registry import KernelConfig
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.model import ModelConfig, SignModel
from slr_fast.train.losses import deep_supervision_loss
from slr_fast.train.runtime import Runtime, resolve_precision


@pytest.fixture
def fake_p100(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla P100-PCIE-16GB")


def test_auto_picks_pytorch_and_fp16_on_p100(fake_p100):
    dev = torch.device("cuda", 0)
    resolved = KernelConfig().resolve(dev)
    assert {resolved.rmsnorm, resolved.swiglu, resolved.rope, resolved.attention} == {"native"}
    assert resolve_precision("auto", dev) == "fp16"  # no bf16 on sm_60: fp16 with loss scaling
    with pytest.raises(Exception, match="6.0"):
        KernelConfig(attention="triton").resolve(dev)


def test_fp16_autocast_with_grad_scaling_trains():
    # The arithmetic of the P100 path (fp16 autocast + GradScaler) exercised on CPU, where autocast supports fp16.
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", num_classes=5, layout=DEFAULT_LAYOUT, dim=32, heads=2)
    model = SignModel(cfg, kernels=KernelConfig.parse("native"))
    rt = Runtime(torch.device("cpu"), "fp16")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, mask = torch.randn(4, 16, cfg.num_points, 2), torch.ones(4, 16, cfg.num_points)
    y = torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    with rt.autocast():
        out = model(x, mask, torch.full((4,), 16, dtype=torch.int32))
    assert out.logits.dtype == torch.float16  # autocast really ran the matmuls in half precision
    loss, _ = deep_supervision_loss(out.logits, out.aux_logits, y, 0.3, 1.0, 0.1)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss) and scaler.get_scale() == 2.0**10  # finite grads: the scale is kept
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
