"""Triton RoPE against the reference: forward, dq and dk, offsets, bases, head dims 16–128, strided q/k."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import device_dtype_params, forward_backward, require_triton
from tolerances import assert_close

from kernels import reference as R
from kernels.registry import get_op

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

rope = get_op("rope", "triton")


@pytest.mark.parametrize(("device", "dtype"), device_dtype_params())
@pytest.mark.parametrize(
    ("shape", "offsets", "base"),
    [
        ((2, 3, 37, 24), [0, 5], 10000.0),  # T 37, head dim 24 (half 12: not a power of two)
        ((1, 2, 1, 40), [300], 500.0),  # one time step, head dim 40, a large offset
        ((3, 4, 16, 64), None, 10000.0),
        ((1, 1, 5, 128), [2], 1e6),
        ((2, 1, 9, 16), [7, 0], 10.0),
    ],
    ids=["T37-D24", "T1-D40", "D64-no-offsets", "D128", "D16"],
)
def test_rope_matches_reference(device: str, dtype: torch.dtype, shape, offsets, base: float) -> None:
    require_triton(device)
    q = torch.randn(shape, device=device).to(dtype)
    k = torch.randn(shape, device=device).to(dtype)
    off = None if offsets is None else torch.tensor(offsets, device=device, dtype=torch.int32)
    dq, dk = (torch.randn(shape, device=device).to(dtype) for _ in range(2))
    got, got_g = forward_backward(lambda q, k: rope(q, k, off, base), [q, k], [dq, dk])
    want, want_g = forward_backward(lambda q, k: R.rope(q, k, off, base), [q, k], [dq, dk])
    for name, g, w in zip(["q", "k", "dq", "dk"], got + got_g, want + want_g, strict=True):
        assert_close(g, w, "rope", dtype, name)


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_rope_on_views_of_a_fused_qkv_projection(device: str) -> None:
    # (B, T, 3, H, D) split and permuted to (B, H, T, D): strided in every dim but the last, read in place.
    require_triton(device)
    B, T, H, D = 2, 11, 3, 32
    qkv = torch.randn(B, T, 3, H, D, device=device)
    q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)  # (B, H, T, D) views
    assert not q.is_contiguous()
    off = torch.tensor([4, 0], device=device)  # int64 offsets work as well as int32
    got = rope(q, k, off)
    want = R.rope(q, k, off)
    for g, w, name in zip(got, want, ["q", "k"], strict=True):
        assert g.is_contiguous()
        assert_close(g, w, "rope", torch.float32, name)


@pytest.mark.parametrize("device", [p.values[0] for p in device_dtype_params() if p.values[1] == torch.float32])
def test_rope_backward_inverts_forward(device: str) -> None:
    # A rotation's gradient is its inverse: backprop of the forward output returns the input.
    require_triton(device)
    q = torch.randn(2, 2, 7, 24, device=device, requires_grad=True)
    k = torch.randn(2, 2, 7, 24, device=device, requires_grad=True)
    off = torch.tensor([3, 9], device=device)
    qo, ko = rope(q, k, off)
    dq, dk = torch.autograd.grad((qo, ko), (q, k), (qo.detach(), ko.detach()))
    torch.testing.assert_close(dq, q.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dk, k.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rope(torch.randn(1, 1, 3, 5), torch.randn(1, 1, 3, 5)), "head dim must be even"),
        (lambda: rope(torch.randn(1, 3, 4), torch.randn(1, 3, 4)), "must both be"),
        (lambda: rope(*[torch.randn(2, 1, 3, 4)] * 2, offsets=torch.zeros(3, dtype=torch.long)), "offsets"),
        (lambda: rope(*[torch.randn(2, 1, 3, 4)] * 2, offsets=torch.zeros(2)), "integer"),
    ],
)
def test_bad_input(call, message: str) -> None:
    require_triton("cpu")
    with pytest.raises(ValueError, match=message):
        call()
