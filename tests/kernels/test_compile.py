"""torch.compile keeps the Triton ops: they trace as opaque custom ops (fake impls for shapes), with no graph break."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import DEVICES, require_triton

from kernels.registry import get_op

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

try:
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func
except ImportError:  # pragma: no cover - private paths moved; the plain aot_eager test below still runs
    aot_autograd = None


def _cases(device: str) -> dict:
    """op -> (inputs, kwargs) small enough for the interpreter."""
    t = lambda *s: torch.randn(*s, device=device, requires_grad=True)  # noqa: E731
    return {
        "rmsnorm": ([t(3, 5, 45), t(45)], {}),
        "residual_rmsnorm": ([t(7, 45), t(7, 45), t(45), t(45)], {}),
        "swiglu": ([t(4, 33), t(4, 33)], {}),
        "swiglu_packed": ([t(4, 66)], {}),
        "rope": ([t(2, 2, 9, 16), t(2, 2, 9, 16)], {"offsets": torch.tensor([1, 4], device=device)}),
    }


def _recording_backend(graphs: list):
    def record(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    return aot_autograd(fw_compiler=record, bw_compiler=record)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["rmsnorm", "residual_rmsnorm", "swiglu", "swiglu_packed", "rope"])
def test_compiled_triton_op_matches_eager_in_one_graph(device: str, op: str) -> None:
    if aot_autograd is None:
        pytest.skip("torch private aot_autograd helpers not found")
    require_triton(device)
    torch._dynamo.reset()
    fn = get_op(op, "triton")
    inputs, kwargs = _cases(device)[op]
    graphs: list = []
    compiled = torch.compile(lambda *a: fn(*a, **kwargs), backend=_recording_backend(graphs), fullgraph=True)
    got = compiled(*inputs)
    want = fn(*inputs, **kwargs)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    grads = [torch.randn_like(o) for o in want]
    got_g = torch.autograd.grad(got, inputs, grads)
    want_g = torch.autograd.grad(want, inputs, grads)
    for g, w in zip(got + got_g, want + want_g, strict=True):
        torch.testing.assert_close(g, w, atol=0, rtol=0)  # the same kernels run: bit-identical
    targets = {str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"}
    assert any(t.startswith("slr_kernels.") and "_fwd" in t for t in targets), f"forward custom op missing: {targets}"
    assert any(t.startswith("slr_kernels.") and "_bwd" in t for t in targets), f"backward custom op missing: {targets}"


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_inductor_compiles_a_block_with_triton_ops(device: str) -> None:
    require_triton(device)
    torch._dynamo.reset()
    residual, packed = get_op("residual_rmsnorm", "triton"), get_op("swiglu_packed", "triton")

    def block(x, f, alpha, w, proj):
        h, y = residual(x, f, alpha, w)
        return h + packed(y @ proj)

    x, f = torch.randn(2, 5, 32, device=device), torch.randn(2, 5, 32, device=device)
    params = [torch.randn(32, device=device, requires_grad=True), torch.ones(32, device=device, requires_grad=True),
              torch.randn(32, 64, device=device, requires_grad=True)]
    got = torch.compile(block, fullgraph=True)(x, f, *params)
    want = block(x, f, *params)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    gg = torch.autograd.grad(got.square().sum(), params)
    gw = torch.autograd.grad(want.square().sum(), params)
    for g, w in zip(gg, gw, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
