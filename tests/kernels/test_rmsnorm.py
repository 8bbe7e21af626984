"""Triton RMSNorm and residual + RMSNorm against the reference: forward, every gradient, dtypes, awkward shapes."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import device_dtype_params, forward_backward, require_triton
from tolerances import assert_close, assert_close_reduced

from kernels import reference as R
from kernels.registry import get_op

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

rmsnorm = get_op("rmsnorm", "triton")
residual_rmsnorm = get_op("residual_rmsnorm", "triton")


def _x(kind: str, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Inputs of awkward shapes and layouts; values ~N(0, 2) so fp16 rounding shows."""
    make = lambda *s: (2 * torch.randn(*s, device=device)).to(dtype)  # noqa: E731
    if kind == "rows1":
        return make(1, 45)
    if kind == "hidden45":
        return make(3, 13, 45)  # 39 rows, not a multiple of any block
    if kind == "hidden1":
        return make(7, 1)
    if kind == "model":
        return make(2, 37, 192)
    if kind == "sliced":
        return make(37, 64)[:, 3:48]  # row stride 64, hidden 45: read as a strided view
    if kind == "transposed":
        return make(13, 3, 45).transpose(0, 1)  # leading dims not mergeable: copied to rows
    raise AssertionError(kind)


SHAPES = ["rows1", "hidden45", "hidden1", "model", "sliced", "transposed"]


@pytest.mark.parametrize(("device", "dtype"), device_dtype_params())
@pytest.mark.parametrize("kind", SHAPES)
def test_rmsnorm_matches_reference(device: str, dtype: torch.dtype, kind: str) -> None:
    require_triton(device)
    x = _x(kind, device, dtype)
    w = (1 + 0.3 * torch.randn(x.shape[-1], device=device)).to(dtype)
    dy = torch.randn(x.shape, device=device).to(dtype)
    (y,), (dx, dw) = forward_backward(lambda x, w: rmsnorm(x, w, 1e-5), [x, w], [dy])
    (y_ref,), (dx_ref, dw_ref) = forward_backward(lambda x, w: R.rmsnorm(x, w, 1e-5), [x, w], [dy])
    assert_close(y, y_ref, "rmsnorm", dtype, "y")
    assert_close(dx, dx_ref, "rmsnorm", dtype, "dx")
    assert_close_reduced(dw, dw_ref, "rmsnorm", dtype, "dw")


@pytest.mark.parametrize(("device", "dtype"), device_dtype_params())
@pytest.mark.parametrize("alpha_kind", ["scalar", "one", "per-channel", "float"])
@pytest.mark.parametrize("use_h", [True, False], ids=["h-used", "h-unused"])
def test_residual_rmsnorm_matches_reference(device: str, dtype: torch.dtype, alpha_kind: str, use_h: bool) -> None:
    require_triton(device)
    x = _x("hidden45", device, dtype)
    f = _x("hidden45", device, dtype)
    w = (1 + 0.3 * torch.randn(45, device=device)).to(dtype)
    alpha = {
        "scalar": torch.tensor(0.7, device=device, dtype=dtype),
        "one": torch.tensor([-1.3], device=device, dtype=dtype),
        "per-channel": torch.linspace(-1, 1, 45, device=device, dtype=dtype),
        "float": 0.5,
    }[alpha_kind]
    dh = torch.randn(x.shape, device=device).to(dtype)
    dy = torch.randn(x.shape, device=device).to(dtype)

    def run(fn):
        inputs = [x, f, w] + ([alpha] if isinstance(alpha, torch.Tensor) else [])

        def call(x, f, w, a=alpha):
            h, y = fn(x, f, a, w)
            return (h, y) if use_h else y

        return forward_backward(call, inputs, [dh, dy] if use_h else [dy])

    got, got_g = run(residual_rmsnorm)
    want, want_g = run(R.residual_rmsnorm)
    for name, g, r in zip(["h", "y"] if use_h else ["y"], got, want, strict=True):
        assert_close(g, r, "rmsnorm", dtype, name)
    assert_close(got_g[0], want_g[0], "rmsnorm", dtype, "dx")
    assert_close(got_g[1], want_g[1], "rmsnorm", dtype, "df")
    assert_close_reduced(got_g[2], want_g[2], "rmsnorm", dtype, "dw")
    if len(got_g) > 3:
        assert_close_reduced(got_g[3], want_g[3], "rmsnorm", dtype, "dalpha")


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float16])
def test_half_input_with_fp32_weight(device: str) -> None:
    # A model kept in fp32 fed fp16 activations: y and dx follow x's dtype, dw the weight's.
    require_triton(device)
    x = torch.randn(9, 45, device=device, dtype=torch.float16)
    w = torch.randn(45, device=device)
    dy = torch.randn(9, 45, device=device, dtype=torch.float16)
    (y,), (dx, dw) = forward_backward(rmsnorm, [x, w], [dy])
    (y_ref,), (dx_ref, dw_ref) = forward_backward(R.rmsnorm, [x, w], [dy])
    assert y.dtype == torch.float16 and dx.dtype == torch.float16 and dw.dtype == torch.float32
    assert_close(y, y_ref, "rmsnorm", torch.float16, "y")
    assert_close(dx, dx_ref, "rmsnorm", torch.float16, "dx")
    assert_close_reduced(dw, dw_ref, "rmsnorm", torch.float16, "dw")


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_rmsnorm_backward_is_deterministic_and_leaves_inputs_alone(device: str) -> None:
    require_triton(device)
    x = torch.randn(300, 45, device=device, requires_grad=True)  # several backward programs, partial-sum rows
    f = torch.randn(300, 45, device=device, requires_grad=True)
    w = torch.randn(45, device=device, requires_grad=True)
    a = torch.randn(45, device=device, requires_grad=True)
    dh, dy = torch.randn(300, 45, device=device), torch.randn(300, 45, device=device)
    saved = [t.detach().clone() for t in (x, f, w, a, dh, dy)]
    runs = [torch.autograd.grad(residual_rmsnorm(x, f, a, w), (x, f, w, a), (dh, dy)) for _ in range(2)]
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second), "dw/dalpha partial sums must reduce in a fixed order"
    for before, after in zip(saved, (x, f, w, a, dh, dy), strict=True):
        assert torch.equal(before, after), "no in-place writes into inputs or incoming gradients"


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_empty_rows(device: str) -> None:
    require_triton(device)
    x = torch.randn(0, 45, device=device, requires_grad=True)
    w = torch.randn(45, device=device, requires_grad=True)
    y = rmsnorm(x, w)
    assert y.shape == (0, 45)
    dx, dw = torch.autograd.grad(y.sum(), (x, w))
    assert dx.shape == (0, 45) and torch.equal(dw, torch.zeros_like(dw))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rmsnorm(torch.randn(2, 4), torch.ones(5)), ValueError, "weight must have shape"),
        (lambda: rmsnorm(torch.randn(2, 4, dtype=torch.float64), torch.ones(4)), TypeError, "float64"),
        (lambda: rmsnorm(torch.randn(2, 0), torch.ones(0)), ValueError, "non-empty last dim"),
        (lambda: rmsnorm(torch.randn(1, 40000), torch.ones(40000)), ValueError, "hidden size 40000 > 32768"),
        (lambda: residual_rmsnorm(torch.randn(2, 4), torch.randn(2, 3), 1.0, torch.ones(4)), ValueError, "f shape"),
        (lambda: residual_rmsnorm(torch.randn(2, 4), torch.randn(2, 4), torch.ones(2), torch.ones(4)), ValueError,
         "alpha must be a scalar"),
    ],
)
def test_bad_input(call, error: type, message: str) -> None:
    require_triton("cpu")
    with pytest.raises(error, match=message):
        call()
