"""The steps of benchmarks/gpu_check.py, each run in a child process of its own and returning a JSON-able dict.

Sizes come from `Sizes`: the GPU run at the model's real shapes, or the dry run (`--dry-run`) at toy size on CPU
with Triton under its interpreter, so every line here runs in CI before a GPU ever sees it. Timings on CPU mean
nothing; the dry run checks the code path and the figures' bookkeeping, not speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# Loss curves of --kernels triton and --kernels native from the same weights, data and seed: bf16 rounds at 2^-8
# (0.4 %) and the two paths round in different places, so their losses drift apart slowly as training goes on.
PARITY_TOL = {"step_rel_max": 0.05, "mean_rel_max": 0.02}
TARGETS = {"norm_copy_fraction": 0.80, "norm_vs_compile": 1.0, "attention_vs_native": 1.2,
           "train_vs_eager": 1.5, "train_vs_compile": 1.0, "slovo_epoch_s": 5.0}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size a step uses; `gpu()` is the real check, `dry()` the CPU rehearsal."""

    shapes: tuple[tuple[int, int], ...]  # (batch, T) of the kernel cases; the last one also gets torch.compile
    hidden: int  # model width (RMSNorm rows, attention heads × head size)
    heads: int
    windows: tuple[int | None, ...]  # attention: global and the base model's local window
    tile_budgets: tuple[int, ...]  # the RMSNorm/SwiGLU sweep: elements per program tile
    copy_bytes: int
    matmul_n: int
    compile_backend: str  # torch.compile backend of the baselines ("eager" in the dry run: no C++ compile on CPU)
    preset: str
    frames: int
    parity_store: tuple[int, int, int]  # classes, per class, signers
    parity_batch: int
    slovo_store: tuple[int, int, int]
    slovo_classes: int
    train_batch: int
    train_warmup: int
    train_steps: int
    e2e_configs: tuple[str, ...]
    triton_kernels: str  # what "triton" means in the training steps (the dry run interprets only RMSNorm and SwiGLU:
    # interpreted attention costs ~10 s per tiny step; the kernels step and the tests still run it there)
    tests: tuple[str, ...]  # pytest arguments
    rounds: int  # timed rounds per kernel case (median)

    @staticmethod
    def gpu() -> Sizes:
        return Sizes(shapes=((32, 64), (256, 64), (256, 256)), hidden=256, heads=8, windows=(None, 8),
                     tile_budgets=(1024, 2048, 4096, 8192, 16384), copy_bytes=2**30, matmul_n=8192,
                     compile_backend="inductor", preset="base", frames=64, parity_store=(24, 32, 4), parity_batch=32,
                     slovo_store=(1001, 15, 5), slovo_classes=1001, train_batch=256, train_warmup=3, train_steps=15,
                     e2e_configs=("triton", "native", "torch", "native+compile"), triton_kernels="triton",
                     tests=("tests/kernels", "tests/model", "-m", "not slow"), rounds=15)

    @staticmethod
    def dry() -> Sizes:
        return Sizes(shapes=((2, 16),), hidden=64, heads=2, windows=(None, 4), tile_budgets=(2048,),
                     copy_bytes=2**22, matmul_n=128, compile_backend="eager", preset="tiny", frames=16,
                     parity_store=(4, 4, 2), parity_batch=4, slovo_store=(6, 4, 2), slovo_classes=1001,
                     train_batch=4, train_warmup=1, train_steps=2,
                     e2e_configs=("triton", "native", "torch", "native+compile"),
                     triton_kernels="attention=native,rmsnorm=triton,swiglu=triton",
                     tests=("tests/kernels/test_swiglu.py", "-k", "cpu-float32 and matches"), rounds=2)


def seconds_left() -> float:
    """Seconds until this step's time box ends (the driver passes its end in GPU_CHECK_DEADLINE; none: an hour)."""
    return float(os.environ.get("GPU_CHECK_DEADLINE", time.time() + 3600)) - time.time()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def median_ms(runs: dict[str, Callable[[], object]], rounds: int = 15, target_ms: float = 2.0,
              warmup: int = 3) -> dict[str, float]:
    """Milliseconds per call of each run: the median over rounds of groups of calls, the runs' groups interleaved.

    CUDA events around each group on a GPU (device time, launches queued back to back), a host clock elsewhere.
    Warm-up calls first, so compiles, autotuning and allocator growth stay out of the figures.
    """
    inner = {}
    for name, run in runs.items():
        for _ in range(warmup):
            run()
        _sync()
        t0 = time.perf_counter()
        run()
        _sync()
        inner[name] = max(1, min(200, int(target_ms / max((time.perf_counter() - t0) * 1e3, 1e-3))))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if CUDA:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner[name]):
                    run()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                for _ in range(inner[name]):
                    run()
                ms = (time.perf_counter() - t0) * 1e3
            samples[name].append(ms / inner[name])
    return {name: statistics.median(v) for name, v in samples.items()}


# ------------------------------------------------------------------------------------------------------ env


def step_env(sizes: Sizes, work: Path) -> dict:
    """Device, driver, CUDA and library versions."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _train_bench import environment

    from kernels.registry import triton_status

    info = environment()
    for name in ("zarr", "numcodecs", "pytest", "xdist"):
        spec = importlib.util.find_spec(name)
        info[name] = getattr(__import__(name), "__version__", "?") if spec else None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        info["nvidia_smi"] = f"unavailable: {err}"
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        info.update(sm_count=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                    l2_mib=round(getattr(p, "L2_cache_size", 0) / 2**20, 1))
    info["triton_runs_on_device"] = list(triton_status(DEVICE))
    info["triton_interpret"] = os.environ.get("TRITON_INTERPRET")
    return info


# --------------------------------------------------------------------------------------------------- prepare


def step_prepare(sizes: Sizes, work: Path) -> dict:
    """The two synthetic stores and the engine's Numba cache, made while the first steps use the GPU."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _train_bench import make_store

    out = {}
    t0 = time.perf_counter()
    # Numba compiles on one core: in a process of its own while this one renders the stores on the others.
    code = ("import json; from slr_fast.engine import warm_cache; "
            f"print(json.dumps(warm_cache(parallel={CUDA})))")
    warm = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for name in ("parity", "slovo"):
        t1 = time.perf_counter()
        classes, per_class, signers = getattr(sizes, f"{name}_store")
        store = make_store(work / f"{name}.zarr", classes=classes, per_class=per_class, signers=signers)
        out[f"{name}_store"] = dict(sequences=len(store), seconds=round(time.perf_counter() - t1, 1))
    stdout, _ = warm.communicate()
    if warm.returncode != 0:
        raise RuntimeError(f"compiling the engine failed (exit {warm.returncode}); its traceback is above")
    out["numba_compile_s"] = {k: round(v, 1) for k, v in json.loads(stdout.strip().splitlines()[-1]).items()}
    out["numba_warm_s"] = round(time.perf_counter() - t0, 1)
    (work / "prepared").write_text("ok")
    return out


# ----------------------------------------------------------------------------------------------------- tests


def step_tests(sizes: Sizes, work: Path) -> dict:
    """The kernel and model tests (on CUDA when there is one: fp32, fp16, bf16), counted by outcome and dtype.

    Outcomes are logged test by test (_gpu_check_pytest.py), and pytest is stopped a few seconds before the step's
    box ends: what it finished is counted either way.
    """
    log = work / "tests.jsonl"
    log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_gpu_check_pytest", *sizes.tests]
    if CUDA and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "8"]  # Triton compiles and autotunes per test shape: spread them over the cores
    env = dict(os.environ, GPU_CHECK_TESTLOG=str(log))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "benchmarks"), env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=max(5.0, seconds_left() - 8))
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # xdist's workers too
        stdout, _ = proc.communicate()
        stopped = True
    sys.stdout.write(stdout[-30000:])
    out = {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
           "stopped_at_box": stopped, "summary": "stopped at the step's time box" if stopped else
           (stdout.strip().splitlines() or [""])[-1]}
    counts: dict[str, dict[str, int]] = {}
    failures = []
    for line in (log.read_text().splitlines() if log.exists() else []):
        rec = json.loads(line)
        name = rec["nodeid"]
        if rec["outcome"] == "failed":
            message = (rec.get("message") or "").strip().splitlines()
            failures.append(f"{name} ({rec['when']}): {message[-1] if message else ''}")
        group = next((f"cuda-{d}" for d in ("float32", "float16", "bfloat16") if f"cuda-{d}" in name),
                     "cuda-other" if "cuda" in name else "other")
        counts.setdefault(group, dict(passed=0, failed=0, skipped=0))[rec["outcome"]] += 1
    out["counts"] = counts
    out["failures"] = failures[:40]
    out["ok"] = proc.returncode == 0 and not failures and not stopped
    return out


# --------------------------------------------------------------------------------------------------- ceilings


def step_ceilings(sizes: Sizes, work: Path) -> dict:
    """Device-to-device copy bandwidth (bytes read + written) and a bf16 matrix product on random data."""
    n = sizes.copy_bytes
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    ms = median_ms({"copy": lambda: dst.copy_(src)}, rounds=max(3, sizes.rounds))["copy"]
    assert torch.equal(dst, src), "the copy did not copy"
    out = {"copy_bytes": n, "copy_ms": round(ms, 4), "copy_gb_per_s": round(2 * n / ms / 1e6, 1)}
    dtype = torch.bfloat16 if CUDA else torch.float32
    m = sizes.matmul_n
    a, b = torch.randn(m, m, device=DEVICE, dtype=dtype), torch.randn(m, m, device=DEVICE, dtype=dtype)
    ms = median_ms({"mm": lambda: a @ b}, rounds=max(3, sizes.rounds // 2))["mm"]
    err = ((a @ b).double() - a.double() @ b.double()).norm() / (a.double() @ b.double()).norm()
    out.update(matmul_n=m, matmul_dtype=str(dtype), matmul_ms=round(ms, 4),
               matmul_tflops=round(2 * m**3 / ms / 1e9, 1), matmul_rel_err=float(err))
    return out


# ---------------------------------------------------------------------------------------------------- kernels


def _kernel_cases(sizes: Sizes) -> list[dict]:
    """(op, shape, inputs maker, work per mode) at the model's shapes: rows = B·T at its width, its SwiGLU width,
    and its attention (heads of 32) global and windowed, with padded lengths."""
    from slr_fast.model import ModelConfig

    ffn = ModelConfig.preset(sizes.preset, num_classes=2).replace(dim=sizes.hidden).mlp_hidden
    dt = torch.bfloat16 if CUDA else torch.float32
    es = dt.itemsize
    t = lambda *shape: torch.randn(*shape, device=DEVICE, dtype=dt)  # noqa: E731
    cases = []
    for i, (B, T) in enumerate(sizes.shapes):
        rows, last = B * T, i == len(sizes.shapes) - 1
        n = rows * sizes.hidden * es
        cases.append(dict(op="rmsnorm", shape=f"{rows}x{sizes.hidden}", unit="GB", compile=last,
                          bytes=n, make=lambda r=rows: ([t(r, sizes.hidden), 1 + 0.1 * t(sizes.hidden)], {}),
                          work={"fwd": 2 * n, "fwd_bwd": 5 * n}))
        cases.append(dict(op="residual_rmsnorm", shape=f"{rows}x{sizes.hidden}", unit="GB", compile=last,
                          bytes=2 * n, make=lambda r=rows: ([t(r, sizes.hidden), t(r, sizes.hidden),
                                                             t(sizes.hidden), 1 + 0.1 * t(sizes.hidden)], {}),
                          work={"fwd": 4 * n, "fwd_bwd": 10 * n}))
        m = rows * ffn * es
        cases.append(dict(op="swiglu_packed", shape=f"{rows}x2x{ffn}", unit="GB", compile=last, bytes=2 * m,
                          make=lambda r=rows: ([t(r, 2 * ffn)], {}), work={"fwd": 3 * m, "fwd_bwd": 8 * m}))
        H, D = sizes.heads, sizes.hidden // sizes.heads
        g = torch.Generator().manual_seed(i)
        lengths = torch.randint(T // 2, T + 1, (B,), generator=g, dtype=torch.int32).to(DEVICE)
        from kernels import reference as R

        for window in sizes.windows:
            pairs = int(R.attention_mask(B, T, lengths, window, DEVICE)[0].sum()) * H  # visible (query, key) pairs
            cases.append(dict(op="attention", shape=f"B{B}-H{H}-T{T}-D{D}-" + (f"w{window}" if window else "global"),
                              unit="TFLOP", compile=last, bytes=3 * B * H * T * D * es,
                              make=lambda B=B, T=T, w=window, ln=lengths, H=H, D=D: (
                                  [t(B, H, T, D) for _ in range(3)], {"lengths": ln, "window": w}),
                              work={"fwd": 4.0 * D * pairs, "fwd_bwd": 3.5 * 4.0 * D * pairs}))
    return cases


def _input_sets(case: dict, l2_bytes: int) -> list[tuple[list, dict]]:
    """Enough input sets to rotate through that the working set is several times the L2 (else: the cache's speed)."""
    count = 1 if not CUDA else max(1, min(8, math.ceil(4 * l2_bytes / case["bytes"])))
    return [case["make"]() for _ in range(count)]


def _runner(fn: Callable, sets: list[tuple[list, dict]], mode: str) -> Callable[[], object]:
    """A zero-argument call of `fn` on the next input set: forward under no_grad, or forward and backward."""
    order = itertools.cycle(range(len(sets)))
    if mode == "fwd":
        def run():
            args, kwargs = sets[next(order)]
            with torch.no_grad():
                return fn(*args, **kwargs)
        return run
    prepared = []
    for args, kwargs in sets:
        leaves = [a.detach().requires_grad_() if a.is_floating_point() else a for a in args]
        with torch.no_grad():
            probe = fn(*args, **kwargs)
        grads = [torch.randn_like(o) for o in (probe if isinstance(probe, tuple) else (probe,))]
        prepared.append((leaves, kwargs, grads))

    def run():
        leaves, kwargs, grads = prepared[next(order)]
        out = fn(*leaves, **kwargs)
        return torch.autograd.grad(out if isinstance(out, tuple) else (out,), leaves, grads)

    return run


def _rel_err(got, want) -> float:
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    errs = [float((g.double() - w.double()).norm() / w.double().norm().clamp_min(1e-30)) for g, w in zip(got, want,
                                                                                                        strict=True)]
    return max(errs) if all(math.isfinite(e) for e in errs) else float("nan")


@contextlib.contextmanager
def _tile_budget(budget: int):
    """RMSNorm's and SwiGLU's launchers with another tile budget (elements per program) while inside: the sweep."""
    import triton

    import kernels.rmsnorm as rn
    import kernels.swiglu as sw
    from kernels._triton_utils import next_power_of_2

    rows_per_block, tiles = rn.rows_per_block, sw._tiles

    def swiglu_tiles(rows: int, cols: int):
        block_n = min(next_power_of_2(cols), 1024)
        block_m = max(1, min(next_power_of_2(rows), budget // block_n))
        return block_m, block_n, 8 if block_m * block_n >= 4096 else 4, (triton.cdiv(rows, block_m),
                                                                          triton.cdiv(cols, block_n))

    rn.rows_per_block = lambda rows, block_n: max(1, min(next_power_of_2(rows), budget // block_n, 64))
    sw._tiles = swiglu_tiles
    try:
        yield
    finally:
        rn.rows_per_block, sw._tiles = rows_per_block, tiles


def _attention_tuning() -> dict:
    """The configs the attention autotuner chose per key (T, D, window, dilation), kernel by kernel."""
    try:
        from kernels import attention as A
        from kernels.attention_kernels import attn_bwd_dkdv, attn_bwd_dq, attn_fwd
    except ImportError as err:
        return {"error": str(err)}
    chosen = {}
    for kernel in (attn_fwd, attn_bwd_dkdv, attn_bwd_dq):
        tuner = A._autotuned(kernel)
        chosen[kernel.__name__] = {str(key): str(cfg) for key, cfg in getattr(tuner, "cache", {}).items()}
    return chosen


def _time_case(case: dict, fns: dict, sets: list, copy_gbs: float, errs: dict, rounds: int) -> list[dict]:
    """Rows of one case: every backend in `fns` timed in interleaved rounds, fwd and fwd+bwd, with every ratio."""
    rows = []
    for mode in ("fwd", "fwd_bwd"):
        ms = median_ms({b: _runner(fn, sets, mode) for b, fn in fns.items()}, rounds=rounds, warmup=min(3, rounds))
        for b, t in ms.items():
            rate = case["work"][mode] / t / 1e9 / (1e3 if case["unit"] == "TFLOP" else 1)
            row = dict(op=case["op"], shape=case["shape"], mode=mode, backend=b, ms=round(t, 4), rate=round(rate, 3),
                       unit=case["unit"] + "/s", rel_err=errs[b], sets=len(sets))
            if case["unit"] == "GB":
                row["copy_fraction"] = round(rate / copy_gbs, 3)
            for base in ("torch", "native", "compile"):
                if base in ms and base != b:
                    row[f"vs_{base}"] = round(ms[base] / t, 3)
            rows.append(row)
        print(f"{case['op']:>17} {case['shape']:<22} {mode:<7} " + "  ".join(f"{b} {t:.4f} ms" for b, t in ms.items()),
              flush=True)
    return rows


def save_partial(work: Path, step: str, result: dict) -> None:
    """What a step measured so far, where the driver reads it even if the step is then killed at its time box."""
    (work / f"{step}.json").write_text(json.dumps({"result": dict(result, partial=True)}, default=str))


def step_kernels(sizes: Sizes, work: Path) -> dict:
    """Each op fwd and fwd+bwd per backend against eager torch and native; then, at the largest shape, torch.compile
    of the reference too (compiling takes longest: it comes after the rest is saved); then the tile sweep."""
    from kernels.registry import get_op, triton_status

    ceilings = work / "ceilings.json"
    copy_gbs = json.loads(ceilings.read_text())["result"].get("copy_gb_per_s") if ceilings.exists() else None
    if copy_gbs is None:
        copy_gbs = step_ceilings(dataclasses.replace(sizes, matmul_n=16), work)["copy_gb_per_s"]
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 60 * 2**20) if CUDA else 0
    backends = ["torch", "native"] + (["triton"] if triton_status(DEVICE)[0] else [])
    out = {"copy_gb_per_s": copy_gbs, "dtype": str(torch.bfloat16 if CUDA else torch.float32), "rows": [],
           "tile_sweep": [], "compile_errors": [], "attention_autotune": {}}
    cases = _kernel_cases(sizes)

    def prepared(case: dict, with_compile: bool) -> tuple[list, dict, dict]:
        torch.manual_seed(0)
        sets = _input_sets(case, l2)
        fns = {b: get_op(case["op"], b) for b in backends}
        if with_compile:
            compiled = torch.compile(get_op(case["op"], "torch"), dynamic=False, backend=sizes.compile_backend)
            try:
                for mode in ("fwd", "fwd_bwd"):
                    _runner(compiled, sets[:1], mode)()  # both graphs compiled now, untimed
                fns["compile"] = compiled
            except Exception as err:  # noqa: BLE001  (a baseline that cannot run is recorded, not fatal)
                out["compile_errors"].append(f"{case['op']} {case['shape']}: {type(err).__name__}: {str(err)[:300]}")
        args, kwargs = sets[0]
        with torch.no_grad():
            want = get_op(case["op"], "torch")(*args, **kwargs)
            errs = {b: _rel_err(fn(*args, **kwargs), want) for b, fn in fns.items()}
        return sets, fns, errs

    for case in cases:
        sets, fns, errs = prepared(case, with_compile=False)
        out["rows"] += _time_case(case, fns, sets, copy_gbs, errs, sizes.rounds)
        del sets
    if "triton" in backends:
        out["attention_autotune"] = _attention_tuning()
    save_partial(work, "kernels", out)
    for case in (c for c in cases if c["compile"]):
        if seconds_left() < 25:
            out["compile_errors"].append(f"{case['op']} {case['shape']}: skipped, {seconds_left():.0f} s left")
            continue
        sets, fns, errs = prepared(case, with_compile=True)
        if "compile" in fns:  # the case again, all backends beside the compiled reference in the same rounds
            out["rows"] = [r for r in out["rows"] if (r["op"], r["shape"]) != (case["op"], case["shape"])]
            out["rows"] += _time_case(case, fns, sets, copy_gbs, errs, sizes.rounds)
            save_partial(work, "kernels", out)
        if case["unit"] == "GB" and "triton" in backends:
            for budget in sizes.tile_budgets:  # the short sweep: the largest shape, each budget fwd+bwd
                if seconds_left() < 15:
                    break
                with _tile_budget(budget):
                    t = median_ms({"t": _runner(fns["triton"], sets, "fwd_bwd")}, rounds=max(2, sizes.rounds // 2),
                                  warmup=min(3, sizes.rounds))["t"]
                out["tile_sweep"].append(dict(op=case["op"], shape=case["shape"], tile_budget=budget,
                                              fwd_bwd_ms=round(t, 4)))
        del sets
        if CUDA:
            torch.cuda.empty_cache()
    out["rows"].sort(key=lambda r: cases.index(next(c for c in cases if (c["op"], c["shape"]) == (r["op"],
                                                                                                   r["shape"]))))
    return out
