"""Loader throughput: an on-disk store to torch batches (B=256, T=64, P=87, C=2), target >= 30,000 samples/s.

Cases (group "loader"), each one epoch per round, Numba compiled before timing:
- in-memory store, default preprocessing, no augmentation / default augmentation; `load_s` is the one-off decode
  of the store into memory, `samples_per_s_with_load` the first epoch including it;
- streamed by chunk (larger-than-memory mode);
- the engine alone on the same data in the same run (`processor_only_samples_per_s`, and the loader's rate as a
  fraction of it, `loader_vs_processor_only`): the loader can only approach this;
- the loader's own ceiling with a processor that does no work (what is left is the loader's overhead);
- baseline: torch.utils.data.DataLoader over a per-sample Dataset calling the same compiled processor one sample at a
  time with the default collate (the common pattern), on a 1,024-sample subset; the ratio is recorded as
  `speedup_vs_per_sample_dataloader`.

Run: .venv/bin/python -m pytest benchmarks/test_loader.py --benchmark-enable --benchmark-only -s
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch

from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.loader import KeypointLoader, LoaderConfig
from slr_fast.loader.loader import usable_cores

engine = pytest.importorskip("slr_fast.engine")

N = 8192  # sequences in the benchmark store when timing
N_CHECK = 1024  # with timing disabled (CI) the cases only have to run correctly: a smaller store keeps them quick
BATCH = 256
TARGET = 30_000
# The loader alone, so the engine gets every core: the default on a CUDA machine. On a CPU-only machine the default
# is one engine thread (LoaderConfig.engine_threads), since there a training step costs far more than its batch.
ENGINE = usable_cores()


def synthetic_sequences(n: int, seed: int = 0):
    """Smooth keypoint tracks with GISLR-like lengths (median ~40, 10..300) and a third of frames hand-less."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(40), 0.8, n), 10, 300).astype(int)
    tracks = (0.5 + np.cumsum(rng.normal(0, 0.004, (1024, 87, 2)), 0)).astype(np.float32)
    hands = slice(40, 82)  # left + right hand in the default layout
    for t in lengths:
        start = int(rng.integers(0, len(tracks) - t))
        seq = tracks[start:start + t].copy()
        seq[rng.random(t) < 1 / 3, hands] = np.nan
        seq[rng.random(t) < 0.2, 40:61] = np.nan  # one hand lost now and then
        yield seq


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory, pytestconfig):
    """(path, number of sequences) of an on-disk store written with the project's default settings."""
    from slr_fast.store import write_store

    timing = pytestconfig.getoption("benchmark_enable", False) or not pytestconfig.getoption(
        "benchmark_disable", False)
    n = N if timing else N_CHECK
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bench") / "loader.zarr"
    write_store(path, synthetic_sequences(n), labels=[int(c) for c in rng.integers(0, 250, n)],
                classes=[f"sign{i}" for i in range(250)], signers=[int(s) for s in rng.integers(0, 21, n)])
    return path, n


def processor(augment):
    proc = engine.BatchProcessor(DEFAULT_LAYOUT, augment=augment, seed=0)
    proc.warmup()  # Numba compile (or cache load) outside the timed region
    return proc


def run_epochs(benchmark, loader, rounds: int = 3) -> dict:
    """Time one epoch per round; samples/s from the median round (also valid when timing is disabled)."""
    times, counts = [], []
    # Warm-up through the exact path timed below: Numba specializes on array flags (read-only store arrays compile
    # anew), so a warm-up on other inputs can leave a compile inside the first timed epoch.
    next(iter(loader))
    loader.set_epoch(0)  # back to the first batch

    def epoch():
        t0 = time.perf_counter()
        n = 0
        for batch in loader:
            n += batch["x"].shape[0]
        times.append(time.perf_counter() - t0)
        counts.append(n)

    benchmark.pedantic(epoch, rounds=rounds, iterations=1, warmup_rounds=0)
    assert counts[0] == loader.num_samples  # every sample delivered, each round
    rate = counts[0] / statistics.median(times)
    benchmark.extra_info.update({"samples_per_s": round(rate), "batch_size": BATCH, "samples": counts[0],
                                 "target_samples_per_s": TARGET, "meets_target": rate >= TARGET,
                                 "engine_threads": loader.engine_threads,
                                 # a shared machine's load changes these figures a lot: record it with them
                                 "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)})
    return {"rate": rate, "first_epoch_s": times[0]}


@pytest.mark.parametrize("augment", [None, "default"], ids=["preprocess", "preprocess+augment"])
def test_loader_in_memory(benchmark, bench_store, augment):
    benchmark.group = "loader"
    store_path, n = bench_store
    proc = processor(augment)
    t0 = time.perf_counter()
    loader = KeypointLoader(store_path, proc, LoaderConfig(batch_size=BATCH, in_memory=True, engine_threads=ENGINE))
    load_s = time.perf_counter() - t0
    with loader:
        res = run_epochs(benchmark, loader)
    bare = processor_only_rate(store_path, proc)
    benchmark.extra_info.update({"load_s": round(load_s, 3),
                                 "samples_per_s_with_load": round(n / (load_s + res["first_epoch_s"])),
                                 "processor_only_samples_per_s": round(bare),
                                 "loader_vs_processor_only": round(res["rate"] / bare, 3)})
    if augment is None:
        base = per_sample_dataloader_rate(store_path, proc)
        benchmark.extra_info["per_sample_dataloader_samples_per_s"] = round(base)
        benchmark.extra_info["speedup_vs_per_sample_dataloader"] = round(res["rate"] / base, 2)
    print(f"\nloader in-memory augment={augment}: {res['rate']:.0f} samples/s, load {load_s:.2f} s "
          f"{dict(benchmark.extra_info)}")


def test_loader_streamed(benchmark, bench_store):
    benchmark.group = "loader"
    store_path, _ = bench_store
    proc = processor(None)
    with KeypointLoader(store_path, proc, LoaderConfig(batch_size=BATCH, in_memory=False,
                                                       engine_threads=ENGINE)) as loader:
        res = run_epochs(benchmark, loader, rounds=2)
    print(f"\nloader streamed: {res['rate']:.0f} samples/s {dict(benchmark.extra_info)}")


class _NoWork:
    """Declares the default output buffers and writes nothing: isolates the loader's own cost."""

    seed = 0

    def alloc(self, B):
        return engine.BatchProcessor(DEFAULT_LAYOUT).alloc(B)

    def process(self, frames, offsets, indices, epoch, out, sample_ids=None):
        return out


def test_loader_overhead(benchmark, bench_store):
    benchmark.group = "loader"
    store_path, _ = bench_store
    with KeypointLoader(store_path, _NoWork(), LoaderConfig(batch_size=BATCH, in_memory=True)) as loader:
        res = run_epochs(benchmark, loader)
    benchmark.extra_info["overhead_us_per_batch"] = round(BATCH / res["rate"] * 1e6, 1)
    print(f"\nloader overhead: {res['rate']:.0f} samples/s {dict(benchmark.extra_info)}")


def processor_only_rate(store_path, proc) -> float:
    """The engine alone on the same batches in this thread (no loader): the ceiling the loader can approach."""
    from slr_fast.store import KeypointStore

    store = KeypointStore.open(store_path).load()
    frames, offsets = store.frames_array(), store.offsets
    out = proc.alloc(BATCH)
    order = np.random.default_rng(0).permutation(len(store))
    proc.process(frames, offsets, order[:BATCH], 1, out)  # warm-up on these very arrays (see run_epochs)
    t0 = time.perf_counter()
    for s in range(0, len(order), BATCH):
        proc.process(frames, offsets, order[s:s + BATCH], 1, out)
    return len(order) / (time.perf_counter() - t0)


def per_sample_dataloader_rate(store_path, proc, n: int = 1024) -> float:
    """Baseline: a map-style Dataset processing one sample per __getitem__, batched by DataLoader's collate."""
    from slr_fast.store import KeypointStore

    store = KeypointStore.open(store_path).load()
    frames, offsets = store.frames_array(), store.offsets
    out = proc.alloc(1)

    class PerSample(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            res = proc.process(frames, offsets, np.array([i]), 0, out)
            return {"x": torch.from_numpy(res["x"][0].copy()), "mask": torch.from_numpy(res["mask"][0].copy()),
                    "length": int(res["length"][0]), "label": int(store.labels[i])}

    n = min(n, len(store) // 4)  # the slow path: a quarter of the store at most
    dl = torch.utils.data.DataLoader(PerSample(), batch_size=BATCH, shuffle=True)
    t0 = time.perf_counter()
    count = sum(b["x"].shape[0] for b in dl)
    return count / (time.perf_counter() - t0)
