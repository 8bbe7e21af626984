"""The GISLR parquet format (Kaggle "Google - Isolated Sign Language Recognition"), and a writer for it.

One parquet file per sequence, 543 rows per frame in a fixed order (../shared/KEYPOINTS.md):
face 0-467, left_hand 468-488, pose 489-521, right_hand 522-542. Columns: `frame` int16, `row_id` str
("<frame>-<type>-<landmark_index>"), `type` str, `landmark_index` int16, `x`/`y`/`z` float64; undetected
landmarks are NaN rows, never missing rows. A corpus has `train.csv` with `path, participant_id, sequence_id, sign`.

The writer produces files with exactly those names and dtypes, so tests and benchmarks exercise the real format
without the (non-redistributable) competition data.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slr_fast.layout import GISLR_OFFSETS, GISLR_ROWS_PER_FRAME, SOURCE_SIZES

GISLR_COLUMNS = ("frame", "row_id", "type", "landmark_index", "x", "y", "z")
CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
# The type names in row order, as they appear in the files' `type` column.
GISLR_TYPES = ("face", "left_hand", "pose", "right_hand")


def _row_tables() -> tuple[np.ndarray, np.ndarray]:
    """(543,) type code (index into GISLR_TYPES) and (543,) landmark index of every row of a frame."""
    codes = np.empty(GISLR_ROWS_PER_FRAME, np.int8)
    index = np.empty(GISLR_ROWS_PER_FRAME, np.int16)
    for code, name in enumerate(GISLR_TYPES):
        start, size = GISLR_OFFSETS[name], SOURCE_SIZES[name]
        codes[start:start + size] = code
        index[start:start + size] = np.arange(size)
    return codes, index


ROW_TYPE_CODE, ROW_LANDMARK_INDEX = _row_tables()


def write_gislr_file(path: str | os.PathLike, frames543: np.ndarray, frame_start: int = 0) -> None:
    """Write one sequence (T, 543, 3) as a GISLR parquet file; frames are numbered from `frame_start`."""
    frames543 = np.asarray(frames543, dtype=np.float64)
    if frames543.ndim != 3 or frames543.shape[1:] != (GISLR_ROWS_PER_FRAME, 3):
        raise ValueError(f"{path}: frames must have shape (T, 543, 3), got {frames543.shape}")
    import pyarrow.compute as pc  # here, not at import: it costs ~0.5 s, and readers never need it

    t = frames543.shape[0]
    frame = np.repeat(np.arange(frame_start, frame_start + t, dtype=np.int16), GISLR_ROWS_PER_FRAME)
    type_names = pa.array(np.tile(np.asarray(GISLR_TYPES)[ROW_TYPE_CODE], t))
    landmark = np.tile(ROW_LANDMARK_INDEX, t)
    # row_id built in Arrow, not Python, so writing a large test corpus stays fast.
    row_id = pc.binary_join_element_wise(pc.cast(pa.array(frame), pa.string()), type_names,
                                         pc.cast(pa.array(landmark), pa.string()), "-")
    flat = frames543.reshape(-1, 3)
    table = pa.table({
        "frame": pa.array(frame, pa.int16()),
        "row_id": row_id,
        "type": type_names,
        "landmark_index": pa.array(landmark, pa.int16()),
        "x": flat[:, 0], "y": flat[:, 1], "z": flat[:, 2],
    })
    pq.write_table(table, path)


def synthetic_gislr_frames(rng: np.random.Generator, num_frames: int, p_no_hand: float = 1 / 3) -> np.ndarray:
    """A plausible (T, 543, 3) float64 sequence: a face, a body and moving hands, hands NaN when undetected.

    About `p_no_hand` of frames have no hand at all (as in the real corpus); otherwise one or both hands are seen.
    """
    t = num_frames
    out = np.empty((t, GISLR_ROWS_PER_FRAME, 3))
    drift = np.cumsum(rng.normal(0, 0.003, (t, 1, 3)), axis=0)  # slow head/body motion shared by all points
    for name, centre, spread in (("face", (0.5, 0.3, 0.0), 0.08), ("pose", (0.5, 0.6, -0.5), 0.3),
                                 ("left_hand", (0.65, 0.6, -0.05), 0.05), ("right_hand", (0.35, 0.6, -0.05), 0.05)):
        start, size = GISLR_OFFSETS[name], SOURCE_SIZES[name]
        shape = rng.normal(0, spread, (1, size, 3))
        motion = 0.0
        if name.endswith("hand"):
            motion = np.cumsum(rng.normal(0, 0.02, (t, 1, 3)), axis=0)  # hands sign: larger, independent motion
        out[:, start:start + size] = np.asarray(centre) + shape + drift + motion
    seen = rng.random(t) >= p_no_hand
    which = rng.integers(0, 3, t)  # 0 left only, 1 right only, 2 both
    for name, hidden in (("left_hand", ~seen | (which == 1)), ("right_hand", ~seen | (which == 0))):
        start = GISLR_OFFSETS[name]
        out[hidden, start:start + SOURCE_SIZES[name]] = np.nan
    return out


def write_gislr_dataset(root: str | os.PathLike, num_files: int, *, min_frames: int = 20, max_frames: int = 100,
                        num_signs: int = 10, num_signers: int = 5, seed: int = 0,
                        real_lengths: bool = False) -> Path:
    """Write a GISLR-format corpus (train.csv + train_landmark_files/<signer>/<seq>.parquet); returns the csv path.

    Signs are named "sign000"...; signers get GISLR-like five-digit participant ids. Lengths are uniform in
    min_frames..max_frames, or with `real_lengths` spread like the real corpus's (median ~18 frames, a long tail:
    log-normal, clipped to min_frames..max_frames).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    signers = [10000 + 1111 * i for i in range(num_signers)]
    rows = []
    for i in range(num_files):
        signer = signers[i % num_signers]
        seq = 1000000 + i
        rel = Path("train_landmark_files") / str(signer) / f"{seq}.parquet"
        (root / rel.parent).mkdir(parents=True, exist_ok=True)
        if real_lengths:
            t = int(np.clip(round(rng.lognormal(np.log(18), 0.8)), min_frames, max_frames))
        else:
            t = int(rng.integers(min_frames, max_frames + 1))
        write_gislr_file(root / rel, synthetic_gislr_frames(rng, t), frame_start=int(rng.integers(0, 50)))
        rows.append((rel.as_posix(), signer, seq, f"sign{int(rng.integers(num_signs)):03d}"))
    csv_path = root / "train.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    return csv_path
