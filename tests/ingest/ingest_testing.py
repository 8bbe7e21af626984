"""Helpers for ingest tests: a plain GISLR reference reader and builders of (broken) source files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slr_fast.ingest.pose import HAND_NAMES, POSE_NAMES
from slr_fast.layout import GISLR_ROWS_PER_FRAME

POSE_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "pose-samples"
# A full MediaPipe Holistic .pose file: components and point names as pose-format writes them.
HOLISTIC = [("POSE_LANDMARKS", list(POSE_NAMES)), ("FACE_LANDMARKS", [str(i) for i in range(468)]),
            ("LEFT_HAND_LANDMARKS", list(HAND_NAMES)), ("RIGHT_HAND_LANDMARKS", list(HAND_NAMES))]
# Flattened column of each component's first point in a HOLISTIC file.
START = {"pose": 0, "face": 33, "left_hand": 501, "right_hand": 522}


def holistic_data(rng: np.random.Generator, t: int = 6, people: int = 1) -> np.ndarray:
    """(t, people, 543, 3) normalized coordinates for a HOLISTIC file."""
    return rng.uniform(0.1, 0.9, (t, people, 543, 3))


def reference_read(path: str | Path, rows: np.ndarray, channels: int) -> np.ndarray:
    """The plain way, for comparison: whole table -> (T, 543, 3) in file order, frames sorted by number."""
    table = pq.read_table(path).to_pydict()
    xyz = np.stack([np.array(table[c], np.float64) for c in ("x", "y", "z")], -1).reshape(-1, GISLR_ROWS_PER_FRAME, 3)
    frame = np.array(table["frame"]).reshape(-1, GISLR_ROWS_PER_FRAME)[:, 0]
    return xyz[np.argsort(frame)][:, rows, :channels].astype(np.float32)


def rewrite(path: Path, out: Path, edit) -> Path:
    """Copy a GISLR file through `edit(pa.Table) -> pa.Table` (to build broken or reordered files)."""
    pq.write_table(edit(pq.read_table(path)), out)
    return out


def permute_frames(table: pa.Table, order: np.ndarray) -> pa.Table:
    """Reorder whole 543-row frame blocks of a GISLR table."""
    rows = (np.asarray(order)[:, None] * GISLR_ROWS_PER_FRAME + np.arange(GISLR_ROWS_PER_FRAME)).ravel()
    return table.take(pa.array(rows))


def write_pose(path: Path, data: np.ndarray, *, components: list[tuple[str, list[str]]], width: int = 640,
               height: int = 480, confidence: np.ndarray | None = None, fmt: str = "XYZC") -> Path:
    """A .pose file with the given components (name, point names) and (frames, people, points, dims) data.

    pose-format stores no mask: a point is undetected when its confidence is 0 (masked again on reading).
    """
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    comps = [PoseHeaderComponent(name, points, [], [(255, 0, 0)], fmt) for name, points in components]
    header = PoseHeader(0.1, PoseHeaderDimensions(width=width, height=height, depth=0), comps)
    if confidence is None:
        confidence = np.ones(data.shape[:3], np.float32)
    body = NumPyPoseBody(fps=25, data=np.ma.masked_array(data.astype(np.float32)),
                         confidence=confidence.astype(np.float32))
    buf = io.BytesIO()
    Pose(header, body).write(buf)
    path.write_bytes(buf.getvalue())
    return path


def varint(v: int) -> bytes:
    """v as a thrift/Parquet unsigned LEB128 varint (for tests that write corrupt counts into a file)."""
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def zigzag(v: int) -> int:
    """A signed integer as thrift's compact protocol stores it (zigzag), before the varint."""
    return (v << 1) ^ (v >> 63)


def edit_footer(data: bytes, old: bytes, new: bytes, which: str = "all") -> bytes:
    """Replace byte string `old` by `new` inside a parquet file's footer (the thrift FileMetaData), fixing the
    footer length: which = "all", "first" or "last" occurrence. A crafted-file tool for tests, not a parser."""
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length
    footer = data[start:-8]
    assert footer.count(old), "pattern not in the footer"
    if which == "all":
        footer = footer.replace(old, new)
    elif which == "first":
        footer = footer.replace(old, new, 1)
    else:
        at = footer.rindex(old)
        footer = footer[:at] + new + footer[at + len(old):]
    return data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def row_count_field(rows: int) -> bytes:
    """How an i64 row count following a field of id one less is encoded in a footer: header byte 0x16 + varint.

    FileMetaData.num_rows (after the schema list), each ColumnMetaData.num_values and RowGroup.num_rows are all
    written so, in that order; a file of `rows` rows holds this pattern once per column plus twice."""
    return b"\x16" + varint(zigzag(rows))
