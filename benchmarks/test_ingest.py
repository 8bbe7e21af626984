"""Ingest throughput: GISLR parquet files/s of slr_fast's reader against the common pandas way, same files, same run.

Files: generated GISLR-format parquet (exact column names/dtypes, ~1/3 of frames without hands), 20-100 frames
each — 200 files when benchmarks are timed, 24 under `--benchmark-disable` (CI checks correctness only).

Baselines, both measured here on the same files:
- `pandas`: the GISLR starter-notebook loader — `pd.read_parquet(path, columns=["x", "y", "z"])`, reshape
  (frames, 543, 3), select the layout's rows. It reads only the coordinates and trusts the row order.
- `pandas_full`: `pd.read_parquet(path)` (every column), then the same — the other common variant.
slr_fast additionally checks every row's type/landmark_index and sorts frames by number. Also timed: slr_fast on
one thread, without the row check, and with `engine="pyarrow"` (its pyarrow reader, what the compiled Parquet
reader replaced). Rounds alternate between the ways; files/s is each way's best round, and each speedup is the
median over rounds of the paired time ratio, which stays meaningful on a machine whose load changes between rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from slr_fast.ingest import read_gislr_csv, read_gislr_file, write_gislr_dataset
from slr_fast.ingest.common import default_workers
from slr_fast.ingest.gislr import _columns_fast
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_ROWS_PER_FRAME

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def gislr_files(request, tmp_path_factory) -> list[Path]:
    opt = request.config.getoption
    timed = opt("benchmark_enable", default=False) or not opt("benchmark_disable", default=False)
    csv_path = write_gislr_dataset(tmp_path_factory.mktemp("gislr_bench"), 200 if timed else 24, min_frames=20,
                                   max_frames=100, num_signs=25, num_signers=8, seed=0)
    return [e.path for e in read_gislr_csv(csv_path)]


ROWS = DEFAULT_LAYOUT.gislr_rows()


def pandas_way(path: Path) -> np.ndarray:
    """The starter-notebook loader: coordinates only, reshape, select rows."""
    data = pd.read_parquet(path, columns=["x", "y", "z"])
    frames = data.to_numpy().reshape(-1, GISLR_ROWS_PER_FRAME, 3)
    return frames[:, ROWS, :2].astype(np.float32)


def pandas_full_way(path: Path) -> np.ndarray:
    """Read the whole file with pandas, then the same reshape and selection."""
    data = pd.read_parquet(path)
    frames = data[["x", "y", "z"]].to_numpy().reshape(-1, GISLR_ROWS_PER_FRAME, 3)
    return frames[:, ROWS, :2].astype(np.float32)


def read_all(files: list[Path], fn: Callable[[Path], np.ndarray], workers: int) -> list[np.ndarray]:
    """Read every file, in order, on `workers` threads (as ingest_gislr does)."""
    if workers == 1:
        return [fn(f) for f in files]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, files))


def measure(files: list[Path], ways: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each way, the ways interleaved round by round so each round's pair sees one load."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, run in ways.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def paired_speedup(times: dict[str, list[float]], ours: str, base: str) -> float:
    """Median over rounds of base time / our time: robust to load that changes between rounds."""
    return float(np.median(np.asarray(times[base]) / np.asarray(times[ours])))


def test_gislr_read_vs_pandas(benchmark, gislr_files):
    workers = int(os.environ.get("SLR_BENCH_WORKERS", default_workers()))
    # The compiled reader must handle these files itself (no silent fallback to pyarrow in what is timed).
    assert all(_columns_fast(f, DEFAULT_LAYOUT, True) is not None for f in gislr_files)
    ours = read_all(gislr_files, read_gislr_file, workers)
    # Same arrays as the baseline (the generated files are in frame order), so the comparison is like for like.
    for a, b in zip(ours, read_all(gislr_files, pandas_way, 1), strict=True):
        np.testing.assert_array_equal(a, b)
    rounds = 1 if benchmark.disabled else 7
    times = measure(gislr_files, {
        "pandas": lambda: read_all(gislr_files, pandas_way, 1),
        "pandas_full": lambda: read_all(gislr_files, pandas_full_way, 1),
        "slr_fast_1_thread": lambda: read_all(gislr_files, read_gislr_file, 1),
        "slr_fast": lambda: read_all(gislr_files, read_gislr_file, workers),
        "slr_fast_no_verify": lambda: read_all(gislr_files, partial(read_gislr_file, verify=False), workers),
        "slr_fast_pyarrow": lambda: read_all(gislr_files, partial(read_gislr_file, engine="pyarrow"), workers),
    }, rounds)
    rate = {name: round(len(gislr_files) / min(t), 1) for name, t in times.items()}  # best round
    benchmark.group = "ingest"
    benchmark.extra_info.update(
        files=len(gislr_files), workers=workers, rounds=rounds, frames=int(sum(len(a) for a in ours)),
        files_per_s=rate["slr_fast"], files_per_s_1_thread=rate["slr_fast_1_thread"],
        files_per_s_no_verify=rate["slr_fast_no_verify"], pandas_files_per_s=rate["pandas"],
        pandas_full_files_per_s=rate["pandas_full"], pyarrow_engine_files_per_s=rate["slr_fast_pyarrow"],
        speedup_vs_pandas=round(paired_speedup(times, "slr_fast", "pandas"), 2),
        speedup_vs_pandas_full=round(paired_speedup(times, "slr_fast", "pandas_full"), 2),
        speedup_1_thread_vs_pandas=round(paired_speedup(times, "slr_fast_1_thread", "pandas"), 2),
        speedup_no_verify_vs_pandas=round(paired_speedup(times, "slr_fast_no_verify", "pandas"), 2),
        speedup_vs_pyarrow_engine=round(paired_speedup(times, "slr_fast", "slr_fast_pyarrow"), 2),
    )
    print({k: v for k, v in benchmark.extra_info.items()})
    result = benchmark.pedantic(read_all, args=(gislr_files, read_gislr_file, workers), rounds=rounds, iterations=1)
    assert len(result) == len(gislr_files)


def test_gislr_ingest_to_store(benchmark, gislr_files, tmp_path):
    """End to end: csv + parquet files -> published Zarr store (reading, checks, compression, index)."""
    from slr_fast.ingest import ingest_gislr

    csv_path = gislr_files[0].parents[2] / "train.csv"
    reports = []

    def run():
        reports.append(ingest_gislr(csv_path, tmp_path / "s.zarr", overwrite=True, progress=False))

    benchmark.group = "ingest"
    benchmark.pedantic(run, rounds=1 if benchmark.disabled else 3, iterations=1)
    best = max(r.files_per_s for r in reports)
    benchmark.extra_info.update(files=len(gislr_files), files_per_s=round(best, 1),
                                samples_per_s=round(best, 1))
    assert reports[-1].written == len(gislr_files) and not reports[-1].skipped
