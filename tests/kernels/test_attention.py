"""Fused RoPE attention (kernels/attention.py) against kernels.reference.rope_attention, forward and every gradient.

On CPU the kernels run under the Triton interpreter (set by conftest.py) with 16×16 tiles, so T = 37 or 40 spans
three blocks with a ragged last one; B·H stays at 2-4 to keep each case under a second. bf16 runs on CUDA only:
the interpreter's bf16 tl.dot is wrong, which says nothing about the kernel.
"""

from __future__ import annotations

import pytest
import torch
from kernel_testing import DEVICES, require_triton
from tolerances import assert_close, assert_close_reduced

from kernels.reference import rope_attention as reference_attention

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

from kernels.attention import rope_attention  # noqa: E402  (imports triton)

# (id, (B, H, T, D), lengths or None, window or None, offsets or None)
CASES = [
    ("full-T37-D24", (2, 2, 37, 24), None, None, None),
    ("padded-D40-offsets", (2, 2, 37, 40), [37, 9], None, [0, 5]),
    ("len1-len0-D32", (2, 2, 37, 32), [1, 0], None, None),
    ("window1-D16", (2, 2, 37, 16), [37, 20], 1, [3, 0]),
    ("window-gt-T", (2, 2, 37, 24), [30, 37], 50, None),
    ("window5-T40-D40-offsets", (2, 1, 40, 40), [40, 17], 5, [100, 7]),
    ("window0-diagonal", (1, 2, 33, 16), [25], 0, None),
    ("D64-short", (1, 2, 16, 64), [11], None, [2]),
    ("D128", (1, 1, 20, 128), None, 3, None),
]


def _dtypes(device: str) -> list[torch.dtype]:
    # The interpreter's bf16 tl.dot returns garbage, so bf16 is exercised on CUDA only.
    return [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])


DEVICE_DTYPES = [pytest.param(dev, dt, id=f"{dev}-{str(dt).removeprefix('torch.')}")
                 for dev in DEVICES for dt in _dtypes(dev)]


def _op(dtype: torch.dtype) -> str:
    """Tolerance row: fp32 dots run in TF32 on CUDA only when torch allows it for matmuls."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and torch.cuda.is_available():
        return "attention_fp32_tf32"
    return "attention"


def _int_tensor(values: list[int] | None, device: str) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.int32, device=device)


def _inputs(shape, dtype, device, scale=1.0) -> list[torch.Tensor]:
    return [(torch.randn(shape, device=device) * scale).to(dtype).requires_grad_() for _ in range(3)]


def _run(fn, q, k, v, do, **kwargs) -> tuple[torch.Tensor, ...]:
    """Output and (dq, dk, dv) of `fn` on fresh leaves with the same values."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, **kwargs)
    grads = torch.autograd.grad(out, leaves, do)
    return (out, *grads)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(case, device, dtype) -> None:
    """Output, dq, dk and dv agree with the fp32 PyTorch reference within the attention tolerance row."""
    require_triton(device)
    _, shape, lengths, window, offsets = case
    q, k, v = _inputs(shape, dtype, device)
    do = torch.randn(shape, device=device).to(dtype)
    kwargs = dict(lengths=_int_tensor(lengths, device), window=window, offsets=_int_tensor(offsets, device))
    got = _run(rope_attention, q, k, v, do, **kwargs)
    want = _run(reference_attention, q, k, v, do, **kwargs)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(g).all(), f"{name} has non-finite values"
        assert_close(g, w, _op(dtype), dtype, name)


@pytest.mark.parametrize("device", DEVICES)
def test_large_logits(device) -> None:
    """Scores of ±100 (inputs × 6) force the running max to rescale; fp32 matches the reference.

    Rounding error here grows with the scores and the gradients (|dq| ~ 40), so each tensor is compared relative to
    its largest entry (the table's reduced-gradient rule) rather than elementwise.
    """
    require_triton(device)
    shape = (1, 2, 37, 32)
    q, k, v = _inputs(shape, torch.float32, device, scale=6.0)
    do = torch.randn(shape, device=device)
    lengths = _int_tensor([30], device)
    got = _run(rope_attention, q, k, v, do, lengths=lengths)
    want = _run(reference_attention, q, k, v, do, lengths=lengths)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(g).all(), f"{name} has non-finite values"
        assert_close_reduced(g, w, _op(torch.float32), torch.float32, name)


@pytest.mark.parametrize("device", DEVICES)
def test_large_offsets_keep_relative_positions(device) -> None:
    """RoPE scores depend on i − j only: shifting every position by up to 10⁵ leaves output and gradients unchanged.

    The kernel turns a (T, D/2) table by the offset with angle-sum identities, so the common rotation cancels to
    fp32 rounding; an fp32 angle (o + t)·θ (the reference's way) would drift by ~5e-4 at o = 10⁵.
    """
    require_triton(device)
    shape = (2, 2, 37, 32)
    q, k, v = _inputs(shape, torch.float32, device)
    do = torch.randn(shape, device=device)
    lengths = _int_tensor([37, 30], device)
    at_zero = _run(rope_attention, q, k, v, do, lengths=lengths)
    shifted = _run(rope_attention, q, k, v, do, lengths=lengths, offsets=_int_tensor([1000, 100_000], device))
    for name, g, w in zip(("out", "dq", "dk", "dv"), shifted, at_zero, strict=True):
        assert_close(g, w, _op(torch.float32), torch.float32, name)


@pytest.mark.parametrize("device", DEVICES)
def test_scale_and_base(device) -> None:
    """A custom softmax scale and RoPE base reach the kernels (forward and gradients)."""
    require_triton(device)
    shape = (1, 2, 37, 24)
    q, k, v = _inputs(shape, torch.float32, device)
    do = torch.randn(shape, device=device)
    kwargs = dict(lengths=_int_tensor([29], device), offsets=_int_tensor([11], device), base=500.0, scale=0.37)
    got = _run(rope_attention, q, k, v, do, **kwargs)
    want = _run(reference_attention, q, k, v, do, **kwargs)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert_close(g, w, _op(torch.float32), torch.float32, name)
    plain = rope_attention(q, k, v, lengths=kwargs["lengths"], offsets=kwargs["offsets"])
    assert not torch.allclose(plain, got[0], atol=1e-3), "scale/base had no effect"


@pytest.mark.parametrize("device", DEVICES)
def test_padded_rows_are_zero_with_zero_gradients(device) -> None:
    """Rows and keys at t >= length: exactly zero output and gradients; a fully padded sequence gives all zeros."""
    require_triton(device)
    shape = (2, 2, 37, 32)
    lengths = [13, 0]
    q, k, v = _inputs(shape, torch.float32, device, scale=3.0)
    do = torch.randn(shape, device=device)
    out, dq, dk, dv = _run(rope_attention, q, k, v, do, lengths=_int_tensor(lengths, device))
    for name, t in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert torch.isfinite(t).all(), f"{name} has NaN/inf"
        assert (t[0, :, 13:] == 0).all(), f"{name}: rows past length 13 are not zero"
        assert (t[1] == 0).all(), f"{name}: the length-0 sequence is not all zeros"
        assert (t[0, :, :13] != 0).any(), f"{name}: valid rows are all zero"


@pytest.mark.parametrize("device", DEVICES)
def test_padding_and_out_of_window_content_is_ignored(device) -> None:
    """Changing q, k, v at padded positions, or keys outside every valid row's window, leaves valid rows unchanged."""
    require_triton(device)
    B, H, T, D = 1, 2, 40, 16
    length, window = 21, 2
    q, k, v = (torch.randn(B, H, T, D, device=device) for _ in range(3))
    lengths = _int_tensor([length], device)
    base = rope_attention(q, k, v, lengths=lengths, window=window)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[:, :, length:] = 1e4 * torch.randn_like(t[:, :, length:])
    padded = rope_attention(q2, k2, v2, lengths=lengths, window=window)
    torch.testing.assert_close(padded[:, :, :length], base[:, :, :length], atol=0, rtol=0)
    # Rows 0..5 see keys 0..7 only; keys 10.. are out of their window.
    k3, v3 = k.clone(), v.clone()
    k3[:, :, 10:] += 50.0
    v3[:, :, 10:] -= 50.0
    windowed = rope_attention(q, k3, v3, lengths=lengths, window=window)
    torch.testing.assert_close(windowed[:, :, :6], base[:, :, :6], atol=0, rtol=0)
    assert not torch.allclose(windowed[:, :, 12:length], base[:, :, 12:length]), "rows inside the change unaffected"


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views_of_packed_qkv(device) -> None:
    """q, k, v sliced from one packed (B, T, 3, H, D) projection (non-contiguous) match contiguous copies."""
    require_triton(device)
    B, T, H, D = 2, 37, 2, 24
    qkv = torch.randn(B, T, 3, H, D, device=device, requires_grad=True)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D), strides (T·3HD, D, 3HD, 1)
    assert not q.is_contiguous()
    lengths = _int_tensor([37, 23], device)
    out = rope_attention(q, k, v, lengths=lengths, window=4)
    do = torch.randn_like(out).transpose(-1, -2).contiguous().transpose(-1, -2)  # a non-contiguous incoming grad
    (dqkv,) = torch.autograd.grad(out, qkv, do)
    want_out, *want = _run(reference_attention, q.contiguous(), k.contiguous(), v.contiguous(), do,
                           lengths=lengths, window=4)
    assert_close(out, want_out, _op(torch.float32), torch.float32, "out")
    for i, name in enumerate(("dq", "dk", "dv")):
        assert_close(dqkv[:, :, i].permute(0, 2, 1, 3), want[i], _op(torch.float32), torch.float32, name)


@pytest.mark.parametrize("device", DEVICES)
def test_partial_requires_grad_and_determinism(device) -> None:
    """Only the requested gradients are produced; repeated backward passes are bitwise identical (no atomics)."""
    require_triton(device)
    shape = (1, 2, 37, 24)
    q, k = (torch.randn(shape, device=device) for _ in range(2))
    v = torch.randn(shape, device=device, requires_grad=True)
    lengths = _int_tensor([30], device)
    out = rope_attention(q, k, v, lengths=lengths)
    do = torch.randn_like(out)
    (dv,) = torch.autograd.grad(out, v, do)
    _, _, _, want_dv = _run(reference_attention, q, k, v, do, lengths=lengths)
    assert_close(dv, want_dv, _op(torch.float32), torch.float32, "dv")
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    first = torch.autograd.grad(rope_attention(*leaves, lengths=lengths), leaves, do)
    second = torch.autograd.grad(rope_attention(*leaves, lengths=lengths), leaves, do)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_torch_compile_fullgraph_matches_eager() -> None:
    """Under torch.compile (fullgraph) the kernels run as opaque custom ops and give the eager result."""
    device = DEVICES[-1]
    require_triton(device)
    shape = (1, 2, 20, 16)
    q, k, v = _inputs(shape, torch.float32, device)
    lengths = _int_tensor([17], device)
    fn = lambda q, k, v: rope_attention(q, k, v, lengths=lengths, window=3)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    do = torch.randn(shape, device=device)
    got = _run(compiled, q, k, v, do)
    want = _run(fn, q, k, v, do)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=0, rtol=0)


def test_bad_inputs_raise_clear_errors() -> None:
    """Each malformed argument is rejected with a message naming it."""
    q = torch.randn(2, 2, 8, 16)
    bad = [
        (dict(q=q[0]), ValueError, "4-D"),
        (dict(k=torch.randn(2, 2, 9, 16)), ValueError, "same"),
        (dict(v=q.half()), TypeError, "dtype"),
        (dict(q=q.double(), k=q.double(), v=q.double()), TypeError, "float16/bfloat16/float32"),
        (dict(q=q[..., :15], k=q[..., :15], v=q[..., :15]), ValueError, "even"),
        (dict(lengths=torch.tensor([3.0, 4.0])), TypeError, "lengths"),
        (dict(lengths=torch.tensor([3], dtype=torch.int32)), ValueError, "lengths must have shape"),
        (dict(offsets=torch.zeros(3, dtype=torch.int32)), ValueError, "offsets must have shape"),
        (dict(window=-1), ValueError, "window"),
        (dict(window=2.5), ValueError, "window"),
        (dict(base=0.0), ValueError, "base"),
        (dict(scale=float("nan")), ValueError, "scale"),
    ]
    for override, error, words in bad:
        kwargs = dict(q=q, k=q, v=q) | override
        with pytest.raises(error, match=words):
            rope_attention(**kwargs)
