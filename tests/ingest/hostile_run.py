"""Child process of the hostile-input tests: reads seeded corruptions of source files and reports each outcome.

Run as `python hostile_run.py parquet|pose WORKDIR SEED COUNT`. It runs in its own process so that a crash (a
signal) or a runaway allocation fails the test with the case named instead of taking pytest down; its address
space is capped so that a bug can never exhaust the machine's memory. Prints one JSON object per case, then a
summary line with the peak memory.

For every case it records what the reader did (the frames, or the IngestError's message). For parquet it also
records what a plain pyarrow read of the same columns gives, so the parent can check that every file read with
success holds exactly what pyarrow holds; .pose has no second reader, so there the frames' shape and values
(finite or NaN, nothing else) are what is checked.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

ADDRESS_SPACE = 4 << 30  # far above what reading these ~100 kB files needs; a 2^30-row claim would exceed it


def reference(path: Path, rows: np.ndarray) -> np.ndarray | None:
    """pyarrow's reading of the columns (frames sorted by number), or None when pyarrow fails or the file has
    no GISLR shape; for comparison only, so it checks nothing of its own."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["frame", "x", "y"])
        frame = np.asarray(table.column("frame").to_numpy(zero_copy_only=False))
        xy = np.stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in "xy"], -1)
    except Exception:
        return None
    if len(frame) == 0 or len(frame) % 543:
        return None
    t = len(frame) // 543
    order = np.argsort(frame.reshape(t, 543)[:, 0], kind="stable")
    return xy.reshape(t, 543, 2)[order][:, rows].astype(np.float32)


def damaged(base: bytes, rng: np.random.Generator, count: int, hot: tuple[int, int]):
    """(name, bytes): truncations, then `count` byte or bit flips, half of them within base[hot[0]:hot[1]]."""
    n = len(base)
    for cut in sorted({0, 1, 4, 8, 12, n // 2, n - 9, n - 8, n - 5, n - 4, n - 1,
                       *rng.integers(1, n, 8).tolist()}):
        yield f"truncated to {cut} bytes", base[:cut]
    for k in range(count):
        data = bytearray(base)
        pos = int(rng.integers(*hot) if k % 2 else rng.integers(0, n))
        if k % 3:
            data[pos] ^= 1 << int(rng.integers(8))
            yield f"bit flip at {pos}", bytes(data)
        else:
            data[pos] = int(rng.integers(256))
            yield f"byte {data[pos]} at {pos}", bytes(data)


def parquet_cases(base: bytes, rows: int, rng: np.random.Generator, count: int):
    """Corrupted versions of a GISLR file of `rows` rows: half the flips in the footer (counts, offsets, types
    live there), and the footer's row counts edited alike or one at a time."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest_testing import edit_footer, row_count_field

    footer = int.from_bytes(base[-8:-4], "little") + 8
    yield from damaged(base, rng, count, hot=(len(base) - footer, len(base)))
    for claim in (0, 1, 542, 543, rows - 543, rows + 543, 2 * rows, 2**31, 2**62, -543,
                  543 * 2**16, 543 * 2**20, 543 * 2**30, 543 * 2**40):  # the last four pass every check but size
        for which in ("all", "first", "last"):
            yield f"footer rows {claim} ({which})", edit_footer(base, row_count_field(rows), row_count_field(claim),
                                                                 which)


def bases(work: Path, rng: np.random.Generator) -> dict[str, Path]:
    """The files corrupted: as GISLR's writer makes them, and with two row groups and page checksums."""
    import pyarrow.parquet as pq

    from slr_fast.ingest import synthetic_gislr_frames, write_gislr_file

    plain = work / "base.parquet"
    write_gislr_file(plain, synthetic_gislr_frames(rng, 6, p_no_hand=0.3), frame_start=11)
    checked = work / "base_crc.parquet"
    pq.write_table(pq.read_table(plain), checked, row_group_size=3 * 543, write_page_checksum=True)
    return {"plain": plain, "crc": checked}


def report(work: Path, kind: str, cases, suffix: str, read, describe) -> None:
    """Write each (name, bytes) case to a file, read it, and print one JSON line: `describe(frames)`'s facts, or
    the IngestError's message."""
    from slr_fast.ingest import IngestError

    for k, (name, data) in enumerate(cases):
        path = work / f"{kind}-{k}{suffix}"
        path.write_bytes(data)
        out = {"base": kind, "case": name, "path": str(path)}
        try:
            out.update(ok=True, **describe(path, read(path)))
        except IngestError as e:
            out.update(ok=False, message=str(e))
        print(json.dumps(out), flush=True)


def run_parquet(work: Path, rng: np.random.Generator, count: int) -> None:
    from slr_fast.ingest import read_gislr_file
    from slr_fast.layout import DEFAULT_LAYOUT

    rows = DEFAULT_LAYOUT.gislr_rows()
    for kind, source in bases(work, rng).items():
        original = read_gislr_file(source)

        def describe(path: Path, frames: np.ndarray, original=original) -> dict:
            want = reference(path, rows)
            return {"shape": list(frames.shape),
                    "same_as_pyarrow": want is not None and np.array_equal(frames, want, equal_nan=True),
                    "same_as_original": np.array_equal(frames, original, equal_nan=True)}

        report(work, kind, parquet_cases(source.read_bytes(), 6 * 543, rng, count), ".parquet", read_gislr_file,
               describe)


def run_pose(work: Path, rng: np.random.Generator, count: int) -> None:
    """A generated Holistic .pose file (normalized) and one in pixels, damaged; the header is the first ~10 kB."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest_testing import HOLISTIC, holistic_data, write_pose

    from slr_fast.ingest import read_pose_file

    def describe(path: Path, frames: np.ndarray) -> dict:
        return {"shape": list(frames.shape), "dtype": str(frames.dtype),
                "finite_or_nan": bool((np.isfinite(frames) | np.isnan(frames)).all())}

    sources = {"normalized": write_pose(work / "norm.pose", holistic_data(rng, 5), components=HOLISTIC),
               "pixel": write_pose(work / "pix.pose", holistic_data(rng, 4) * 500, components=HOLISTIC)}
    for kind, source in sources.items():  # half the flips in the header: names, counts, sizes
        report(work, kind, damaged(source.read_bytes(), rng, count, hot=(0, 12_000)), ".pose", read_pose_file,
               describe)


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    fmt, work, seed, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    {"parquet": run_parquet, "pose": run_pose}[fmt](work, np.random.default_rng(seed), count)
    print(json.dumps({"maxrss_kb": peak_rss_kb()}), flush=True)


def peak_rss_kb() -> int:
    """This process's peak resident memory since it started (VmHWM: getrusage's ru_maxrss would include the
    parent's size at fork, which Linux carries across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    main()
