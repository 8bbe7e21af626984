"""Every Triton kernel compiles for the GPUs the project targets (sm_70, sm_80, sm_90), down to a cubin, with no GPU.

The interpreter runs the kernels' math on CPU but never compiles them: a kernel can pass every other test here and
still not compile for a GPU (a dtype a tl.dot refuses, a constexpr branch the interpreter takes differently, a shape
rule of the MLIR passes). Triton's compiler and ptxas run offline, so this test compiles each kernel in a child
process (the test session imported triton in interpreter mode, which fixes the mode for the whole process) for each
target, with the argument types a real launch passes and the tile configs the launchers and autotuners use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the Triton backend needs triton installed")

# The suite compiles for the two ends, Volta (fp16 training) and Hopper (the GPU the project is checked on);
# SLR_FAST_ALL_GPU_TARGETS=1 adds sm_80 (a third more time).
TARGETS = (70, 80, 90) if os.environ.get("SLR_FAST_ALL_GPU_TARGETS") == "1" else (70, 90)
# Scalars whose names are capitalised like pointers (attention's heads, length, window and dilation); every other
# capitalised parameter is a pointer, every lower-case one an integer unless it is a float scale below. The dilation
# is a runtime integer, so one compile serves dense attention and every dilated pattern.
_UPPER_SCALARS = {"H", "T", "WINDOW", "DILATION"}
_FLOATS = {"eps", "qk_scale", "sm_scale"}
# Pointers whose element type is fixed whatever the data's: per-row statistics, partial sums, RoPE tables, indices.
_FIXED_POINTERS = {"RSTD": "fp32", "DW_PART": "fp32", "DA_PART": "fp32", "LSE": "fp32", "DELTA": "fp32",
                   "INV_FREQ": "fp32", "COS_T": "fp32", "SIN_T": "fp32", "LENGTHS": "i32", "OFFSETS": "i32"}
_ATTENTION = dict(HEAD_DIM=32, BLOCK_HALF=16, BLOCK_D=32, DOT_PRECISION="ieee")


def _cases() -> list[tuple[str, str, str, int, dict, dict]]:
    """(module, kernel, data dtype, target, constexprs, compile options) for every kernel in the forms launched.

    Each kernel once per target with every optional part switched on (residual, dh, offsets, window), in the dtype
    the model trains in there (bf16 from sm_80, fp16 before); attention also without a window, and in fp32 with
    full-precision and TF32 dots. About a second per compile.
    """
    attention = dict(HEAD_DIM=32, BLOCK_HALF=16, BLOCK_D=32, HAS_WINDOW=True, DOT_PRECISION="ieee")
    fwd, bwd = (dict(BLOCK_M=128, BLOCK_N=64), dict(num_warps=8, num_stages=3)), \
        (dict(BLOCK_M=64, BLOCK_N=64), dict(num_warps=4, num_stages=2))
    cases = []
    for target in TARGETS:
        dtype = "bf16" if target >= 80 else "fp16"
        cases += [
            ("kernels.rmsnorm", "_rmsnorm_fwd_kernel", dtype, target,
             dict(HAS_RESIDUAL=True, ALPHA_PER_CHANNEL=True, BLOCK_M=8, BLOCK_N=256), dict(num_warps=8)),
            ("kernels.rmsnorm", "_rmsnorm_bwd_kernel", dtype, target,
             dict(HAS_RESIDUAL=True, HAS_DH=True, ALPHA_PER_CHANNEL=True, BLOCK_M=8, BLOCK_N=256), dict(num_warps=8)),
            ("kernels.swiglu", "_swiglu_fwd_kernel", dtype, target, dict(BLOCK_M=16, BLOCK_N=256), dict(num_warps=8)),
            ("kernels.swiglu", "_swiglu_bwd_kernel", dtype, target, dict(BLOCK_M=16, BLOCK_N=256), dict(num_warps=8)),
            ("kernels.rope", "_rope_kernel", dtype, target,
             dict(HALF=16, HAS_OFFSETS=True, BACKWARD=True, BLOCK_T=32, BLOCK_HALF=16), dict(num_warps=4)),
            ("kernels.attention_kernels", "attn_bwd_delta", dtype, target, dict(HEAD_DIM=32, BLOCK_D=32, BLOCK_M=64),
             dict(num_warps=4)),
        ]
        variants = [(dtype, attention)]
        if target == 80:
            variants += [("fp32", attention), ("fp32", dict(attention, DOT_PRECISION="tf32"))]
        if target == 90:
            variants += [(dtype, dict(attention, HAS_WINDOW=False))]
        for dt, meta in variants:
            cases.append(("kernels.attention_kernels", "attn_fwd", dt, target, dict(meta, **fwd[0]), fwd[1]))
            for name in ("attn_bwd_dkdv", "attn_bwd_dq"):
                cases.append(("kernels.attention_kernels", name, dt, target, dict(meta, **bwd[0]), bwd[1]))
    return cases


def _signature(fn, dtype: str) -> dict[str, str]:
    signature = {}
    for p in fn.params:
        name = p.name
        if p.is_constexpr:
            signature[name] = "constexpr"
        elif name in _FLOATS:
            signature[name] = "fp32"
        elif name[0].islower() or name in _UPPER_SCALARS and "attn" in fn.__name__:
            signature[name] = "i32"
        else:
            signature[name] = "*" + _FIXED_POINTERS.get(name, dtype)
    return signature


def _compile_all() -> list[dict]:
    """Compile every case for every target in this process (which must not be interpreting); one record each."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    records = []
    for module, name, dtype, target, constexprs, options in _cases():
        fn = getattr(importlib.import_module(module), name)
        source = ASTSource(fn=fn, signature=_signature(fn, dtype), constexprs=constexprs)
        record = dict(kernel=f"{module}.{name}", dtype=dtype, target=target, constexprs=constexprs)
        try:
            compiled = triton.compile(source, target=GPUTarget("cuda", target, 32), options=options)
            record["cubin_bytes"] = len(compiled.asm["cubin"])
        except Exception as e:  # noqa: BLE001  (reported, with the case, by the test)
            record["error"] = f"{type(e).__name__}: {str(e)[-2000:]}"
        records.append(record)
    return records


@pytest.mark.slow
def test_every_kernel_compiles_for_every_gpu_target(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # a fresh cache: every case is really compiled
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9's current default, stated (silences its warning)
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "records.json"
    child = subprocess.run([sys.executable, __file__, str(out)], cwd=root, env=env, capture_output=True, text=True,
                           timeout=900)
    assert child.returncode == 0, child.stderr[-4000:]
    records = json.loads(out.read_text())
    failed = [r for r in records if "error" in r]
    assert not failed, "\n".join(f"{r['kernel']} {r['dtype']} sm_{r['target']} {r['constexprs']}: {r['error']}"
                                 for r in failed)
    assert {r["target"] for r in records} == set(TARGETS)
    assert all(r["cubin_bytes"] > 0 for r in records)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    Path(sys.argv[1]).write_text(json.dumps(_compile_all(), indent=1))
