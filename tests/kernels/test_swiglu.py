"""Triton SwiGLU (two tensors and packed) against the reference: forward, both gradients, dtypes, layouts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_testing import device_dtype_params, forward_backward, require_triton
from tolerances import assert_close

from kernels import reference as R
from kernels.registry import get_op

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

swiglu = get_op("swiglu", "triton")
swiglu_packed = get_op("swiglu_packed", "triton")


def _pair(kind: str, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) in awkward shapes and layouts, values spread over silu's curved range."""
    make = lambda *s: (3 * torch.randn(*s, device=device)).to(dtype)  # noqa: E731
    if kind == "rows1":
        return make(1, 45), make(1, 45)
    if kind == "hidden45":
        return make(2, 19, 45), make(2, 19, 45)
    if kind == "wide":
        return make(5, 1100), make(5, 1100)  # more than one column tile
    if kind == "strided":
        base = make(37, 100)
        return base[:, :45], make(45, 37).t()  # a sliced view and a transposed one (copied)
    raise AssertionError(kind)


@pytest.mark.parametrize(("device", "dtype"), device_dtype_params())
@pytest.mark.parametrize("kind", ["rows1", "hidden45", "wide", "strided"])
def test_swiglu_matches_reference(device: str, dtype: torch.dtype, kind: str) -> None:
    require_triton(device)
    a, b = _pair(kind, device, dtype)
    dc = torch.randn(a.shape, device=device).to(dtype)
    (c,), (da, db) = forward_backward(swiglu, [a, b], [dc])
    (c_ref,), (da_ref, db_ref) = forward_backward(R.swiglu, [a, b], [dc])
    assert_close(c, c_ref, "swiglu", dtype, "c")
    assert_close(da, da_ref, "swiglu", dtype, "da")
    assert_close(db, db_ref, "swiglu", dtype, "db")


@pytest.mark.parametrize(("device", "dtype"), device_dtype_params())
@pytest.mark.parametrize("shape", [(1, 90), (3, 7, 90), (4, 384)], ids=["rows1", "hidden45", "model"])
def test_swiglu_packed_matches_reference(device: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    require_triton(device)
    ab = (3 * torch.randn(shape, device=device)).to(dtype)
    dc = torch.randn((*shape[:-1], shape[-1] // 2), device=device).to(dtype)
    (c,), (dab,) = forward_backward(swiglu_packed, [ab], [dc])
    (c_ref,), (dab_ref,) = forward_backward(R.swiglu_packed, [ab], [dc])
    assert_close(c, c_ref, "swiglu", dtype, "c")
    assert_close(dab, dab_ref, "swiglu", dtype, "dab")


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_packed_reads_a_strided_projection(device: str) -> None:
    # The packed halves of a (rows, 2H) slice of a wider buffer: read in place through the row stride.
    require_triton(device)
    buf = torch.randn(6, 100, device=device)
    ab = buf[:, 5:95]
    c = swiglu_packed(ab)
    torch.testing.assert_close(c, F.silu(ab[:, :45]) * ab[:, 45:], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_swiglu_gradient_values(device: str) -> None:
    # Known derivatives: d silu/da at 0 is 1/2, and silu(0) = 0 so db = 0 there.
    require_triton(device)
    a = torch.zeros(1, 3, device=device, requires_grad=True)
    b = torch.full((1, 3), 4.0, device=device, requires_grad=True)
    da, db = torch.autograd.grad(swiglu(a, b).sum(), (a, b))
    torch.testing.assert_close(da, torch.full_like(da, 2.0))
    torch.testing.assert_close(db, torch.zeros_like(db))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: swiglu(torch.randn(2, 4), torch.randn(2, 5)), ValueError, "b shape"),
        (lambda: swiglu(torch.randn(2, 4), torch.randn(2, 4, dtype=torch.float16)), TypeError, "share a dtype"),
        (lambda: swiglu(torch.ones(2, 4, dtype=torch.int32), torch.ones(2, 4, dtype=torch.int32)), TypeError,
         "int32"),
        (lambda: swiglu_packed(torch.randn(2, 5)), ValueError, "must be even"),
    ],
)
def test_bad_input(call, error: type, message: str) -> None:
    require_triton("cpu")
    with pytest.raises(error, match=message):
        call()
