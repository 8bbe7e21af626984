"""Dilated attention (the global blocks' `ModelConfig.global_pattern = "dilated:K"`) against dense attention, per
backend: what the pattern saves where it is computed sparsely.

Group "kernels". The attention op at test_kernels.py's batch shapes (a padded batch, no window: a global block) at
T = 64 and 256 frames (the model's range), dilation K = 2 and 4, forward and forward + backward.
`speedup_vs_dense` is the dense call's best time over the dilated call's on the same backend and inputs, timed
interleaved in the same run; `tflops` counts visible pairs only, as in test_kernels.py. The torch reference masks a
dense score matrix (about 1x: it is the truth, not fast); native runs dense SDPA on each residue class and Triton
gathers each class into its tiles, so both approach K where attention, not the per-call overhead, is the cost (on
CPU: long sequences). With timing disabled (CI) each case runs once and checks its output against the reference.

Run: .venv/bin/python -m pytest benchmarks/test_attention_sparse.py --benchmark-enable --benchmark-only -s
"""

from __future__ import annotations

import pytest
import torch
from _threads import one_torch_thread_on_cpu
from test_kernels import (
    ATTN,
    CUDA,
    DTYPE,
    MODES,
    Case,
    _best_times,
    _check_output,
    _lengths,
    _runner,
    _sync,
    _t,
    _triton_runs_here,
)

from kernels import reference as R
from kernels.registry import get_op

BACKENDS = ("torch", "native", "triton")
DILATIONS = (2, 4)
LENGTHS = (64, 256)


def _case(T: int, dilation: int) -> Case:
    B, H, D = ATTN["B"], ATTN["H"], ATTN["D"]
    lengths = _lengths(B, T)
    pairs = int(R.attention_mask(B, T, lengths, None, lengths.device, dilation)[0].sum()) * H  # visible pairs
    fwd = 4.0 * D * pairs
    make = lambda: ([_t(B, H, T, D) for _ in range(3)], {"lengths": lengths, "dilation": dilation})  # noqa: E731
    return Case("attention", f"B{B}-H{H}-T{T}-D{D}-dilated{dilation}", make,
                {"fwd": fwd, "fwd_bwd": 3.5 * fwd}.__getitem__, "tflop")


CASES = [_case(T, k) for T in LENGTHS for k in DILATIONS]


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    with one_torch_thread_on_cpu():
        yield


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_dilated_attention(benchmark, case: Case, backend: str, mode: str) -> None:
    """One backend × dilation × mode; extra_info carries the speedup over the same backend's dense attention."""
    if backend == "triton":
        ok, reason = _triton_runs_here()
        if not ok:
            pytest.skip(reason)
    op = get_op("attention", backend)
    run = _runner(op, case, mode)

    def timed():
        result = run()
        _sync()
        return result

    benchmark.group = "kernels"
    rounds, warmup = (1, 0) if benchmark.disabled else (10, 2)
    out = benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup)
    _check_output(out, case, backend, mode)
    info = {"op": "attention", "backend": backend, "mode": mode, "shape": case.label,
            "dilation": case.inputs[1]["dilation"], "dtype": str(DTYPE),
            "device": torch.cuda.get_device_name() if CUDA else "cpu"}
    if not benchmark.disabled:
        dense = _runner(lambda *a, **kw: op(*a, **{**kw, "dilation": 1}), case, mode)
        best = _best_times({"dilated": run, "dense": dense})
        t = best["dilated"]
        info.update(tflops=round(case.work(mode) / t / 1e12, 4), best_ms=round(t * 1e3, 4),
                    dense_ms=round(best["dense"] * 1e3, 4), speedup_vs_dense=round(best["dense"] / t, 3))
        print(f"\nattention {case.label:<28} {backend:>6} {mode:<7} {t * 1e3:9.3f} ms  dense "
              f"{best['dense'] * 1e3:9.3f} ms  x{info['speedup_vs_dense']:.2f} vs dense")
    benchmark.extra_info.update(info)
