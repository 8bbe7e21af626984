"""The reference ops are the truth: check them with gradcheck in float64 and against torch's own ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kernels import reference as R

D64 = torch.float64


def _rand(*shape: int, dtype: torch.dtype = D64, grad: bool = True) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype).requires_grad_(grad)


# ----------------------------------------------------------------------------------------------- gradcheck (f64)


def test_rmsnorm_gradcheck() -> None:
    x, w = _rand(3, 5, 7), _rand(7)
    assert torch.autograd.gradcheck(lambda x, w: R.rmsnorm(x, w, 1e-6), (x, w))


@pytest.mark.parametrize("alpha_shape", [(), (1,), (7,)], ids=["scalar", "one", "per-channel"])
def test_residual_rmsnorm_gradcheck(alpha_shape: tuple[int, ...]) -> None:
    x, f, a, w = _rand(4, 7), _rand(4, 7), _rand(*alpha_shape), _rand(7)
    assert torch.autograd.gradcheck(lambda *t: R.residual_rmsnorm(*t), (x, f, a, w))


def test_swiglu_gradcheck() -> None:
    assert torch.autograd.gradcheck(R.swiglu, (_rand(3, 6), _rand(3, 6)))
    assert torch.autograd.gradcheck(R.swiglu_packed, (_rand(2, 3, 10),))


def test_rope_gradcheck() -> None:
    q, k = _rand(2, 2, 5, 6), _rand(2, 2, 5, 6)
    offsets = torch.tensor([0, 7])
    assert torch.autograd.gradcheck(lambda q, k: R.rope(q, k, offsets, 100.0), (q, k))


@pytest.mark.parametrize("window", [None, 1])
def test_rope_attention_gradcheck(window: int | None) -> None:
    q, k, v = _rand(2, 2, 5, 4), _rand(2, 2, 5, 4), _rand(2, 2, 5, 4)
    lengths = torch.tensor([3, 0], dtype=torch.int32)  # a padded sequence and a fully padded one
    fn = lambda q, k, v: R.rope_attention(q, k, v, lengths, window, torch.tensor([2, 1]), 50.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))


# ------------------------------------------------------------------------------------- against torch's own ops


@pytest.mark.parametrize("dtype", [torch.float32, D64])
@pytest.mark.parametrize("hidden", [1, 45, 192])
def test_rmsnorm_matches_torch(dtype: torch.dtype, hidden: int) -> None:
    x, w = torch.randn(6, hidden, dtype=dtype), torch.randn(hidden, dtype=dtype)
    torch.testing.assert_close(R.rmsnorm(x, w, 1e-5), F.rms_norm(x, (hidden,), w, 1e-5))


def test_rmsnorm_half_uses_fp32_math() -> None:
    # Large values overflow x² in fp16; fp32 math inside must still give unit-RMS rows.
    x = torch.full((2, 8), 300.0, dtype=torch.float16)
    y = R.rmsnorm(x, torch.ones(8, dtype=torch.float16))
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), torch.ones(2, 8))


@pytest.mark.parametrize("alpha", [0.5, torch.tensor(-1.5), torch.linspace(-1, 1, 9)], ids=["float", "t0", "vec"])
def test_residual_rmsnorm_is_add_then_norm(alpha) -> None:
    x, f, w = torch.randn(4, 9), torch.randn(4, 9), torch.randn(9)
    h, y = R.residual_rmsnorm(x, f, alpha, w)
    torch.testing.assert_close(h, x + alpha * f)
    torch.testing.assert_close(y, F.rms_norm(x + alpha * f, (9,), w, 1e-6))


def test_swiglu_matches_torch() -> None:
    a, b = torch.randn(5, 12), torch.randn(5, 12)
    torch.testing.assert_close(R.swiglu(a, b), F.silu(a) * b)
    torch.testing.assert_close(R.swiglu_packed(torch.cat([a, b], -1)), F.silu(a) * b)


def test_rope_is_a_relative_rotation() -> None:
    q, k = torch.randn(2, 3, 11, 8, dtype=D64), torch.randn(2, 3, 11, 8, dtype=D64)
    q0, k0 = R.rope(q, k)
    # position 0 is the identity, and every (i, i + D/2) pair keeps its length
    torch.testing.assert_close(q0[:, :, 0], q[:, :, 0])
    pair_norm = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # noqa: E731
    torch.testing.assert_close(pair_norm(q0), pair_norm(q))
    # scores depend on i − j only: shifting every position by an offset leaves q·kᵀ unchanged
    qs, ks = R.rope(q, k, torch.tensor([5, 123]))
    torch.testing.assert_close(qs @ ks.transpose(-1, -2), q0 @ k0.transpose(-1, -2))
    assert not torch.allclose(qs, q0)


def test_rope_matches_complex_rotation() -> None:
    q = torch.randn(1, 2, 6, 10, dtype=D64)
    qr, _ = R.rope(q, q, torch.tensor([3]), 10000.0)
    pos = torch.arange(6, dtype=D64) + 3
    freq = 10000.0 ** (-torch.arange(5, dtype=D64) * 2 / 10)
    z = torch.complex(q[..., :5], q[..., 5:]) * torch.polar(torch.ones(6, 5, dtype=D64), pos[:, None] * freq)
    torch.testing.assert_close(qr, torch.cat([z.real, z.imag], -1))


def _sdpa_reference(q, k, v, lengths, window, offsets, base, scale):
    """RoPE then SDPA with an explicit additive mask, valid rows only (SDPA has no notion of padded queries)."""
    B, _, T, _ = q.shape
    qr, kr = R.rope(q, k, offsets, base)
    j = torch.arange(T)
    mask = torch.zeros(B, 1, T, T, dtype=q.dtype)
    mask.masked_fill_((j[None, :] >= lengths[:, None])[:, None, None, :], float("-inf"))
    if window is not None:
        mask.masked_fill_((j[:, None] - j[None, :]).abs() > window, float("-inf"))
    return F.scaled_dot_product_attention(qr, kr, v, attn_mask=mask, scale=scale)


@pytest.mark.parametrize("window", [None, 0, 1, 3, 100])
def test_rope_attention_matches_sdpa(window: int | None) -> None:
    B, H, T, D = 3, 2, 13, 8
    q, k, v = (torch.randn(B, H, T, D, dtype=D64) for _ in range(3))
    lengths = torch.tensor([13, 1, 6], dtype=torch.int32)
    offsets = torch.tensor([0, 4, 9])
    out = R.rope_attention(q, k, v, lengths, window, offsets, 500.0, 0.3)
    want = _sdpa_reference(q, k, v, lengths, window, offsets, 500.0, 0.3)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :, :n], want[b, :, :n])
        assert out[b, :, n:].eq(0).all(), "query rows past the length must be zeros"


def test_rope_attention_fully_padded_rows_are_zero_with_finite_grads() -> None:
    q, k, v = (_rand(2, 2, 4, 6, dtype=torch.float32) for _ in range(3))
    out = R.rope_attention(q, k, v, torch.tensor([0, 2]))
    assert out[0].eq(0).all() and torch.isfinite(out).all()
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(g[0].eq(0).all() for g in grads), "a fully padded sequence gets no gradient"


def test_rope_attention_default_scale_and_dtype() -> None:
    q, k, v = (torch.randn(1, 1, 5, 16, dtype=torch.float16) for _ in range(3))
    out = R.rope_attention(q, k, v)
    assert out.dtype == torch.float16
    want = R.rope_attention(q.double(), k.double(), v.double(), scale=1 / math.sqrt(16))
    torch.testing.assert_close(out.double(), want, atol=2e-3, rtol=2e-3)


# -------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: R.rmsnorm(torch.randn(2, 4), torch.randn(5)), "weight must have shape"),
        (lambda: R.residual_rmsnorm(torch.randn(2, 4), torch.randn(2, 5), 1.0, torch.ones(4)), "f shape"),
        (lambda: R.residual_rmsnorm(torch.randn(2, 4), torch.randn(2, 4), torch.ones(3), torch.ones(4)), "alpha"),
        (lambda: R.swiglu(torch.randn(2, 4), torch.randn(2, 3)), "b shape"),
        (lambda: R.swiglu_packed(torch.randn(2, 5)), "must be even"),
        (lambda: R.rope(torch.randn(1, 1, 3, 5), torch.randn(1, 1, 3, 5)), "head dim must be even"),
        (lambda: R.rope(torch.randn(1, 3, 4), torch.randn(1, 3, 4)), "(B, H, T, D)"),
        (lambda: R.rope(*[torch.randn(2, 1, 3, 4)] * 2, offsets=torch.zeros(3, dtype=torch.long)), "offsets"),
        (lambda: R.rope_attention(*[torch.randn(2, 1, 3, 4)] * 3, lengths=torch.ones(2)), "integer"),
        (lambda: R.rope_attention(*[torch.randn(2, 1, 3, 4)] * 3, window=-1), "window"),
        (lambda: R.rope_attention(*[torch.randn(2, 1, 3, 4)] * 2, torch.randn(2, 1, 4, 4)), "v shape"),
    ],
)
def test_bad_input_names_the_problem(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
