"""Per-video extraction results on disk, so a killed extraction continues where it stopped.

One `.npz` per video in the cache folder (default `<store>.extract-cache/` beside the store), named by a hash of
what the result depends on: the video's absolute path, size and modification time, the layout and the extractor
(MediaPipe version, Holistic settings). A changed video or another layout is a new name, so a stale result is never
read. Each file is written atomically by the worker that extracted the video (`write_atomic`: temporary file,
fsync, rename), so a `kill -9` at any moment leaves finished videos cached and nothing half-written. A video that
is bad input (a VideoError) is cached with its reason too, so a re-run does not decode it again; a worker that
crashed is not cached (the next run tries that video again).

Cleaning: after the store is published the cache folder is removed, unless `keep_cache` (`--keep-cache`) asks to
keep it (to build another store from the same videos, e.g. with other trims or labels, without extracting again).
A run that fails or is killed keeps it: that is what the next run resumes from. Deleting the folder by hand is
always safe; it only costs re-extraction.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from slr_fast.fileio import write_atomic
from slr_fast.layout import Layout

# What a cached result depends on besides the video and the layout. Bump when extraction changes its output.
EXTRACTOR = {"tool": "mediapipe.solutions.holistic", "version": "0.10.21", "model_complexity": 1,
             "static_image_mode": False, "refine_face_landmarks": False, "format": 1}
# One line per video extracted (not read from the cache): "<key> <path>"; appended by the worker after its result
# is in place, so counting lines counts extractions (tests use it to check no video is extracted twice).
LOG_NAME = "extracted.log"


def default_cache_dir(out: str | os.PathLike) -> Path:
    """`<store>.extract-cache` beside a local store; for a URL, a folder of that name in the working folder."""
    text = os.fspath(out)
    if "://" in text:
        return Path.cwd() / (text.rstrip("/").rsplit("/", 1)[-1] + ".extract-cache")
    path = Path(text).absolute()
    return path.with_name(path.name + ".extract-cache")


def cache_key(path: str | os.PathLike, layout: Layout) -> str:
    """The cache name of one video's result: changes with the file (size, mtime), its place and the layout."""
    path = Path(path).absolute()
    st = os.stat(path)
    what = {"path": os.fspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "layout": layout.to_dict(),
            "extractor": EXTRACTOR}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:40]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_result(cache_dir: Path, key: str, video: str | os.PathLike, *, keypoints: np.ndarray | None = None,
                info: dict | None = None, error: str | None = None) -> None:
    """Cache one video's keypoints and info, or the reason it is bad input; then log the extraction."""
    arrays = {"info": np.array(json.dumps(info or {}, sort_keys=True)), "error": np.array(error or "")}
    if keypoints is not None:
        arrays["keypoints"] = np.ascontiguousarray(keypoints, np.float32)
    data = _npz_bytes(arrays)
    write_atomic(cache_dir / f"{key}.npz", lambda f: f.write(data), size_hint=len(data))
    line = f"{key} {os.fspath(video)}\n".encode()
    fd = os.open(cache_dir / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent workers never interleave
    finally:
        os.close(fd)


def load_result(cache_dir: Path, key: str, keypoints: bool = True) -> tuple[np.ndarray | None, dict, str | None] | None:
    """(keypoints or None, info, error or None) from the cache, or None when absent or unreadable (re-extract).
    `keypoints=False` reads only the info and error."""
    path = cache_dir / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            error = str(z["error"]) or None
            has = "keypoints" in z.files
            points = z["keypoints"] if has and keypoints else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None  # damaged by hand or by a disk: extracting again is always correct
    if error is None and not has:
        return None
    return points, info, error


def count_extractions(cache_dir: str | os.PathLike) -> dict[str, int]:
    """How many times each video was extracted (not read from the cache) while this cache folder existed."""
    counts: dict[str, int] = {}
    try:
        text = (Path(cache_dir) / LOG_NAME).read_text()
    except FileNotFoundError:
        return counts
    for line in text.splitlines():
        _, _, video = line.partition(" ")
        counts[video] = counts.get(video, 0) + 1
    return counts
