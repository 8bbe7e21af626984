"""The dilated attention pattern (query i sees key j only when (i − j) mod K = 0) in every backend.

The pattern against a hand-built mask, the reference against dense attention on each residue class, native (SDPA
on each residue class) and Triton against the reference (forward and every gradient, the attention tolerance row),
padding invariance, and the Triton kernel's skipping: keys of another class are never loaded, so even NaN there
cannot reach a row. Triton runs under the interpreter on CPU (~1 ms per program instance): few cases, T ≤ 37,
B·H ≤ 2.
"""

from __future__ import annotations

import pytest
import torch
from kernel_testing import DEVICES, require_triton
from tolerances import assert_close

from kernels import _native
from kernels import reference as R
from kernels.registry import KernelConfig, get_op


def _lengths(values: list[int] | None, device: str = "cpu") -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.int32, device=device)


def _op(dtype: torch.dtype, device: str) -> str:
    """Tolerance row: fp32 dots run in TF32 on CUDA only when torch allows it for matmuls."""
    tf32 = dtype == torch.float32 and device == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return "attention_fp32_tf32" if tf32 else "attention"


def _run(fn, q, k, v, do, **kwargs) -> tuple[torch.Tensor, ...]:
    """Output and (dq, dk, dv) of `fn` on fresh leaves with the same values."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, **kwargs)
    return (out, *torch.autograd.grad(out, leaves, do))


# ------------------------------------------------------------------------------------ the pattern, no Triton


@pytest.mark.parametrize("window", [None, 0, 5])
@pytest.mark.parametrize("dilation", [1, 2, 3, 20])
def test_mask_matches_a_hand_built_one(dilation: int, window: int | None) -> None:
    """attention_mask: pair (i, j) visible iff both below the length, |i − j| ≤ w and (i − j) mod K = 0."""
    T, lengths = 13, [13, 7, 0]
    pair, rows = R.attention_mask(3, T, _lengths(lengths), window, torch.device("cpu"), dilation)
    want = torch.zeros(3, 1, T, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        for i in range(n):
            for j in range(n):
                near = window is None or abs(i - j) <= window
                want[b, 0, i, j] = near and (i - j) % dilation == 0
    assert torch.equal(pair, want)
    assert torch.equal(rows[:, 0, :, 0], torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])


@pytest.mark.parametrize("window", [None, 4])
def test_reference_is_dense_attention_within_each_residue_class(window: int | None) -> None:
    """Frames r, r + K, ... attend among themselves only, as dense attention on that subsequence with its own
    length ⌈(L − r)/K⌉ and window ⌊w/K⌋ would (no RoPE here: positions differ by K there)."""
    B, H, T, D, K = 2, 2, 23, 8, 3
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))
    lengths = [23, 10]
    out = R.masked_attention(q, k, v, _lengths(lengths), window, dilation=K)
    for r in range(K):
        sub = [(n - r + K - 1) // K if n > r else 0 for n in lengths]
        dense = R.masked_attention(q[:, :, r::K], k[:, :, r::K], v[:, :, r::K], _lengths(sub),
                                   None if window is None else window // K)
        torch.testing.assert_close(out[:, :, r::K], dense, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(out, R.masked_attention(q, k, v, _lengths(lengths), window)), "dilation had no effect"


def test_reference_gradcheck() -> None:
    q, k, v = (torch.randn(2, 1, 7, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    fn = lambda q, k, v: R.rope_attention(q, k, v, _lengths([6, 2]), 4, torch.tensor([1, 0]), 50.0,  # noqa: E731
                                          dilation=2)
    assert torch.autograd.gradcheck(fn, (q, k, v))


NATIVE_CASES = [  # (lengths, window, dilation): T = 19 is no multiple of K; lengths past T mean "all frames"
    ([19, 8, 0], 6, 3),
    (None, None, 4),
    ([25, 3, 1], None, 30),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("lengths,window,dilation", NATIVE_CASES, ids=["K3-window6", "K4-unpadded", "K-gt-T"])
def test_native_matches_reference(lengths, window, dilation, dtype: torch.dtype) -> None:
    """SDPA on each residue class: output and every gradient within the attention row, padded rows zero."""
    shape = (3, 2, 19, 16)
    q, k, v = (torch.randn(shape).to(dtype) for _ in range(3))
    do = torch.randn(shape).to(dtype)
    kwargs = dict(lengths=_lengths(lengths), window=window, offsets=torch.tensor([0, 3, 1]), dilation=dilation)
    got = _run(get_op("attention", "native"), q, k, v, do, **kwargs)
    want = _run(get_op("attention", "torch"), q, k, v, do, **kwargs)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(g).all(), f"{name} has non-finite values"
        assert_close(g, w, "attention", dtype, name)
        for b, n in enumerate(lengths or []):
            assert (g[b, :, n:] == 0).all(), f"{name}: rows past length {n} are not zero"


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_padding_garbage_changes_no_valid_row(backend: str) -> None:
    """Huge values in q, k, v past the length leave valid rows' output and gradients unchanged (to fp32 noise)."""
    shape, lengths = (2, 2, 22, 16), [22, 13]
    q, k, v = (torch.randn(shape) for _ in range(3))
    do = torch.randn(shape)
    kwargs = dict(lengths=_lengths(lengths), window=7, dilation=3)
    fn = get_op("attention", backend)
    base = _run(fn, q, k, v, do, **kwargs)
    noisy = [t.clone() for t in (q, k, v)]
    for t in noisy:
        t[1, :, 13:] = 1e4 * torch.randn_like(t[1, :, 13:])
    got = _run(fn, *noisy, do, **kwargs)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, base, strict=True):
        torch.testing.assert_close(g[0], w[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(g[1, :, :13], w[1, :, :13], atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
        assert (g[1, :, 13:] == 0).all(), f"{name}: padded rows are not zero"


@pytest.mark.parametrize("attention", ["torch", "native"])
def test_separate_rope_passes_the_dilation_on(attention: str) -> None:
    """KernelConfig.rope other than the attention's own: RoPE first, then the masked attention with the dilation."""
    q, k, v = (torch.randn(2, 2, 11, 16) for _ in range(3))
    kwargs = dict(lengths=_lengths([11, 5]), offsets=torch.tensor([2, 0]), dilation=2)
    rope = "native" if attention == "torch" else "torch"
    got = KernelConfig(attention=attention, rope=rope).op("attention")(q, k, v, **kwargs)
    assert_close(got, R.rope_attention(q, k, v, **kwargs), "attention", torch.float32, "out")


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, None])
def test_bad_dilation_is_named(bad) -> None:
    q = torch.randn(1, 1, 4, 16)
    for fn in (R.rope_attention, _native.attention, R.masked_attention):
        with pytest.raises(ValueError, match="dilation must be an int >= 1"):
            fn(q, q, q, dilation=bad)


# ------------------------------------------------------------------------------------------- Triton kernels


def _dtypes(device: str) -> list[torch.dtype]:
    # The interpreter's bf16 tl.dot is wrong (see test_attention.py): bf16 on CUDA only.
    return [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])


# (id, (B, H, T, D), lengths, window, offsets, dilation, dtypes): 3 classes of 13 rows at T = 37 are one 16-row
# block each on CPU; K ≥ T leaves each frame alone with itself (clamped to K = T: 6 programs of one row).
CASES = [
    ("K3-T37-padded-offsets", (1, 2, 37, 16), [30], None, [5], 3),
    ("K2-window5-len0-D24", (2, 1, 29, 24), [29, 0], 5, None, 2),
    ("K-gt-T", (1, 1, 6, 16), [5], None, None, 8),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_triton_matches_reference(case, device) -> None:
    """Output, dq, dk, dv of the Triton kernel against the fp32 reference, within the attention tolerance row."""
    require_triton(device)
    from kernels.attention import rope_attention

    name, shape, lengths, window, offsets, dilation = case
    for dtype in _dtypes(device)[: 1 if name != CASES[0][0] else None]:  # fp16 (and bf16) on the first case only
        q, k, v = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
        do = torch.randn(shape, device=device).to(dtype)
        kwargs = dict(lengths=_lengths(lengths, device), window=window, dilation=dilation,
                      offsets=None if offsets is None else torch.tensor(offsets, device=device))
        got = _run(rope_attention, q, k, v, do, **kwargs)
        want = _run(R.rope_attention, q, k, v, do, **kwargs)
        for what, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
            assert torch.isfinite(g).all(), f"{what} has non-finite values"
            assert_close(g, w, _op(dtype, device), dtype, what)


# The backward kernels evaluate exp2 on the garbage scores of padded pairs before tl.where drops them.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
def test_triton_never_touches_hidden_keys_and_ignores_padding(device) -> None:
    """NaN in the q, k, v of class 1 (frames 1, 4, 7, ...) leaves classes 0 and 2 finite and bitwise unchanged,
    outputs and gradients: the kernel never loads another class's rows (a masking kernel would turn 0 · NaN into
    NaN in P·V). Garbage at padded frames changes no valid output either, and padded rows stay exactly zero (except
    class 1's, whose incoming gradient is NaN there)."""
    require_triton(device)
    from kernels.attention import rope_attention

    B, H, T, D, K, length = 1, 2, 24, 16, 3, 19
    q, k, v = (torch.randn(B, H, T, D, device=device) for _ in range(3))
    do = torch.randn(B, H, T, D, device=device)
    kwargs = dict(lengths=_lengths([length], device), dilation=K)
    base = _run(rope_attention, q, k, v, do, **kwargs)
    poisoned = [t.clone() for t in (q, k, v)]
    for t in poisoned:
        t[:, :, 1::K] = float("nan")
        t[:, :, length:] = 1e4 * torch.randn_like(t[:, :, length:])
    do_poisoned = do.clone()
    do_poisoned[:, :, 1::K] = float("nan")
    got = _run(rope_attention, *poisoned, do_poisoned, **kwargs)
    frames = torch.arange(T, device=device)
    others, padded = (frames % K != 1) & (frames < length), (frames % K != 1) & (frames >= length)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, base, strict=True):
        torch.testing.assert_close(g[:, :, others], w[:, :, others], atol=0, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
        assert (g[:, :, padded] == 0).all() and (w[:, :, length:] == 0).all(), f"{name}: padded rows are not zero"
        assert (w[:, :, :length] != 0).any(), f"{name}: valid rows are all zero"
    assert_close(base[0], R.rope_attention(q, k, v, **kwargs), _op(torch.float32, device), torch.float32, "out")
