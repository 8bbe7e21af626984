"""Tolerances per op and dtype for comparing a backend with kernels.reference, in one place.

Both sides compute in fp32 and round once to the output dtype, so forward errors are about one unit in the last
place of that dtype (fp16 eps 9.8e-4, bf16 eps 7.8e-3) plus fp32 reordering noise. Gradients that are reductions
(dweight over all rows, dalpha, dk/dv over keys) add the summation-order error of fp32 over the reduced length, and
are compared after rounding to the parameter dtype. Liger-Kernel's RMSNorm tests use atol 1e-4 / rtol 1e-6 in fp32
and atol 2e-1 / rtol 2e-2 in bf16; these are tighter where the math allows.

Attention rows are used by tests/kernels/test_attention.py. Its fp32 row assumes IEEE fp32 dot products; TF32
(the CUDA default for ``tl.dot`` on fp32) needs the "fp32_tf32" row instead.
"""

from __future__ import annotations

import torch

# op -> dtype -> (atol, rtol)
TOLERANCES: dict[str, dict[torch.dtype, tuple[float, float]]] = {
    "rmsnorm": {
        torch.float32: (1e-5, 1e-5),
        torch.float16: (2e-3, 2e-3),  # two ulps of fp16 around 1
        torch.bfloat16: (1.6e-2, 1.6e-2),  # two ulps of bf16 around 1
    },
    "swiglu": {
        torch.float32: (1e-6, 1e-5),
        torch.float16: (1e-3, 2e-3),
        torch.bfloat16: (8e-3, 1.6e-2),
    },
    "rope": {
        torch.float32: (1e-5, 1e-5),  # sin/cos of fp32 angles: libm vs Triton's approximations
        torch.float16: (2e-3, 2e-3),
        torch.bfloat16: (1.6e-2, 1.6e-2),
    },
    "attention": {
        torch.float32: (2e-5, 1e-4),
        torch.float16: (4e-3, 4e-3),  # P is rounded to fp16 before the P·V dot
        torch.bfloat16: (3e-2, 3e-2),
    },
    "attention_fp32_tf32": {
        torch.float32: (5e-3, 5e-3),  # TF32 keeps a 10-bit mantissa in the dot products
    },
}

# Gradients that reduce over many rows (dweight, dalpha) grow with the reduced length; compared relative to norm.
REDUCTION_RTOL: dict[torch.dtype, float] = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def tolerance(op: str, dtype: torch.dtype) -> dict[str, float]:
    """``dict(atol=, rtol=)`` for comparing `op` in `dtype` with the reference."""
    atol, rtol = TOLERANCES[op][dtype]
    return {"atol": atol, "rtol": rtol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, op: str, dtype: torch.dtype, what: str) -> None:
    """Elementwise closeness under the table's tolerance, naming the op, dtype and tensor on failure."""
    assert actual.shape == expected.shape, f"{op} {what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{op} {what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual.float(), expected.float(), **tolerance(op, dtype),
                               msg=lambda m: f"{op} {what} ({dtype}): {m}")


def assert_close_reduced(actual: torch.Tensor, expected: torch.Tensor, op: str, dtype: torch.dtype,
                         what: str) -> None:
    """Closeness of a reduced gradient (dweight, dalpha) relative to its norm: ‖a − e‖∞ ≤ rtol·‖e‖∞ + atol."""
    assert actual.shape == expected.shape, f"{op} {what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    atol, _ = TOLERANCES[op][dtype]
    err = (actual.float() - expected.float()).abs().max().item()
    bound = REDUCTION_RTOL[dtype] * expected.float().abs().max().item() + atol
    assert err <= bound, f"{op} {what} ({dtype}): max error {err:.3g} > {bound:.3g}"
