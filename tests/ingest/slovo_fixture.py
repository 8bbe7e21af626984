"""A tiny Slovo-shaped dataset: annotations.csv (tab-separated), train/ and test/ clips cut from the real signer
clip, and a slovo_mediapipe.json of hand keypoints whose values are known (so sides and frames can be checked)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from clips import REAL_CLIP, cut  # noqa: F401  (REAL_CLIP re-exported for the Slovo tests)

from slr_fast.ingest.slovo import COLUMNS

# attachment_id, user_id, text, train, begin, end, frames [start, stop) of the real clip (58 frames, a right hand
# in frames 13, 17-22, 28-33, 35-41). Three train signers, one test signer, a no-event row.
ROWS = (
    ("a1-hello", "u1ab", "привет", True, 2, 6, (14, 22)),
    ("a2-morning", "u2cd", "утро", True, 1, 7, (28, 36)),
    ("a3-none", "u3ef", "no_event", True, 0, 8, (0, 8)),
    ("b1-hello", "u4aa", "привет", False, 3, 8, (36, 44)),
    ("b2-morning", "u4aa", "утро", False, 0, 4, (17, 25)),
)
CLIP_SIZE = (540, 720)  # width, height of the real clip


def annotation_rows(rows=ROWS) -> list[dict]:
    """The csv rows of `rows`, as annotations.csv has them."""
    w, h = CLIP_SIZE
    return [{"attachment_id": aid, "user_id": user, "width": w, "height": h, "length": stop - start, "text": text,
             "train": str(train), "begin": begin, "end": end}
            for aid, user, text, train, begin, end, (start, stop) in rows]


def write_annotations(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    """A tab-separated annotations.csv with `columns` (cells missing from a row are left empty)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def hand(cx: float, cy: float = 0.5, z: bool = False) -> list[dict]:
    """21 points whose mean x is exactly cx (point i at cx + 0.01 * (i - 10))."""
    pts = [{"x": cx + 0.01 * (i - 10), "y": cy + 0.005 * i} for i in range(21)]
    if z:
        for i, p in enumerate(pts):
            p["z"] = -0.001 * i
    return pts


def keypoint_frames() -> dict[str, list[dict]]:
    """slovo_mediapipe.json content: per attachment id a list of frames {"hand 1": [...], "hand 2": [...]}."""
    return {
        # Two hands (hand 1 on the image right: the signer's left), then lone hands by the midline 0.5, an empty frame.
        "a1-hello": [{"hand 1": hand(0.7), "hand 2": hand(0.3)}, {"hand 1": hand(0.35)}, {},
                     {"hand 2": hand(0.65)}],
        # No two-hand frame: the midline is the image centre.
        "a2-morning": [{"hand 1": hand(0.45)}, {"hand 1": hand(0.55)}, {"hand 2": hand(0.4)}],
        # Both frames with both hands; hand 1 is the signer's right hand here. Midline (0.6+0.8)/2 = 0.7.
        "a3-none": [{"hand 1": hand(0.6), "hand 2": hand(0.8)}, {"hand 1": hand(0.62), "hand 2": hand(0.8)}],
        "b1-hello": [{"hand 2": hand(0.2)}] * 5,
        "b2-morning": [{"hand 1": hand(0.3), "hand 2": hand(0.5)}, {"hand 1": hand(0.66)}],
        "x9-not-annotated": [{"hand 1": hand(0.5)}],  # in the JSON only: reported, not ingested
    }


def write_keypoints(path: Path, frames: dict | None = None) -> Path:
    """slovo_mediapipe.json (the fixture's frames unless given)."""
    path.write_text(json.dumps(keypoint_frames() if frames is None else frames), encoding="utf-8")
    return path


def write_slovo_fixture(root: Path, *, videos: bool = True, rows=ROWS) -> Path:
    """A Slovo folder at `root`: annotations.csv, slovo_mediapipe.json and (with `videos`) the clips."""
    root.mkdir(parents=True, exist_ok=True)
    write_annotations(root / "annotations.csv", annotation_rows(rows))
    write_keypoints(root / "slovo_mediapipe.json")
    if videos:
        for aid, _, _, train, _, _, (start, stop) in rows:
            cut(root / ("train" if train else "test") / f"{aid}.mp4", start, stop)
    return root
