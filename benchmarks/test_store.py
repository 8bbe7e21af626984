"""Store benchmarks: compression options, whole-store load, random access to single sequences and to batches.

Data: smooth keypoint trajectories from a small random-walk generator (body sway, hands that drift, articulate
and vanish in runs, detector jitter), and the real MediaPipe `.pose` samples in ../shared when present, read with
the project's `.pose` reader. Figures go to `benchmark.extra_info` (compression_ratio, bytes_per_frame,
encode_mb_s, decode_mb_s, gb_per_s, samples_per_s, speedup_vs_per_sequence); they come from our own best-of-N
timings so they are filled in even under `--benchmark-disable`.

    .venv/bin/python -m pytest benchmarks/test_store.py --benchmark-enable -s    # timed, prints the tables
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.store import DEFAULT_CHUNK_FRAMES, DEFAULT_COMPRESSION, KeypointStore, compression_presets, write_store

POSE_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pose-samples"
CHUNK_SIZES = (256, 512, 2048)
BATCH = 32


def keypoint_walks(n: int, seed: int = 0) -> list[np.ndarray]:
    """n sequences (T, 87, 2) float32 with the statistics that matter for compression and access.

    Lengths are log-normal (median 30 frames, 2..300) like isolated-sign clips; each part moves as a smooth
    (twice-integrated) random walk around a template, hands vanish in Markov runs (~30% of frames), and every
    coordinate carries ~1e-3 of detector jitter, which is what bounds lossless compression of float32.
    """
    rng = np.random.default_rng(seed)
    sl = DEFAULT_LAYOUT.part_slices()
    template = {name: rng.normal(0, 1, (s.stop - s.start, 2)) for name, s in sl.items()}
    lengths = np.clip(rng.lognormal(np.log(30), 0.6, n), 2, 300).astype(int)

    def smooth(t: int, k: int, scale: float) -> np.ndarray:
        velocity = np.cumsum(rng.normal(0, scale, (t, k)), axis=0)
        return np.cumsum(0.3 * velocity, axis=0)

    out = []
    for t in lengths:
        seq = np.empty((t, 87, 2))
        body = rng.uniform(0.4, 0.6, 2) + smooth(t, 2, 0.0008)
        seq[:, sl["pose"]] = body[:, None] + 0.08 * template["pose"]
        seq[:, sl["lips"]] = body[:, None] + [0.0, -0.12] + 0.01 * template["lips"] + smooth(t, 1, 0.0003)[:, None]
        for hand, side in (("left_hand", 1), ("right_hand", -1)):
            wrist = body + [0.1 * side, 0.1] + smooth(t, 2, 0.004)
            seq[:, sl[hand]] = wrist[:, None] + 0.02 * template[hand] * (1 + smooth(t, 1, 0.0015)[:, :, None])
            flips = rng.random(t) < 0.08
            present = (np.cumsum(flips) + (rng.random() < 0.7)) % 2 == 1
            seq[~present, sl[hand]] = np.nan
        seq += rng.normal(0, 0.0015, seq.shape)
        out.append(seq.astype(np.float32))
    return out


def real_keypoints() -> list[np.ndarray]:
    """The real MediaPipe samples in the default layout (points a file lacks are NaN); skips when absent."""
    files = sorted(POSE_SAMPLES.glob("*.pose")) if POSE_SAMPLES.is_dir() else []
    if not files:
        pytest.skip(f"real .pose samples not found at {POSE_SAMPLES}")
    pytest.importorskip("pose_format")
    from slr_fast.ingest.pose import read_pose_file

    return [read_pose_file(f, missing_points="nan") for f in files]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _best(benchmark, fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` calls (the least disturbed by other work); one call when benchmarks are off."""
    best = float("inf")
    for _ in range(repeat if not benchmark.disabled else 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _write(path: Path, seqs: list[np.ndarray], **options) -> tuple[KeypointStore, float]:
    t0 = time.perf_counter()
    store = write_store(path, seqs, [0] * len(seqs), **options)
    return store, time.perf_counter() - t0


@pytest.fixture(scope="module")
def walks() -> list[np.ndarray]:
    return keypoint_walks(500, seed=0)


@pytest.fixture(scope="module")
def access_stores(tmp_path_factory) -> dict[int, KeypointStore]:
    """The same 1500 sequences (~51k frames) stored with each chunk size, default compression."""
    seqs = keypoint_walks(1500, seed=1)
    root = tmp_path_factory.mktemp("access")
    return {c: _write(root / f"c{c}.zarr", seqs, chunk_frames=c)[0] for c in CHUNK_SIZES}


@pytest.fixture(scope="module")
def compression_table():
    """Rows of the compression table, printed after the last compression case (visible with -s)."""
    rows: list[str] = []
    yield rows
    if rows:
        print(f"\n| data | compression | ratio | bytes/frame | encode MB/s | decode MB/s |  (chunk "
              f"{DEFAULT_CHUNK_FRAMES} frames, {os.cpu_count()} cores)\n|---|---|---|---|---|---|")
        print("\n".join(rows))


@pytest.mark.parametrize("compression", list(compression_presets()))
@pytest.mark.parametrize("data", ["walks", "real"])
def test_compression(benchmark, tmp_path, walks, compression_table, data, compression):
    seqs = walks if data == "walks" else real_keypoints()
    flat = np.concatenate(seqs)
    # A last partial chunk is stored full size (NaN padding): the 545 real frames go in one exact chunk (about the
    # default size) so padding does not bias their ratios; for the ~17k synthetic frames it is under 3%.
    chunk = len(flat) if data == "real" else DEFAULT_CHUNK_FRAMES
    store, encode_s = _write(tmp_path / "s.zarr", seqs, compression=compression, chunk_frames=chunk)
    decoded = KeypointStore.open(tmp_path / "s.zarr").frames_array()
    assert np.array_equal(decoded.view(np.uint32), flat.view(np.uint32))  # lossless, NaN bits included

    disk = _dir_bytes(tmp_path / "s.zarr" / "frames")
    decode_s = _best(benchmark, store.frames_array)
    info = {
        "frames": len(flat),
        "compression_ratio": round(flat.nbytes / disk, 3),
        "bytes_per_frame": round(disk / len(flat), 1),
        "encode_mb_s": round(flat.nbytes / encode_s / 1e6, 1),
        "decode_mb_s": round(flat.nbytes / decode_s / 1e6, 1),
    }
    benchmark.group = f"store-compression-{data}"
    benchmark.extra_info.update(info)
    benchmark(store.frames_array)
    compression_table.append(f"| {data} | {compression} | {info['compression_ratio']:.2f} | "
                             f"{info['bytes_per_frame']:.0f} | {info['encode_mb_s']:.0f} | {info['decode_mb_s']:.0f} |")


@pytest.mark.benchmark(group="store")
def test_write(benchmark, tmp_path, walks):
    """Streaming write with the default chunking and compression (the store side of every ingest)."""
    counter = iter(range(10**6))

    def write():
        return write_store(tmp_path / f"w{next(counter)}.zarr", walks, [0] * len(walks))

    raw = sum(s.nbytes for s in walks)
    seconds = _best(benchmark, write)
    benchmark.extra_info.update(samples_per_s=round(len(walks) / seconds), mb_per_s=round(raw / seconds / 1e6, 1),
                                chunk_frames=DEFAULT_CHUNK_FRAMES, compression=DEFAULT_COMPRESSION)
    store = benchmark(write)
    assert len(store) == len(walks) and store.num_frames == sum(len(s) for s in walks)
    print(f"write: {len(walks) / seconds:.0f} sequences/s, {raw / seconds / 1e6:.0f} MB/s raw")


@pytest.mark.benchmark(group="store")
@pytest.mark.parametrize("chunk_frames", CHUNK_SIZES)
def test_full_load(benchmark, access_stores, chunk_frames):
    store = access_stores[chunk_frames]
    raw = store.num_frames * DEFAULT_LAYOUT.num_points * DEFAULT_LAYOUT.num_channels * 4
    seconds = _best(benchmark, store.load)  # a fresh in-memory copy every call
    disk = _dir_bytes(Path(store.where) / "frames")
    benchmark.extra_info.update(gb_per_s=round(raw / seconds / 1e9, 3), samples_per_s=round(len(store) / seconds),
                                bytes_per_frame=round(disk / store.num_frames, 1), chunk_frames=chunk_frames,
                                compression=DEFAULT_COMPRESSION)
    loaded = benchmark(store.load)
    assert loaded.in_memory and loaded.num_frames == store.num_frames
    print(f"full load, chunk {chunk_frames}: {raw / seconds / 1e9:.3f} GB/s, {disk / store.num_frames:.0f} B/frame")


@pytest.mark.benchmark(group="store")
@pytest.mark.parametrize("chunk_frames", CHUNK_SIZES)
def test_random_single(benchmark, access_stores, chunk_frames):
    store = access_stores[chunk_frames]
    idx = np.random.default_rng(0).integers(0, len(store), 100)
    store[int(idx[0])]  # warm: metadata read, files in the page cache

    def read_all():
        return [store[int(i)][0] for i in idx]

    seconds = _best(benchmark, read_all)
    benchmark.extra_info.update(samples_per_s=round(len(idx) / seconds), chunk_frames=chunk_frames)
    got = benchmark(read_all)
    assert all(len(g) == store.lengths[i] for g, i in zip(got, idx, strict=True))
    print(f"random single reads, chunk {chunk_frames}: {len(idx) / seconds:.0f} samples/s")


@pytest.mark.benchmark(group="store")
@pytest.mark.parametrize("chunk_frames", CHUNK_SIZES)
def test_random_batch(benchmark, access_stores, chunk_frames):
    """get_many on random batches of 32 vs reading the same sequences one by one, measured in the same run."""
    store = access_stores[chunk_frames]
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, len(store), BATCH) for _ in range(8)]
    store.get_many(batches[0])  # warm

    def batched():
        return [store.get_many(b) for b in batches]

    def per_sequence():
        return [[store[int(i)][0] for i in b] for b in batches]

    t_batch, t_single = _best(benchmark, batched), _best(benchmark, per_sequence)
    n = BATCH * len(batches)
    benchmark.extra_info.update(samples_per_s=round(n / t_batch), baseline_samples_per_s=round(n / t_single),
                                speedup_vs_per_sequence=round(t_single / t_batch, 2), chunk_frames=chunk_frames)
    got = benchmark(batched)
    for batch, idx in zip(got, batches, strict=True):
        assert [len(g) for g in batch] == store.lengths[idx].tolist()
    print(f"random batches of {BATCH}, chunk {chunk_frames}: get_many {n / t_batch:.0f} samples/s, "
          f"per-sequence {n / t_single:.0f} samples/s ({t_single / t_batch:.2f}x)")


@pytest.mark.benchmark(group="store")
def test_in_memory_batch(benchmark, access_stores):
    store = access_stores[DEFAULT_CHUNK_FRAMES].load()
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, len(store), BATCH) for _ in range(200)]

    def batched():
        return [store.get_many(b) for b in batches]

    seconds = _best(benchmark, batched)
    benchmark.extra_info.update(samples_per_s=round(BATCH * len(batches) / seconds))
    got = benchmark(batched)
    assert len(got) == len(batches) and all(len(b) == BATCH for b in got)
    print(f"in-memory random batches of {BATCH}: {BATCH * len(batches) / seconds:.0f} samples/s")
