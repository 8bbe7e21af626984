"""Training throughput end to end: loader (on-disk synthetic store, default augmentation, T=64) → model forward and
backward with the project's deep-supervision loss → AdamW step, exactly the step `slr-fast train` runs (group "train").

- `test_train_step[preset-kernels]`: samples/s of whole training steps per KernelConfig, beside the all-`torch`
  model trained from the same weights on the same loader in interleaved rounds of the same test, so
  `speedup_vs_torch` compares two runs that saw the same machine load. On CPU `torch` and `native` (fp32; the Triton
  interpreter is a correctness tool and Inductor's CPU compile takes minutes); on CUDA also `triton` and
  `native+compile` / `triton+compile` (torch.compile of the model), with the precision a run picks (bf16 on sm_80+,
  fp16 with loss scaling on older GPUs).
- `test_epoch_slovo[batch-kernels]`: epoch time at Slovo's shape — `base` preset, 1001 classes, 15,015 training
  sequences — at batch 32 (the seed's P100 batch) and a larger batch. On CUDA the store holds 15,015 synthetic
  sequences of 1001 classes and a whole epoch is timed; on CPU a few steps on a small store (the model's head keeps
  1001 classes) extrapolated to 15,015 sequences (`epoch_extrapolated`).

Both report the loader alone beside the step (`loader_samples_per_s`, `loader_headroom` = loader rate / training
rate, above 1 when the loader keeps up) and `loader_wait_frac`, the share of step time spent waiting for a batch.
Warm-up (Numba compile, first steps, torch.compile) is outside the timed region. Every case also checks that the
loss is finite, that every trainable parameter moved and (step) that the config's loss equals the torch model's on
the same batch and weights — so CI's `--benchmark-disable` run (each body once, smaller batches) tests the path.

Timers: samples/s are wall-clock (end to end, loader waits included). On CPU torch runs single-threaded (the loader's
thread takes the other core; OpenMP barriers on a loaded 2-core machine stall), so the timing thread's CPU time is
the step's compute: `speedup_vs_torch` is the ratio of those CPU times there (`speedup_vs_torch_wall` beside it),
`compute_samples_per_s` / `epoch_s_estimate_compute` what an unloaded machine approaches. On CUDA all is wall-clock
around synchronized steps; `peak_mem_mb` is the test's peak allocated memory (the step benchmark holds both models
and both optimizers), and with timing on the figures also go to benchmarks/results/train-<gpu>.json.

Run: .venv/bin/python -m pytest benchmarks/test_train.py --benchmark-enable -s
"""

from __future__ import annotations

import math
import os
import statistics

import pytest
import torch
from _threads import one_torch_thread_on_cpu
from _train_bench import (
    SEED_EPOCHS,
    SEED_P100_EPOCH_S,
    SLOVO_CLASSES,
    SLOVO_TRAIN,
    BatchStream,
    TrainStep,
    eval_loss,
    loader_only_rate,
    make_loader,
    make_store,
    record_gpu_result,
    snapshot,
    timed,
    unchanged_parameters,
)

from kernels.registry import KernelConfig
from slr_fast.model import ModelConfig, SignModel
from slr_fast.train.runtime import Runtime, resolve_precision

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
T = 64
STEP_CONFIGS = ("torch", "native", "triton", "native+compile", "triton+compile")
# (batch, warm-up steps, rounds, steps per round) of the step benchmark: tiny at TrainConfig's default batch, base at
# the seed's batch. CPU: tiny only (a base step takes seconds there; test_epoch_slovo times it).
STEP_SIZES = {
    "cuda": {"tiny": (64, 5, 5, 20), "base": (32, 5, 5, 20)},
    "cuda-check": {"tiny": (64, 2, 1, 2), "base": (32, 2, 1, 2)},
    "cpu": {"tiny": (32, 1, 5, 2)},
    "cpu-check": {"tiny": (8, 1, 1, 1)},  # --benchmark-disable: each body once, just enough to test the path
}
# (batch, warm-up steps, timed steps) of the epoch benchmark; None: a whole epoch.
EPOCH_SIZES = {
    "cuda": {"batch32": (32, 5, None), "large": (256, 5, None)},
    "cuda-check": {"batch32": (32, 2, 3), "large": (256, 2, 3)},
    "cpu": {"batch32": (32, 1, 3), "large": (64, 1, 3)},
    "cpu-check": {"batch32": (4, 1, 1), "large": (8, 1, 1)},
}
# Same weights, same batch, eval mode: the config's loss vs the torch model's (fp32 CPU; bf16/fp16 autocast on GPU).
LOSS_RTOL = 5e-2 if CUDA else 1e-4


def _mode(timing: bool) -> str:
    return ("cuda" if CUDA else "cpu") + ("" if timing else "-check")


@pytest.fixture(scope="module")
def timing(pytestconfig) -> bool:
    """Whether timings are on (--benchmark-enable); off in CI, where each body runs once."""
    return bool(pytestconfig.getoption("benchmark_enable", False)
                or not pytestconfig.getoption("benchmark_disable", False))


@pytest.fixture(scope="module")
def store(tmp_path_factory, timing):
    """Timing on CUDA: Slovo's training set shape (1001 classes x 15 = 15,015 sequences); else a few hundred."""
    path = tmp_path_factory.mktemp("train-bench") / "synth.zarr"
    if CUDA:
        return make_store(path, classes=SLOVO_CLASSES, per_class=15 if timing else 1, signers=5 if timing else 1)
    return make_store(path, classes=12, per_class=16 if timing else 8, signers=4)


@pytest.fixture(scope="module")
def _engine_started() -> None:
    """Compile the engine and start Numba's OpenMP layer now: starting it resets OpenMP's (and so torch's) thread
    count to the core count, which would undo a thread setting made before the first batch."""
    from slr_fast.engine import BatchProcessor
    from slr_fast.layout import DEFAULT_LAYOUT

    BatchProcessor(DEFAULT_LAYOUT, augment="default").warmup()


@pytest.fixture(autouse=True)
def _one_torch_thread(_engine_started):
    with one_torch_thread_on_cpu():
        yield


def _runtime() -> Runtime:
    return Runtime(DEVICE, resolve_precision("auto", DEVICE))


def _model(preset: str, kernels: str, layout) -> SignModel:
    torch.manual_seed(0)
    cfg = ModelConfig.preset(preset, num_classes=SLOVO_CLASSES, layout=layout)
    return SignModel(cfg, kernels=KernelConfig.parse(kernels)).to(DEVICE)


def _skip_reason(kernels: str) -> str | None:
    backend, _, compiled = kernels.partition("+")
    if CUDA:
        if backend == "triton" and torch.cuda.get_device_capability() < (7, 0):
            return "Triton does not support compute capability < 7.0 (this GPU takes the PyTorch path)"
        return None
    if backend == "triton":
        return "Triton timings need a CUDA GPU (the CPU interpreter is for correctness only)"
    if compiled:
        return "torch.compile of the model takes minutes on 2 CPU cores; compiled timings are GPU-only here"
    return None


def _check_batch(batch: dict, B: int, layout) -> None:
    assert batch["x"].shape == (B, T, layout.num_points, layout.num_channels)
    assert batch["mask"].shape == (B, T, layout.num_points)
    assert torch.isfinite(batch["x"]).all(), "the loader must turn missing points into zeros, not NaN"
    assert int(batch["label"].min()) >= 0 and int(batch["label"].max()) < SLOVO_CLASSES


def _check_trained(step: TrainStep, before: dict) -> None:
    assert step.losses and all(math.isfinite(v) for v in step.losses), step.losses
    assert step.skipped < len(step.losses), f"fp16 loss scaling skipped all {step.skipped} optimizer steps"
    still = unchanged_parameters(step.model, before)
    assert not still, f"{len(still)} parameter tensors did not change in training: {still[:5]}"


def _machine() -> dict:
    info = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if CUDA:
        info["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)  # a shared machine's load moves these figures
    return info


@pytest.mark.parametrize("kernels", STEP_CONFIGS)
@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_train_step(benchmark, request, store, timing, preset: str, kernels: str) -> None:
    """Training samples/s per KernelConfig and its ratio to the all-torch model timed in the same rounds."""
    reason = _skip_reason(kernels)
    sizes = STEP_SIZES[_mode(timing)]
    if reason is None and preset not in sizes:
        reason = "a base step takes seconds on CPU; test_epoch_slovo times base there"
    if reason:
        pytest.skip(reason)
    B, warmup, rounds, per_round = sizes[preset]
    rt = _runtime()
    backend, _, compiled = kernels.partition("+")
    model = _model(preset, backend, store.layout)
    ref = _model(preset, "torch", store.layout)
    ref.load_state_dict(model.state_dict())  # identical starting weights whatever the backend
    this_step, ref_step = TrainStep(model, rt, compile_model=bool(compiled)), TrainStep(ref, rt)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()

    with make_loader(store, B) as loader:
        stream = BatchStream(loader)
        first = next(stream)
        _check_batch(first, B, store.layout)
        got, want = eval_loss(model, rt, first), eval_loss(ref, rt, first)
        assert abs(got - want) <= LOSS_RTOL * abs(want), f"{kernels}: loss {got} vs torch {want} on the same batch"
        before = snapshot(model)  # also the torch model's starting weights (loaded from this model)
        for _ in range(warmup):  # first steps: allocator, autotuning, torch.compile graphs
            this_step(next(stream))
            ref_step(next(stream))

        stream.reset_counters()
        times: dict[str, list[tuple[float, float]]] = {"this": [], "torch": []}  # (wall, thread CPU) per round

        def steps(step: TrainStep, key: str) -> None:
            times[key].append(timed(lambda: [step(next(stream)) for _ in range(per_round)], CUDA))

        benchmark.group = "train"
        # The torch model's round runs in pedantic's untimed setup, so both alternate under the same load.
        benchmark.pedantic(lambda: steps(this_step, "this"), setup=lambda: steps(ref_step, "torch"), rounds=rounds)
        wait_frac = stream.wait_s / sum(w for key in times for w, _ in times[key])
        loader_rate = loader_only_rate(loader, max(4, rounds * per_round))

    _check_trained(this_step, before)
    _check_trained(ref_step, before)
    wall, cpu = ({k: statistics.median(t[i] for t in v) for k, v in times.items()} for i in (0, 1))
    rate = B * per_round / wall["this"]
    # CPU: the ratio of the timing thread's CPU times (the compute, robust to a loaded machine); CUDA: wall time.
    basis = wall if CUDA else cpu
    info = {"preset": preset, "kernels": kernels, "resolved": model.kernel_report(), "precision": rt.precision,
            "batch": B, "frames": T, "classes": SLOVO_CLASSES, "parameters": model.num_parameters(),
            "steps_timed": rounds * per_round, "samples_per_s": round(rate, 1),
            "torch_samples_per_s": round(B * per_round / wall["torch"], 1),
            "speedup_vs_torch": round(basis["torch"] / basis["this"], 3),
            "speedup_basis": "wall" if CUDA else "thread_cpu_time",
            "speedup_vs_torch_wall": round(wall["torch"] / wall["this"], 3),
            "step_ms": round(wall["this"] / per_round * 1e3, 2), "loader_samples_per_s": round(loader_rate, 1),
            "loader_headroom": round(loader_rate / rate, 2), "loader_wait_frac": round(wait_frac, 3),
            "final_loss": round(this_step.losses[-1], 4), **_machine()}
    if not CUDA:
        info["compute_samples_per_s"] = round(B * per_round / cpu["this"], 1)  # from the thread's CPU time
    benchmark.extra_info.update(info)
    if timing:
        print(f"\n{preset:>5} {kernels:<15} B={B:<4} {rate:9.1f} samples/s  x{info['speedup_vs_torch']:.2f} vs torch"
              f"  loader {loader_rate:.0f} samples/s (x{info['loader_headroom']:.1f}), wait {wait_frac:.1%}")
        if CUDA:
            record_gpu_result(request.node.name, info)


@pytest.mark.parametrize("kernels", ["auto", "auto+compile"])
@pytest.mark.parametrize("batch", ["batch32", "large"])
def test_epoch_slovo(benchmark, request, store, timing, batch: str, kernels: str) -> None:
    """Epoch seconds of the `base` model at Slovo's shape (1001 classes, 15,015 sequences), the precision auto picks."""
    reason = _skip_reason(kernels)
    if reason:
        pytest.skip(reason)
    B, warmup, n_timed = EPOCH_SIZES[_mode(timing)][batch]
    rt = _runtime()
    backend, _, compiled = kernels.partition("+")
    model = _model("base", backend, store.layout)
    step = TrainStep(model, rt, compile_model=bool(compiled), total_steps=SEED_EPOCHS * (SLOVO_TRAIN // B))
    before = snapshot(model)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()

    with make_loader(store, B) as loader:
        warm = BatchStream(loader)
        first = next(warm)
        _check_batch(first, B, store.layout)
        step(first)
        for _ in range(warmup - 1):
            step(next(warm))
        steps = len(loader) if n_timed is None else n_timed  # CUDA: the store is the epoch, time all of it
        stream = BatchStream(loader, epoch=1)  # a fresh epoch: its start-up (prefetch thread, first batch) counts
        elapsed: list[tuple[float, float]] = []  # (wall, thread CPU)

        def epoch_part() -> None:
            elapsed.append(timed(lambda: [step(next(stream)) for _ in range(steps)], CUDA))

        benchmark.group = "train"
        benchmark.pedantic(epoch_part, rounds=1)
        wait_frac = stream.wait_s / elapsed[0][0]
        loader_rate = loader_only_rate(loader, min(len(loader), 50) if CUDA else max(2, steps))

    _check_trained(step, before)
    steps_per_epoch = SLOVO_TRAIN // B  # drop_last, as training does
    step_s = elapsed[0][0] / steps
    epoch_s = step_s * steps_per_epoch
    info = {"preset": "base", "kernels": kernels, "resolved": model.kernel_report(), "precision": rt.precision,
            "batch": B, "frames": T, "classes": SLOVO_CLASSES, "train_sequences": SLOVO_TRAIN,
            "store_sequences": len(store), "steps_per_epoch": steps_per_epoch, "steps_timed": steps,
            "epoch_extrapolated": steps < steps_per_epoch, "epoch_s_estimate": round(epoch_s, 1),
            f"run_{SEED_EPOCHS}_epochs_h_estimate": round(epoch_s * SEED_EPOCHS / 3600, 2),
            "seed_p100_epoch_s": SEED_P100_EPOCH_S,  # other hardware and code: context, not a same-run ratio
            "samples_per_s": round(B / step_s, 1), "step_ms": round(step_s * 1e3, 2),
            "loader_samples_per_s": round(loader_rate, 1), "loader_headroom": round(loader_rate * step_s / B, 2),
            "loader_wait_frac": round(wait_frac, 3), "final_loss": round(step.losses[-1], 4), **_machine()}
    if not CUDA:  # the same from the timing thread's CPU time: what an unloaded machine would approach
        info["epoch_s_estimate_compute"] = round(elapsed[0][1] / steps * steps_per_epoch, 1)
    benchmark.extra_info.update(info)
    if timing:
        print(f"\nbase {kernels:<13} B={B:<4} {info['samples_per_s']:8.1f} samples/s  epoch "
              f"{'~' if info['epoch_extrapolated'] else ''}{epoch_s:.1f} s ({steps} of {steps_per_epoch} steps timed)"
              f"  loader {loader_rate:.0f} samples/s (x{info['loader_headroom']:.1f}), wait {wait_frac:.1%}")
        if CUDA:
            record_gpu_result(request.node.name, info)
