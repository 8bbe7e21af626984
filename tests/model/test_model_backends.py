"""Switching the KernelConfig changes neither the parameters nor the math: same state_dict, same logits, same
gradients of every parameter, between the torch reference and the native and Triton backends."""

from __future__ import annotations

import pytest
import torch
from model_testing import LOGIT_TOL, assert_grads_close, make_batch, tiny_config

from kernels.registry import KernelConfig, triton_status
from slr_fast.model import SignModel

BACKENDS = ("torch", "native", "triton")


def run(backend: str, batch: dict, train: bool = False):
    """Logits, aux logits and every parameter's gradient of a freshly seeded tiny model on `backend`."""
    torch.manual_seed(1)  # identical weights for every backend
    model = SignModel(tiny_config(), kernels=KernelConfig.parse(backend)).train(train)
    out = model(batch["x"], batch["mask"], batch["length"])
    # A loss touching the main and every auxiliary head, so every parameter gets a gradient.
    target = torch.arange(out.logits.shape[0]) % out.logits.shape[1]
    loss = torch.nn.functional.cross_entropy(out.logits, target)
    loss = loss + sum(torch.nn.functional.cross_entropy(a, target) for a in out.aux_logits)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return model, out, grads


def test_state_dict_is_the_same_for_every_kernel_config():
    models = [SignModel(tiny_config(), kernels=KernelConfig.parse(b)) for b in BACKENDS + ("auto",)]
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
    assert all(s == shapes[0] for s in shapes[1:])
    # A state_dict moves between backends unchanged.
    models[1].load_state_dict(models[0].state_dict())


def test_kernel_report_names_the_backend_each_op_resolved_to():
    model = SignModel(tiny_config(), kernels=KernelConfig.parse("attention=torch,rmsnorm=native,swiglu=torch"))
    report = model.kernel_report()
    assert report["attention"] == "torch"
    assert report["rmsnorm"] == report["residual_rmsnorm"] == "native"
    assert report["swiglu_packed"] == "torch"
    # "auto" on a CPU is torch's native path (Triton on CPU is only the slow interpreter).
    assert set(SignModel(tiny_config()).kernel_report().values()) == {"native"}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_native_matches_torch_logits_and_all_gradients(train):
    batch = make_batch(B=3, T=16)
    _, ref, ref_grads = run("torch", batch, train)
    model, out, grads = run("native", batch, train)
    assert set(model.kernel_report().values()) == {"native"}
    torch.testing.assert_close(out.logits, ref.logits, **LOGIT_TOL)
    for a, b in zip(out.aux_logits, ref.aux_logits, strict=True):
        torch.testing.assert_close(a, b, **LOGIT_TOL)
    assert_grads_close(grads, ref_grads, "native vs torch")


def test_triton_matches_torch_logits_and_all_gradients():
    ok, reason = triton_status("cpu" if not torch.cuda.is_available() else "cuda")
    if not ok:
        pytest.skip(f"Triton cannot run here: {reason}")
    # Kept small (B=2, T=16): on CPU every Triton program runs in the numpy interpreter.
    batch = make_batch(B=2, T=16, lengths=[16, 9])
    _, ref, ref_grads = run("torch", batch)
    model, out, grads = run("triton", batch)
    assert set(model.kernel_report().values()) == {"triton"}
    torch.testing.assert_close(out.logits, ref.logits, **LOGIT_TOL)
    for a, b in zip(out.aux_logits, ref.aux_logits, strict=True):
        torch.testing.assert_close(a, b, **LOGIT_TOL)
    assert_grads_close(grads, ref_grads, "triton vs torch")


def test_separate_triton_rope_before_native_attention_matches_torch():
    # KernelConfig.rope at work: Triton's RoPE kernel, then torch's SDPA without RoPE, for every attention.
    ok, reason = triton_status("cpu" if not torch.cuda.is_available() else "cuda")
    if not ok:
        pytest.skip(f"Triton cannot run here: {reason}")
    batch = make_batch(B=2, T=16, lengths=[16, 9])
    _, ref, ref_grads = run("torch", batch)
    model, out, grads = run("rmsnorm=native,swiglu=native,attention=native,rope=triton", batch)
    report = model.kernel_report()
    assert report["rope"] == "triton" and {b for op, b in report.items() if op != "rope"} == {"native"}
    torch.testing.assert_close(out.logits, ref.logits, **LOGIT_TOL)
    assert_grads_close(grads, ref_grads, "rope=triton, native vs torch")


def test_deep_copy_and_pickle_rebind_the_ops():
    import copy
    import io

    model = SignModel(tiny_config(), kernels=KernelConfig.parse("native")).eval()
    batch = make_batch(B=2, T=6)
    want = model(batch["x"], batch["mask"], batch["length"]).logits  # ops now bound for cpu
    buf = io.BytesIO()
    torch.save(model, buf)  # whole-module pickling (some tools do it) must not trip over the bound closures
    buf.seek(0)
    for twin in (copy.deepcopy(model), torch.load(buf, weights_only=False)):
        assert twin._ops == {}
        torch.testing.assert_close(twin(batch["x"], batch["mask"], batch["length"]).logits, want, atol=0, rtol=0)


def test_set_kernels_switches_backend_and_keeps_the_output():
    batch = make_batch()
    model = SignModel(tiny_config(), kernels=KernelConfig.parse("torch")).eval()
    ref = model(batch["x"], batch["mask"], batch["length"]).logits
    model.set_kernels(KernelConfig.parse("native"))
    assert set(model.kernel_report().values()) == {"native"}
    torch.testing.assert_close(model(batch["x"], batch["mask"], batch["length"]).logits, ref, **LOGIT_TOL)


def test_ops_are_bound_once_per_device_and_follow_the_model():
    # Every module that calls a kernel shares the model's one KernelOps; moving the model binds the new device's ops
    # on first use there (the meta device stands in for a second device on a CPU-only machine).
    model = SignModel(tiny_config(), kernels=KernelConfig.parse("attention=torch")).eval()
    holders = [m for m in model.modules() if hasattr(m, "ops")]
    assert len(holders) > 10 and all(m.ops is model.ops for m in holders)
    batch = make_batch(B=2, T=6)
    model(batch["x"], batch["mask"], batch["length"])
    assert list(model._ops) == [torch.device("cpu")]
    model.to("meta")
    out = model(*(batch[k].to("meta") for k in ("x", "mask", "length")))
    assert out.logits.device.type == "meta" and tuple(out.logits.shape) == (2, 7)
    assert list(model._ops) == [torch.device("cpu"), torch.device("meta")]
    assert model.kernel_report()["attention"] == "torch"
