"""Ingest throughput: `slr-fast ingest gislr` as a whole process against a bare pyarrow read and the pandas way.

The target (issue 11): a whole-process ingest of a folder of GISLR files — start-up, imports, csv, reading, every
row checked, the store compressed and published — within 1.3x the wall time of a bare script that only reads the
`x`/`y` columns of every file with pyarrow on all cores and does nothing else, and faster than the pandas way.

Files: generated GISLR-format parquet (exact column names and dtypes, ~1/3 of frames without hands) with the real
corpus's length spread (median ~18 frames, long tail) — 600 files when timed, 24 under `--benchmark-disable` (CI
checks that the three commands run and agree). `SLR_BENCH_GISLR=DIR` times a real GISLR folder instead (its
train.csv; `SLR_BENCH_LIMIT=N` takes the first N rows).

The three commands, each a fresh `python` process run in turn, round after round (7 rounds when timed):
- `bare`: `pq.ParquetFile(path).read(columns=["x", "y"])` for every file on one thread per core; nothing else.
- `slr_fast`: `python -m slr_fast ingest gislr DIR --out STORE --overwrite --no-progress` (the defaults).
- `pandas`: the GISLR starter-notebook loader on one thread per core: `pd.read_parquet(path, columns=["x", "y",
  "z"])`, reshape (frames, 543, 3), take the layout's rows. It trusts the row order and writes nothing.
Each ratio is the median over rounds of the paired wall-time ratio, which stays meaningful on a machine whose load
changes between rounds; seconds are each command's median round. Each command also runs on one file, which is its
start-up cost; the difference over the corpus gives each command's cost per file (`per_file_ms`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slr_fast.ingest import read_gislr_csv, read_gislr_file, write_gislr_dataset
from slr_fast.layout import DEFAULT_LAYOUT

REPO = Path(__file__).resolve().parents[1]

_LIST_FILES = """
import csv, os, sys
from concurrent.futures import ThreadPoolExecutor
root = sys.argv[1]
csv_path = root if root.endswith(".csv") else os.path.join(root, "train.csv")
with open(csv_path, newline="") as f:
    paths = [os.path.join(os.path.dirname(csv_path), r["path"]) for r in csv.DictReader(f)]
paths = paths[:int(sys.argv[2])] if len(sys.argv) > 2 else paths
"""
BARE = _LIST_FILES + """
import pyarrow.parquet as pq
def read(path):
    return pq.ParquetFile(path).read(columns=["x", "y"], use_threads=False).num_rows
with ThreadPoolExecutor(os.cpu_count()) as pool:
    rows = sum(pool.map(read, paths))
print(len(paths), rows)
"""
PANDAS = _LIST_FILES + """
import numpy as np, pandas as pd
rows = np.array(ROWS)
def read(path):
    xyz = pd.read_parquet(path, columns=["x", "y", "z"]).to_numpy().reshape(-1, 543, 3)
    return xyz[:, rows, :2].astype(np.float32)
with ThreadPoolExecutor(os.cpu_count()) as pool:
    frames = sum(len(a) for a in pool.map(read, paths))
print(len(paths), frames)
""".replace("ROWS", str(DEFAULT_LAYOUT.gislr_rows().tolist()))


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory) -> tuple[Path, int]:
    """(train.csv, number of files) of the corpus to time."""
    real = os.environ.get("SLR_BENCH_GISLR")
    if real:
        csv_path = Path(real) / "train.csv" if Path(real).is_dir() else Path(real)
        limit = int(os.environ.get("SLR_BENCH_LIMIT", 0)) or None
        return csv_path, len(read_gislr_csv(csv_path)[:limit])
    opt = request.config.getoption
    timed = opt("benchmark_enable", default=False) or not opt("benchmark_disable", default=False)
    n = 600 if timed else 24
    csv_path = write_gislr_dataset(tmp_path_factory.mktemp("gislr_bench"), n, min_frames=2, max_frames=300,
                                   num_signs=25, num_signers=8, seed=0, real_lengths=True)
    return csv_path, n


def _run(argv: list[str]) -> tuple[float, str]:
    """Wall seconds of one whole process, and what it printed (a failure fails the benchmark, with its output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, f"{argv[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return seconds, done.stdout


def test_gislr_ingest_whole_process(benchmark, corpus, tmp_path):
    csv_path, n = corpus

    def commands(files: int) -> dict[str, list[str]]:
        limit = [str(files)]
        return {
            "bare": [sys.executable, "-c", BARE, str(csv_path), *limit],
            "slr_fast": [sys.executable, "-m", "slr_fast", "ingest", "gislr", str(csv_path), "--out",
                         str(tmp_path / "s.zarr"), "--overwrite", "--no-progress", "--limit", *limit],
            "pandas": [sys.executable, "-c", PANDAS, str(csv_path), *limit],
        }

    rounds = 1 if benchmark.disabled else 7
    times: dict[str, list[float]] = {}
    outputs: dict[str, str] = {}
    for _ in range(rounds):
        # The whole corpus, then one file: the second run is each command's start-up (interpreter, imports,
        # csv, an empty store), so (whole - one) / (n - 1) is its cost per file.
        for files, tag in ((n, ""), (1, "_1")):
            for name, argv in commands(files).items():
                seconds, outputs[name + tag] = _run(argv)
                times.setdefault(name + tag, []).append(seconds)
    # The three read the same files: the bare script's row count and the pandas frame count agree with the store.
    files, rows = map(int, outputs["bare"].split())
    _, frames = map(int, outputs["pandas"].split())
    assert files == n and rows == 543 * frames
    assert f"wrote {n} sequences ({frames} frames" in outputs["slr_fast"], outputs["slr_fast"]

    t = {name: np.asarray(v) for name, v in times.items()}
    per_file = {name: (t[name] - t[name + "_1"]) / max(n - 1, 1) for name in commands(1)}
    benchmark.group = "ingest"
    benchmark.extra_info.update(
        files=n, frames=frames, rounds=rounds, cpus=os.cpu_count(),
        seconds={name: round(float(np.median(v)), 3) for name, v in t.items()},  # median round; "_1": one file
        files_per_s=round(n / float(np.median(t["slr_fast"])), 1),
        time_ratio_vs_bare_xy_read=round(float(np.median(t["slr_fast"] / t["bare"])), 3),  # target <= 1.3
        speedup_vs_pandas=round(float(np.median(t["pandas"] / t["slr_fast"])), 2),  # target > 1
        per_file_ms={name: round(1e3 * float(np.median(v)), 3) for name, v in per_file.items()},
        per_file_ratio_vs_bare=round(float(np.median(per_file["slr_fast"]) / np.median(per_file["bare"])), 2),
    )
    print({k: v for k, v in benchmark.extra_info.items()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures above are the result


def test_gislr_reader_in_process(benchmark, corpus):
    """files/s of `read_gislr_file` alone (one thread; every row checked), the part of an ingest that scales."""
    csv_path, n = corpus
    paths = [e.path for e in read_gislr_csv(csv_path)[:n]]
    frames = [read_gislr_file(p) for p in paths]
    assert all(f.shape[1:] == (DEFAULT_LAYOUT.num_points, 2) for f in frames)
    benchmark.group = "ingest"
    benchmark.pedantic(lambda: [read_gislr_file(p) for p in paths], rounds=1 if benchmark.disabled else 5,
                       iterations=1)
    if not benchmark.disabled:
        benchmark.extra_info.update(files=n, files_per_s=round(n / benchmark.stats.stats.min, 1))
