"""KernelConfig parsing and resolution, backend selection per device, and the native backend against the reference."""

from __future__ import annotations

import inspect

import pytest
import torch
from kernel_testing import forward_backward
from tolerances import assert_close

import kernels.registry as reg
from kernels import reference as R
from kernels.registry import BACKENDS, OPS, KernelConfig, KernelUnavailableError, get_op

# ------------------------------------------------------------------------------------------------ config strings


@pytest.mark.parametrize(
    "config",
    [
        KernelConfig(),
        KernelConfig(attention="triton", rmsnorm="torch"),
        KernelConfig(rmsnorm="native", swiglu="triton", rope="torch", attention="auto"),
    ],
)
def test_str_round_trips_through_parse(config: KernelConfig) -> None:
    assert KernelConfig.parse(str(config)) == config


def test_parse_forms() -> None:
    assert KernelConfig.parse("attention=triton,rmsnorm=torch") == KernelConfig(attention="triton", rmsnorm="torch")
    assert KernelConfig.parse(" rope = native , ") == KernelConfig(rope="native")
    assert KernelConfig.parse("") == KernelConfig()
    assert KernelConfig.parse("torch") == KernelConfig("torch", "torch", "torch", "torch")
    assert str(KernelConfig(swiglu="native")) == "rmsnorm=auto,swiglu=native,rope=auto,attention=auto"
    assert KernelConfig(attention="torch").to_dict()["attention"] == "torch"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("attn=triton", "unknown kernel config field 'attn'; valid: rmsnorm, swiglu, rope"),
        ("attention=cuda", "unknown backend for attention 'cuda'; valid: auto, torch, native"),
        ("fast", "unknown backend 'fast'; valid: auto, torch, native, triton"),
        ("rmsnorm", "unknown backend 'rmsnorm'"),
        ("rope=torch,attention", "must look like op=backend"),
        ("rope=torch,rope=native", "given twice"),
    ],
)
def test_parse_errors_list_the_valid_names(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        KernelConfig.parse(spec)


def test_bad_field_values() -> None:
    with pytest.raises(ValueError, match="valid: auto, torch, native, triton"):
        KernelConfig(swiglu="liger")
    with pytest.raises(TypeError, match="must be a str"):
        KernelConfig(rope=None)  # type: ignore[arg-type]


def test_get_op_errors_list_the_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: rmsnorm, residual_rmsnorm, swiglu, swiglu_packed, rope, attent"):
        get_op("layernorm", "torch")
    with pytest.raises(ValueError, match="valid: auto, torch, native, triton"):
        get_op("rmsnorm", "cudnn")
    with pytest.raises(ValueError, match="unknown op"):
        KernelConfig().op("gelu")


# ----------------------------------------------------------------------------------------- resolution per device


@pytest.fixture
def no_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave like a real run: the test suite's TRITON_INTERPRET=1 is off."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_auto_on_cpu_is_native(no_interpreter) -> None:
    resolved = KernelConfig(rope="torch").resolve("cpu")
    assert resolved == KernelConfig(rmsnorm="native", swiglu="native", rope="torch", attention="native")
    assert all(getattr(resolved, f) in ("torch", "native", "triton") for f in reg.FIELDS)


def test_triton_on_cpu_without_interpreter_fails_clearly(no_interpreter) -> None:
    with pytest.raises(KernelUnavailableError, match=r"'attention'.*'triton'.*device 'cpu'.*TRITON_INTERPRET=1"):
        KernelConfig(attention="triton").resolve("cpu")
    op = get_op("rmsnorm", "triton")
    with pytest.raises(KernelUnavailableError, match=r"'rmsnorm'.*device 'cpu'"):
        op(torch.randn(2, 4), torch.ones(4))


def test_triton_under_interpreter_resolves_on_cpu() -> None:
    # conftest set TRITON_INTERPRET=1 (unless CUDA is present, where cpu is not a triton device)
    if torch.cuda.is_available():
        pytest.skip("interpreter not enabled on CUDA machines")
    assert KernelConfig(attention="triton").resolve("cpu").attention == "triton"
    assert KernelConfig().resolve("cpu").attention == "native", "auto never picks the slow interpreter"


def test_p100_falls_back_and_refuses_triton(monkeypatch: pytest.MonkeyPatch, no_interpreter) -> None:
    _fake_cuda(monkeypatch, (6, 0))
    assert KernelConfig().resolve("cuda") == KernelConfig("native", "native", "native", "native")
    with pytest.raises(KernelUnavailableError, match=r"'rmsnorm'.*device 'cuda'.*compute capability 6\.0 < 7\.0"):
        KernelConfig(rmsnorm="triton").resolve("cuda")
    ok, reason = reg.triton_status("cuda:0")
    assert not ok and "P100" in reason


def test_volta_and_newer_pick_triton(monkeypatch: pytest.MonkeyPatch, no_interpreter) -> None:
    _fake_cuda(monkeypatch, (7, 0))
    assert KernelConfig(swiglu="torch").resolve("cuda") == KernelConfig("triton", "torch", "triton", "triton")
    _fake_cuda(monkeypatch, (9, 0))
    assert KernelConfig(attention="triton").resolve("cuda:0").attention == "triton"


def test_interpreter_requested_after_a_compiled_import_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # triton.jit fixes interpreter-or-compiler when triton is imported: a later TRITON_INTERPRET=1 cannot work, and
    # the kernels would fail deep in the interpreter ("Cannot call @triton.jit'd outside of the scope of a kernel").
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(reg, "compiled_triton_imported", lambda: True)
    ok, reason = reg.triton_status("cpu")
    assert not ok and "set after triton was imported" in reason
    with pytest.raises(KernelUnavailableError, match="set after triton was imported"):
        KernelConfig(attention="triton").resolve("cpu")


def test_without_triton_installed(monkeypatch: pytest.MonkeyPatch, no_interpreter) -> None:
    _fake_cuda(monkeypatch, (8, 0))
    monkeypatch.setattr(reg, "_triton_installed", lambda: False)
    assert KernelConfig().resolve("cuda").attention == "native"
    with pytest.raises(KernelUnavailableError, match="triton is not installed"):
        KernelConfig(swiglu="triton").resolve("cuda")


def test_config_op_follows_the_family_field() -> None:
    config = KernelConfig(rmsnorm="torch", swiglu="native")
    assert config.op("residual_rmsnorm") is R.residual_rmsnorm
    assert config.op("swiglu_packed") is get_op("swiglu_packed", "native")
    assert config.op("attention") is get_op("attention", "auto")
    assert get_op("attention", "torch") is R.rope_attention


# ------------------------------------------------------------------------------------------ the rope field


def test_rope_auto_is_the_attention_backends_own(no_interpreter) -> None:
    assert KernelConfig(attention="torch").resolve("cpu").rope == "torch"
    assert KernelConfig().resolve("cpu").rope == "native"
    assert KernelConfig(attention="torch").op("attention") is R.rope_attention  # no separate RoPE


def test_triton_attention_takes_no_other_rope(monkeypatch: pytest.MonkeyPatch, no_interpreter) -> None:
    # Triton's kernel rotates q and k itself: a torch or native RoPE cannot go with it, so asking for one is refused
    # (explicitly, or when "auto" attention resolves to triton) instead of being silently ignored.
    with pytest.raises(KernelUnavailableError, match=r"'rope'.*'native'.*applies RoPE itself.*attention 'native'"):
        KernelConfig(attention="triton", rope="native").op("attention")
    _fake_cuda(monkeypatch, (8, 0))
    assert KernelConfig().resolve("cuda").rope == "triton"
    assert KernelConfig(rope="triton").resolve("cuda") == KernelConfig("triton", "triton", "triton", "triton")
    with pytest.raises(KernelUnavailableError, match=r"'rope': backend 'torch' cannot run inside attention"):
        KernelConfig(rope="torch").resolve("cuda")


@pytest.mark.parametrize("attention", ["torch", "native"])
def test_separate_rope_then_attention_matches_the_fused_op(attention: str) -> None:
    args, kwargs = _inputs("attention", torch.float32)
    grads = [torch.randn_like(args[0])]
    want, want_g = forward_backward(lambda *a: R.rope_attention(*a, **kwargs), args, grads)
    # torch and native RoPE are the reference's own: the same fp32 arithmetic as the attention's own RoPE.
    for rope in ("torch", "native"):
        op = KernelConfig(attention=attention, rope=rope).op("attention")
        got, got_g = forward_backward(lambda *a, op=op: op(*a, **kwargs), args, grads)
        for g, w in zip(got + got_g, want + want_g, strict=True):
            assert_close(g, w, "attention", torch.float32, f"rope={rope} then {attention}")
    pytest.importorskip("triton", reason="the Triton backend needs triton installed")
    if not reg.triton_status("cpu")[0]:
        pytest.skip("Triton RoPE cannot run on the CPU here")
    op = KernelConfig(attention=attention, rope="triton").op("attention")
    assert "rope_triton" in op.__name__
    got, got_g = forward_backward(lambda *a: op(*a, **kwargs), args, grads)
    for g, w in zip(got + got_g, want + want_g, strict=True):
        assert_close(g, w, "attention", torch.float32, f"rope=triton then {attention}")
    # An unresolved "auto" attention with a RoPE of its own decides per call (here: native attention on a CPU).
    got, _ = forward_backward(lambda *a: KernelConfig(rope="triton").op("attention")(*a, **kwargs), args, grads)
    assert_close(got[0], want[0], "attention", torch.float32, "rope=triton, attention=auto on cpu")


# -------------------------------------------------------------------------------------- one signature everywhere


@pytest.mark.parametrize("op", list(OPS))
def test_every_backend_has_the_same_signature(op: str) -> None:
    pytest.importorskip("triton", reason="the Triton backend needs triton installed")
    signatures = {b: inspect.signature(get_op(op, b)) for b in BACKENDS}
    params = {b: [(p.name, p.default) for p in s.parameters.values()] for b, s in signatures.items()}
    assert params["native"] == params["torch"], f"{op}: native {params['native']} != torch {params['torch']}"
    assert params["triton"] == params["torch"], f"{op}: triton {params['triton']} != torch {params['torch']}"
    # "auto" dispatches at call time, yet shows the same signature (help(), inspect and IDEs see the real one).
    assert params["auto"] == params["torch"], f"{op}: auto {params['auto']} != torch {params['torch']}"


# ------------------------------------------------------------------------------------ native backend vs reference


def _inputs(op: str, dtype: torch.dtype) -> tuple[list, dict]:
    if op == "rmsnorm":
        return [torch.randn(3, 5, 45, dtype=dtype), torch.randn(45, dtype=dtype)], {}
    if op == "residual_rmsnorm":
        return [torch.randn(7, 45, dtype=dtype), torch.randn(7, 45, dtype=dtype), torch.randn(45, dtype=dtype),
                torch.randn(45, dtype=dtype)], {}
    if op == "swiglu":
        return [torch.randn(4, 33, dtype=dtype), torch.randn(4, 33, dtype=dtype)], {}
    if op == "swiglu_packed":
        return [torch.randn(4, 66, dtype=dtype)], {}
    qkv = [torch.randn(3, 2, 9, 16, dtype=dtype) for _ in range(3)]
    if op == "rope":
        return qkv[:2] + [torch.tensor([0, 3, 40])], {}
    return qkv, {"lengths": torch.tensor([9, 1, 0], dtype=torch.int32), "window": 2, "offsets": torch.tensor([0, 1, 2])}


_FAMILY = {"residual_rmsnorm": "rmsnorm", "swiglu_packed": "swiglu"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("op", list(OPS))
def test_native_matches_reference(op: str, dtype: torch.dtype) -> None:
    args, kwargs = _inputs(op, dtype)
    ref_outs = get_op(op, "torch")(*args, **kwargs)
    ref_outs = ref_outs if isinstance(ref_outs, tuple) else (ref_outs,)
    grads = [torch.randn_like(o) for o in ref_outs]
    fn_n, fn_r = get_op(op, "native"), get_op(op, "torch")
    got, got_g = forward_backward(lambda *a: fn_n(*a, **kwargs), args, grads)
    want, want_g = forward_backward(lambda *a: fn_r(*a, **kwargs), args, grads)
    family = _FAMILY.get(op, op)
    # native rounds intermediates (h, silu(a)) to the input dtype; fp16 gets the next looser tolerance.
    tol_dtype = torch.bfloat16 if dtype == torch.float16 and family in ("rmsnorm", "swiglu") else dtype
    for i, (g, w) in enumerate(zip(got + got_g, want + want_g, strict=True)):
        assert torch.isfinite(g).all(), f"{op} output {i} has non-finite values"
        assert_close(g, w, family, tol_dtype, f"native output/grad {i}")


def test_auto_on_cpu_dispatches_to_native() -> None:
    x, w = torch.randn(4, 45), torch.randn(45)
    torch.testing.assert_close(get_op("rmsnorm", "auto")(x, w), get_op("rmsnorm", "native")(x, w), atol=0, rtol=0)


def test_native_attention_fully_padded_is_zero() -> None:
    q, k, v = (torch.randn(2, 2, 5, 8) for _ in range(3))
    out = get_op("attention", "native")(q, k, v, lengths=torch.tensor([0, 3], dtype=torch.int32), window=1)
    assert torch.isfinite(out).all() and out[0].eq(0).all() and out[1, :, 3:].eq(0).all()
    assert out[1, :, :3].abs().sum() > 0
