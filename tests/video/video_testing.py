"""Clips for the video tests: cut from the real signer clip, or made to be bad input, with PyAV (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import REAL_CLIP, cut, encode  # noqa: F401  (re-exported for the video tests)


def need_video() -> None:
    """Skip (with the reason) where the video extra or the real clip is missing."""
    from slr_fast.video import video_available

    if not video_available():
        pytest.skip("the video extra is not installed: pip install -e '.[video]'")
    if not REAL_CLIP.is_file():
        pytest.skip(f"the real clip {REAL_CLIP} is not available")


def empty_scene(dst: Path, frames: int = 4) -> Path:
    """A clip of flat grey frames: nobody in it."""
    import av

    grey = [av.VideoFrame.from_ndarray(np.full((96, 128, 3), 80 + 20 * i, np.uint8), format="rgb24")
            for i in range(frames)]
    return encode(dst, grey, 30)


def bad_files(folder: Path) -> dict[str, Path]:
    """One file per kind of bad video input, by kind (`missing` is not created)."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = cut(folder / "whole.mp4", 0, 6)  # index at the end: cut before it, the file cannot be opened
    indexed = cut(folder / "indexed.mp4", 0, 6, faststart=True)  # index first: cut, the frames run out
    out = {"zero_bytes": folder / "zero.mp4", "text": folder / "text.mp4", "truncated": folder / "truncated.mp4",
           "truncated_indexed": folder / "truncated_indexed.mp4", "no_person": empty_scene(folder / "nobody.mp4"),
           "missing": folder / "missing.mp4"}
    out["zero_bytes"].write_bytes(b"")
    out["text"].write_text("file,sign\nthis is not a video\n")
    out["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    out["truncated_indexed"].write_bytes(indexed.read_bytes()[: indexed.stat().st_size * 2 // 3])
    whole.unlink()
    indexed.unlink()
    return out


def write_labels(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A labels CSV `file,sign` (files as given: absolute paths stay absolute)."""
    path.write_text("file,sign\n" + "".join(f"{f},{s}\n" for f, s in rows), encoding="utf-8")
    return path
