"""pose-format `.pose` ingest (MediaPipe Holistic exports of sign-language-processing/pose).

A `.pose` file has a header of named components with named points and a body of (frames, people, points, dims)
masked coordinates plus confidence (../shared/KEYPOINTS.md). Layout points are found by component and point name:
POSE_LANDMARKS / LEFT_HAND_LANDMARKS / RIGHT_HAND_LANDMARKS by MediaPipe landmark name (or by number), and
FACE_LANDMARKS by mesh index — the full 468-point mesh or a reduced set whose point names are the mesh indices.

Rules (documented in the README):
- First person only: multi-person files keep person 0.
- Masked points and points of zero, negative or NaN confidence become NaN (not detected).
- Pixel vs normalized coordinates (`coords="auto"`): pixels when the header has a width and height above 2 and the
  99th percentile of |x| and |y| over detected points exceeds 2. MediaPipe's normalized coordinates stay within
  about -0.5..1.5 even for points off screen, while pixel coordinates of any real video are far larger. Pixels are
  divided by the header width (x) and height (y). z is kept when it looks normalized (same 99th-percentile test);
  otherwise it is divided by the width, the scale MediaPipe uses for z.
- Layout points absent from the file (a reduced face without a lip point, a pose component without the nose) are
  an error naming the file and the points, or NaN with `missing_points="nan"`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from slr_fast.fileio import regular_file_problem
from slr_fast.ingest.common import (
    IngestError,
    IngestReport,
    SourceEntry,
    assign_signer_split,
    check_frames,
    check_unique_ids,
    match_files,
    resolve_classes,
    signer_problem,
    write_entries,
)
from slr_fast.layout import DEFAULT_LAYOUT, SOURCE_SIZES, Layout

# MediaPipe Holistic component names in pose-format files, per layout source.
COMPONENTS = {"face": "FACE_LANDMARKS", "left_hand": "LEFT_HAND_LANDMARKS", "pose": "POSE_LANDMARKS",
              "right_hand": "RIGHT_HAND_LANDMARKS"}
# MediaPipe landmark names, in index order (the public PoseLandmark / HandLandmark enums).
POSE_NAMES = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE", "RIGHT_EYE_OUTER",
    "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY", "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX",
    "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE",
    "LEFT_HEEL", "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
)
HAND_NAMES = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP", "INDEX_FINGER_PIP",
    "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP",
    "MIDDLE_FINGER_TIP", "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP", "PINKY_MCP",
    "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)
_NAMES = {"pose": POSE_NAMES, "left_hand": HAND_NAMES, "right_hand": HAND_NAMES}
COORD_MODES = ("auto", "pixel", "normalized")
MISSING_MODES = ("error", "nan")
# Above this, coordinates cannot be MediaPipe-normalized (those stay within about -0.5..1.5).
_PIXEL_THRESHOLD = 2.0


def _source_index(source: str, name: str, position: int, count: int) -> int | None:
    """Index of a component point within its MediaPipe source, from its name (or position in a full component)."""
    if name.isdigit():
        return int(name)
    table = _NAMES.get(source)
    if table is not None and name in table:
        return table.index(name)
    return position if count == SOURCE_SIZES[source] else None


def _point_columns(path: str | os.PathLike, header, layout: Layout, missing_points: str) -> np.ndarray:
    """(P,) column of every layout point in the file's flattened point axis; -1 where absent (missing_points=nan)."""
    where: dict[tuple[str, int], int] = {}
    offset = 0
    for comp in header.components:
        source = next((s for s, c in COMPONENTS.items() if c == comp.name), None)
        if source is not None:
            for k, name in enumerate(comp.points):
                i = _source_index(source, str(name), k, len(comp.points))
                if i is not None:
                    where.setdefault((source, i), offset + k)
        offset += len(comp.points)
    cols, missing = [], {}
    for part in layout.parts:
        for i in part.indices:
            col = where.get((part.source, i), -1)
            if col < 0:
                label = f"{i} ({_NAMES[part.source][i]})" if part.source in _NAMES else str(i)
                missing.setdefault(part.name, []).append(label)
            cols.append(col)
    if missing and missing_points == "error":
        present = [c.name for c in header.components]
        detail = "; ".join(f"{part} points {', '.join(idx)}" for part, idx in missing.items())
        raise IngestError(path, f"layout {layout.name!r} needs points the file lacks: {detail} (components: "
                                f"{present}); use missing_points='nan' (--missing-points nan) to fill them with NaN")
    return np.asarray(cols, np.int64)


def _looks_pixel(values: np.ndarray) -> bool:
    finite = np.abs(values[np.isfinite(values)])
    return finite.size > 0 and float(np.percentile(finite, 99)) > _PIXEL_THRESHOLD


def read_pose_file(path: str | os.PathLike, layout: Layout = DEFAULT_LAYOUT, *, coords: str = "auto",
                   missing_points: str = "error") -> np.ndarray:
    """One `.pose` file as (T, P, C) float32 in `layout`'s point order, normalized to 0..1 (person 0 only)."""
    if coords not in COORD_MODES:
        raise ValueError(f"coords={coords!r}; valid: {', '.join(COORD_MODES)}")
    if missing_points not in MISSING_MODES:
        raise ValueError(f"missing_points={missing_points!r}; valid: {', '.join(MISSING_MODES)}")
    try:
        from pose_format import Pose
    except ImportError as e:
        raise ImportError("reading .pose files needs pose-format: pip install 'slr-fast[pose]'") from e
    problem = regular_file_problem(path)
    if problem:
        raise IngestError(path, problem)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise IngestError(path, f"unreadable file: {e.strerror or e}") from e
    try:
        pose = Pose.read(data)
    except Exception as e:  # the pose-format parser raises assorted types on corrupt input
        raise IngestError(path, f"not a readable .pose file ({type(e).__name__}: {e})") from e
    header, body = pose.header, pose.body
    cols = _point_columns(path, header, layout, missing_points)
    values = body.data  # (frames, people, points, dims), masked
    if values.ndim != 4:
        raise IngestError(path, f"body data has shape {values.shape}, expected (frames, people, points, dims)")
    t, people, _, dims = values.shape
    if t == 0:
        raise IngestError(path, "empty sequence: no frames")
    if people == 0:
        raise IngestError(path, "no person in the file")
    c = layout.num_channels
    if dims < c:
        raise IngestError(path, f"has {dims} coordinates per point, layout {layout.name!r} needs {c} "
                                f"({', '.join(layout.channels)})")
    found = cols >= 0
    take = np.where(found, cols, 0)
    person = values[:, 0]
    xyz = np.asarray(np.ma.getdata(person)[:, take, :c], dtype=np.float64)  # (T, P, C)
    absent = np.ma.getmaskarray(person)[:, take].any(-1) | ~found[None, :]
    confidence = getattr(body, "confidence", None)
    if confidence is not None and np.ndim(confidence) == 3:
        absent |= ~(np.asarray(confidence)[:, 0, take] > 0)  # zero, negative or NaN confidence: not detected
    xyz[absent] = np.nan
    mode = coords
    if mode == "auto":
        mode = "pixel" if _looks_pixel(xyz[..., :2]) else "normalized"
    if mode == "pixel":
        width, height = header.dimensions.width, header.dimensions.height
        if not (width and height and width > 0 and height > 0):
            raise IngestError(path, f"coordinates are in pixels but the header has no frame size "
                                    f"(width={width}, height={height}); cannot normalize")
        xyz[..., 0] /= width
        xyz[..., 1] /= height
        if c == 3 and _looks_pixel(xyz[..., 2]):
            xyz[..., 2] /= width
    return check_frames(path, xyz.astype(np.float32), layout)


def _signer_ids(csv_path: Path, raw: list[str]) -> tuple[list[int], list[str | None], list[str] | None]:
    """Signer column -> (ids, per-row problems, names): integer ids are kept (and checked, a bad one makes its
    file a bad file); a column of names is numbered in sorted name order (names returned)."""
    present = [s for s in raw if s != ""]
    if all(s.lstrip("-").isdigit() for s in present):
        checked = [signer_problem(s, f"signer on line {line} of {csv_path.name}") if s != "" else (-1, None)
                   for line, s in enumerate(raw, start=2)]
        return [c[0] for c in checked], [c[1] for c in checked], None
    names = sorted(set(present))
    ids = {n: i for i, n in enumerate(names)}
    return [ids[s] if s != "" else -1 for s in raw], [None] * len(raw), names


def read_pose_labels(csv_path: str | os.PathLike) -> tuple[list[SourceEntry], list[str] | None]:
    """Parse a labels CSV `file,sign[,signer][,split][,seq_id]` (files relative to its folder); returns entries and
    signer names when signers are given as names."""
    csv_path = Path(csv_path)
    problem = regular_file_problem(csv_path)
    if problem:
        raise IngestError(csv_path, problem)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in ("file", "sign") if c not in header]
            if missing:
                raise IngestError(csv_path, f"missing column(s) {missing}; found {header} (expected "
                                            f"file,sign[,signer][,split][,seq_id])")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IngestError(csv_path, f"unreadable csv: {e}") from e
    if not rows:
        raise IngestError(csv_path, "no rows")
    signers, problems, names = _signer_ids(csv_path, [(r.get("signer") or "").strip() for r in rows])
    from slr_fast.store import split_code

    entries = []
    for line, (row, signer, problem) in enumerate(zip(rows, signers, problems, strict=True), start=2):
        file, sign = (row.get("file") or "").strip(), (row.get("sign") or "").strip()
        if not file or not sign:
            raise IngestError(csv_path, f"line {line}: empty file or sign")
        try:
            split = split_code((row.get("split") or "").strip() or None)
        except ValueError as e:  # like a bad signer: this row's file is a bad file
            split, problem = -1, problem or f"{e} (line {line} of {csv_path.name})"
        path = (csv_path.parent / file).absolute()
        entries.append(SourceEntry(path, sign, signer, (row.get("seq_id") or "").strip() or file, split, problem))
    check_unique_ids(csv_path, entries, "seq_id (default: file)")
    return entries, names


def ingest_pose(files: list[str | os.PathLike] | None, labels_csv: str | os.PathLike, out: str | os.PathLike, *,
                layout: Layout = DEFAULT_LAYOUT, classes: str | os.PathLike | list[str] | None = None,
                coords: str = "auto", missing_points: str = "error", workers: int | None = None,
                skip_bad: bool = False, split_by_signer: int | None = None,
                split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), unknown_signers: str = "error",
                overwrite: bool = False, progress: bool = True, compression: str | None = None) -> IngestReport:
    """Ingest `.pose` files (or folders of them; None = every file the labels CSV lists) into a store at `out`.

    Labels CSV columns: file (relative to the CSV's folder), sign, and optionally signer (integer ids or names),
    split (train/val/test) and seq_id (default: the file column). Classes: signs sorted by name unless a class
    map is given.
    """
    csv_path = Path(labels_csv)
    entries, signer_names = read_pose_labels(csv_path)
    chosen = entries if not files else match_files(list(files), entries, csv_path, (".pose",))
    class_names = resolve_classes((e.sign for e in entries if e.sign is not None), classes)
    split_rule = "labels split column" if any(e.split >= 0 for e in entries) else "none"
    if split_by_signer is not None:
        chosen, split_rule = assign_signer_split(csv_path, chosen, split_rule, split_by_signer, split_fractions,
                                                 unknown_signers)
    provenance = {
        "source_format": "pose", "source": str(csv_path), "layout_name": layout.name, "coords": coords,
        "missing_points": missing_points, "person": "first person only", "split": split_rule,
        "class_order": "class map" if classes is not None else "sorted by name",
    }
    if signer_names is not None:
        provenance["signer_names"] = signer_names

    def read(e: SourceEntry) -> np.ndarray:
        return read_pose_file(e.path, layout, coords=coords, missing_points=missing_points)

    return write_entries(out, chosen, read, layout=layout, classes=class_names, provenance=provenance,
                         workers=workers, skip_bad=skip_bad, overwrite=overwrite, progress=progress,
                         compression=compression)
