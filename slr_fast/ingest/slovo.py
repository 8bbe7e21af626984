"""Slovo (Russian Sign Language): `annotations.csv` with its videos, or Slovo's released hand keypoints.

Slovo's files (../shared/KEYPOINTS.md): `annotations.csv` is tab-separated with columns attachment_id, user_id,
width, height, length, text, train, begin, end; videos are `train/<attachment_id>.mp4` and
`test/<attachment_id>.mp4`; `slovo_mediapipe.json` holds MediaPipe Hands landmarks of the trimmed videos.

Rules (documented in the README):
- Label = `text`; the no-event rows (`no_event`) become the class `---`, as the dataset's class list writes it,
  so the full set has 1,001 classes. Classes are sorted by name unless a class map is given.
- Signer = `user_id` (anonymized hex strings), numbered in sorted order; the names are kept in the provenance.
- Split = the `train` column (True: train, False: test). `val_fraction` moves that share of the train signers,
  chosen with `val_seed`, to a validation split (signer-disjoint from train and test).
- `trim`: `begin`/`end` are frame numbers within the video file; frames begin..end-1 are kept (end exclusive, as a
  Python slice). Slovo says they locate the sign in the original (untrimmed) videos, so trim the "Origin" or 360p
  downloads, not the already trimmed clips of the main download. A row with no usable begin/end is a bad row then.
- Every bad row (unreadable value, missing video, missing keypoints) makes its sequence a bad file: the first stops
  the run naming the file and the csv line, or `skip_bad` lists each with its reason. Nothing is dropped silently.

Released keypoints (`keypoints=`): the JSON object is streamed with ijson (one attachment id at a time), never loaded
whole. Each frame is a dict with keys `hand 1` / `hand 2` (either may be absent), each a list of 21 points
`{x, y[, z]}` normalized 0..1, with no left/right label. Sides are assigned by position: in a frame with both hands
the one further left in the image (smaller mean x) is the signer's right hand (camera view, not mirrored), as
Holistic labels it; a lone hand is the signer's right hand when its mean x lies left of the sequence's midline (the
median midpoint of its two-hand frames, or the image centre 0.5 when it has none). A hand that crosses the midline
alone is therefore labelled by where it is, not by which it is. Left-handed signers stay as filmed: mirroring them
is the augmentation's job.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, replace
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem
from slr_fast.ingest.common import (
    IngestError,
    IngestReport,
    SourceEntry,
    assign_signer_split,
    check_frames,
    check_unique_ids,
    resolve_classes,
    write_entries,
)
from slr_fast.layout import DEFAULT_LAYOUT, Layout, get_layout

ANNOTATIONS = "annotations.csv"
COLUMNS = ("attachment_id", "user_id", "width", "height", "length", "text", "train", "begin", "end")
NO_EVENT_TEXT = "no_event"  # the annotations' text of the no-event rows
NO_EVENT_CLASS = "---"  # ... and its name in the dataset's class list
HAND_KEYS = ("hand 1", "hand 2")
HAND_POINTS = 21
_TRAIN = {"true": True, "false": False}
_NUMBERS = {float, int}  # what ijson gives for JSON numbers (use_float=True)


class SlovoExtraMissing(UserInputError, ImportError):
    """ijson is not installed: one line naming the extra (an ImportError for Python callers)."""


@dataclass(frozen=True)
class SlovoRow:
    """One checked row of annotations.csv."""

    line: int
    attachment_id: str
    user_id: str
    sign: str  # the class name (`---` for no-event rows)
    train: bool
    begin: int | None  # None: empty in the file
    end: int | None
    problem: str | None = None  # why the row is unusable; None = fine


def find_annotations(source: str | os.PathLike) -> Path:
    """The annotations.csv of a Slovo folder (or the csv itself)."""
    source = Path(source)
    path = source / ANNOTATIONS if source.is_dir() else source
    problem = regular_file_problem(path)
    if problem:
        raise IngestError(path, f"{problem} (expected Slovo's {ANNOTATIONS}, tab-separated)")
    return path


def _int_value(raw: str | None, name: str, *, minimum: int) -> int | None:
    """An integer cell ("30", or "30.0" as a float column writes it); None when empty or nan. ValueError if bad."""
    text = (raw or "").strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} is {raw!r}, not an integer") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name} is {raw!r}, not an integer")
    if value < minimum:
        raise ValueError(f"{name} is {int(value)}, below {minimum}")
    return int(value)


def _check_row(csv_path: Path, line: int, row: dict) -> SlovoRow:
    name = csv_path.name
    where = f"line {line} of {name}"
    if None in row:  # DictReader files surplus cells under None
        problem = f"{where}: {len(row) - 1 + len(row[None])} cells, the header has {len(row) - 1}"
        return SlovoRow(line, "", "", "", False, None, None, problem)
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    problems = [f"empty {c}" for c in ("attachment_id", "user_id", "text", "train") if not values[c]]
    aid = values["attachment_id"]
    if aid and (aid != os.path.basename(aid) or aid in (".", "..")):
        problems.append(f"attachment_id {aid!r} is not a file name")
    train = _TRAIN.get(values["train"].lower())
    if values["train"] and train is None:
        problems.append(f"train is {values['train']!r}, not True or False")
    numbers: dict[str, int | None] = {}
    for c, minimum in (("width", 1), ("height", 1), ("length", 0), ("begin", 0), ("end", 0)):
        try:
            numbers[c] = _int_value(values[c], c, minimum=minimum)
        except ValueError as e:
            problems.append(str(e))
    text = values["text"]
    sign = NO_EVENT_CLASS if text == NO_EVENT_TEXT else text
    problem = f"{where}: {'; '.join(problems)}" if problems else None
    return SlovoRow(line, aid, values["user_id"], sign, bool(train), numbers.get("begin"), numbers.get("end"),
                    problem)


def read_annotations(csv_path: str | os.PathLike) -> list[SlovoRow]:
    """Parse Slovo's tab-separated annotations.csv; a bad cell makes its row unusable (named by line), a bad header
    or a repeated attachment_id stops here."""
    csv_path = Path(csv_path)
    problem = regular_file_problem(csv_path)
    if problem:
        raise IngestError(csv_path, problem)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                hint = " (is it tab-separated?)" if len(header) == 1 else ""
                raise IngestError(csv_path, f"missing column(s) {missing}; found {header}{hint}")
            rows = [_check_row(csv_path, line, row) for line, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IngestError(csv_path, f"unreadable csv: {e}") from e
    if not rows:
        raise IngestError(csv_path, "no rows")
    check_unique_ids(csv_path, [SourceEntry(csv_path, r.sign, seq_id=r.attachment_id or f"<empty, line {r.line}>")
                                for r in rows], "attachment_id")
    return rows


def slovo_entries(source: str | os.PathLike, rows: list[SlovoRow], *, videos: bool = True,
                  trim: bool = False) -> tuple[list[SourceEntry], list[str]]:
    """Entries for annotation rows (video `<source>/train|test/<id>.mp4`) and the signer names (id = position).

    With `videos`, a row whose video is missing is a bad file; with `trim`, so is a row without begin < end.
    """
    root, csv_name = (Path(source), ANNOTATIONS) if Path(source).is_dir() else (Path(source).parent, Path(source).name)
    names = sorted({r.user_id for r in rows if r.user_id})
    signer = {n: i for i, n in enumerate(names)}
    entries = []
    for r in rows:
        where = f"line {r.line} of {csv_name}"
        path = (root / ("train" if r.train else "test") / f"{r.attachment_id}.mp4").absolute()
        problem = r.problem
        if problem is None and trim and (r.begin is None or r.end is None or r.end <= r.begin):
            problem = f"{where}: --trim needs begin < end, found begin={r.begin}, end={r.end}"
        if problem is None and videos:
            missing = regular_file_problem(path)
            if missing:
                problem = f"video {missing} (listed on {where})"
        if not r.attachment_id:
            path = root / csv_name
        entries.append(SourceEntry(path, r.sign, signer.get(r.user_id, -1), r.attachment_id or f"line {r.line}",
                                   0 if r.train else 2, problem))
    return entries, names


def carve_validation(source: str | os.PathLike, entries: list[SourceEntry], fraction: float,
                     seed: int) -> tuple[list[SourceEntry], str]:
    """Move `fraction` of the train signers (seeded) to the validation split; test stays as it is."""
    if not 0 < fraction < 1:
        raise IngestError(source, f"validation fraction must be between 0 and 1 (exclusive), got {fraction}")
    train = [i for i, e in enumerate(entries) if e.split == 0]
    moved, rule = assign_signer_split(source, [entries[i] for i in train], "none", seed, (1 - fraction, fraction, 0),
                                      "error")
    out = list(entries)
    for i, e in zip(train, moved, strict=True):
        out[i] = e
    good = [e for e in moved if e.problem is None]
    counts = [len({e.signer for e in good if e.split == s}) for s in (0, 1)]
    if min(counts) == 0:
        raise IngestError(source, f"cannot carve a validation split of {fraction} from {sum(counts)} train "
                                  f"signer(s): it would leave {counts[0]} in train and {counts[1]} in val")
    return out, rule


def _hands_columns(source: str | os.PathLike, layout: Layout) -> np.ndarray:
    """(P,) index of every layout point in a (left 0..20, right 21..41) hands array; the layout must be hands only."""
    other = [p.name for p in layout.parts if p.source not in ("left_hand", "right_hand")]
    if other:
        raise IngestError(source, f"holds hand keypoints only; layout {layout.name!r} also needs {other} "
                                  f"(use --layout hands or hands_z)")
    return np.concatenate([np.asarray(p.indices) + (0 if p.source == "left_hand" else HAND_POINTS)
                           for p in layout.parts])


def _hand_values(json_path: Path, key: str, t: int, hand: str, points, channels: tuple[str, ...]) -> list[tuple]:
    """One hand's 21 points as [(x, y[, z]), ...], checked to be JSON numbers."""
    where = f"key {key!r}, frame {t}, {hand!r}"
    if not isinstance(points, list) or len(points) != HAND_POINTS:
        size = len(points) if isinstance(points, list) else type(points).__name__
        raise IngestError(json_path, f"{where}: expected a list of {HAND_POINTS} points, got {size}")
    try:
        values = list(map(itemgetter(*channels), points))
    except (KeyError, TypeError) as e:
        raise IngestError(json_path, f"{where}: every point needs numeric {'/'.join(channels)} "
                                     f"({type(e).__name__}: {e})") from e
    # NumPy would parse a string such as "0.5" (and take a bool as 0/1): only JSON numbers are coordinates.
    if not set(map(type, chain.from_iterable(values))) <= _NUMBERS:
        odd = next(v for v in chain.from_iterable(values) if type(v) not in _NUMBERS)
        raise IngestError(json_path, f"{where}: every point needs numeric {'/'.join(channels)} (found {odd!r})")
    return values


def hands_from_json(json_path: str | os.PathLike, key: str, frames, layout: Layout) -> np.ndarray:
    """One attachment's frames of slovo_mediapipe.json as (T, P, C) float32 in `layout` (NaN = no hand), sides
    assigned by position (see the module docstring)."""
    json_path = Path(json_path)
    cols = _hands_columns(json_path, layout)
    if not isinstance(frames, list):
        raise IngestError(json_path, f"key {key!r}: expected a list of frames, got {type(frames).__name__}")
    if not frames:
        raise IngestError(json_path, f"key {key!r}: empty sequence: no frames")
    c = layout.num_channels
    values, slots = [], []  # every detected hand's points, and its (frame, slot): one array built at the end
    for t, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise IngestError(json_path, f"key {key!r}, frame {t}: expected an object with keys "
                                         f"{list(HAND_KEYS)}, got {type(frame).__name__}")
        unknown = [k for k in frame if k not in HAND_KEYS]
        if unknown:
            raise IngestError(json_path, f"key {key!r}, frame {t}: unknown key(s) {unknown}; expected "
                                         f"{list(HAND_KEYS)}")
        for k, hand in enumerate(HAND_KEYS):
            if hand in frame:
                values.append(_hand_values(json_path, key, t, hand, frame[hand], layout.channels))
                slots.append((t, k))
    hands = np.full((len(frames), 2, HAND_POINTS, c), np.nan)  # (T, detected hand slot, 21, C)
    if slots:
        found = np.array(values, np.float64)  # (H, 21, C)
        bad = ~np.isfinite(found).all((1, 2))
        if bad.any():
            t, k = slots[int(np.argmax(bad))]
            raise IngestError(json_path, f"key {key!r}, frame {t}, {HAND_KEYS[k]!r}: non-finite coordinate")
        where = np.array(slots)
        hands[where[:, 0], where[:, 1]] = found
    present = ~np.isnan(hands[..., 0, 0])  # (T, 2)
    cx = hands[..., 0].mean(-1)  # (T, 2) mean x of each detected hand (NaN where none)
    both = present.all(-1)
    midline = float(np.median(cx[both].mean(-1))) if both.any() else 0.5
    # right[t, k]: detected hand k of frame t is the signer's right hand (image left in an unmirrored video).
    right = np.where(both[:, None], cx == np.where(present, cx, np.inf).min(-1, keepdims=True),
                     cx < midline) & present
    if (both & (right[:, 0] == right[:, 1])).any():  # two hands at the same mean x: first slot is right
        tie = both & (right[:, 0] == right[:, 1])
        right[tie] = (True, False)
    sides = np.full((len(frames), 2 * HAND_POINTS, c), np.nan)  # (T, left 21 + right 21, C)
    for k in range(2):
        for is_right, start in ((False, 0), (True, HAND_POINTS)):
            sel = present[:, k] & (right[:, k] == is_right)
            sides[sel, start:start + HAND_POINTS] = hands[sel, k]
    try:
        return check_frames(json_path, sides[:, cols].astype(np.float32), layout)
    except IngestError as e:
        raise IngestError(json_path, f"key {key!r}: {e.problem}") from e


def _open_json(json_path: Path, progress: bool):
    """The JSON file for streaming (with a byte progress bar on a terminal); its top level must be an object."""
    problem = regular_file_problem(json_path)
    if problem:
        raise IngestError(json_path, problem)
    try:
        f = open(json_path, "rb")
    except OSError as e:
        raise IngestError(json_path, f"unreadable file: {e.strerror or e}") from e
    head = f.read(4096).lstrip()
    f.seek(0)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not head.startswith(b"{"):
        f.close()
        what = "empty" if not head else f"starts with {head[:20]!r}"
        raise IngestError(json_path, f"not Slovo's keypoint JSON: {what}; expected an object {{attachment_id: "
                                     f"[frames]}}")
    from tqdm.auto import tqdm

    size = os.path.getsize(json_path)
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {json_path.name}",
               disable=None if progress else True)
    return f, bar


def read_slovo_keypoints(json_path: str | os.PathLike, wanted: set[str], layout: Layout, *,
                         progress: bool = True) -> tuple[dict[str, np.ndarray | IngestError], list[str]]:
    """Stream slovo_mediapipe.json: {attachment id: hands (T, P, C) or the IngestError of its entry} for the wanted
    ids, and the ids it holds beyond them (in file order). A malformed file stops here, naming the last key read."""
    try:
        import ijson
    except ImportError as e:
        raise SlovoExtraMissing(f"reading slovo_mediapipe.json needs ijson: pip install -e '.[slovo]' "
                                f"({type(e).__name__}: {e})") from e
    json_path = Path(json_path)
    _hands_columns(json_path, layout)  # refuse a layout with lips/pose before reading 1.2 GB
    f, bar = _open_json(json_path, progress)
    found: dict[str, np.ndarray | IngestError] = {}
    extra: list[str] = []
    seen: set[str] = set()
    last = None
    try:
        with f, bar:
            for key, frames in ijson.kvitems(f, "", use_float=True):
                bar.update(f.tell() - bar.n)
                if key in seen:
                    raise IngestError(json_path, f"key {key!r} appears twice")
                seen.add(key)
                last = key
                if key not in wanted:
                    extra.append(key)
                    continue
                try:
                    found[key] = hands_from_json(json_path, key, frames, layout)
                except IngestError as e:
                    found[key] = e
    except ijson.JSONError as e:
        after = f"after key {last!r}" if last is not None else "before the first key"
        raise IngestError(json_path, f"malformed JSON {after}: {e}") from e
    except OSError as e:
        raise IngestError(json_path, f"unreadable file: {e.strerror or e}") from e
    return found, extra


def ingest_slovo(source: str | os.PathLike, out: str | os.PathLike, *, keypoints: str | os.PathLike | None = None,
                 layout: Layout | None = None, classes: str | os.PathLike | list[str] | None = None,
                 trim: bool = False, val_fraction: float | None = None, val_seed: int = 0,
                 workers: int | None = None, skip_bad: bool = False, overwrite: bool = False,
                 progress: bool = True, compression: str | None = None,
                 cache_dir: str | os.PathLike | None = None, keep_cache: bool = False) -> IngestReport:
    """Ingest Slovo (a folder with annotations.csv, train/ and test/, or the csv itself) into a store at `out`.

    Without `keypoints`, every video is extracted with MediaPipe Holistic (`slr_fast.video`, the `video` extra;
    default layout: DEFAULT_LAYOUT). With `keypoints` (slovo_mediapipe.json), the released hand keypoints are read
    instead and no video is needed (default layout: hands). `cache_dir`/`keep_cache`: the per-video extraction
    cache (see `slr_fast.video.extract_entries`); `workers` are extraction processes (unused with `keypoints`).
    """
    csv_path = find_annotations(source)
    rows = read_annotations(csv_path)
    if keypoints is not None and trim:
        raise IngestError(keypoints, "holds keypoints of the trimmed videos: --trim applies to videos only")
    if layout is None:
        layout = get_layout("hands") if keypoints is not None else DEFAULT_LAYOUT
    entries, signer_names = slovo_entries(csv_path, rows, videos=keypoints is None, trim=trim)
    class_names = resolve_classes((r.sign for r in rows if r.sign), classes)
    split_rule = "annotations train column (True: train, False: test)"
    if val_fraction is not None:
        entries, rule = carve_validation(csv_path, entries, val_fraction, val_seed)
        split_rule += f"; val: {rule} over the train signers"
    provenance = {
        "source_format": "slovo", "source": str(csv_path), "layout_name": layout.name, "split": split_rule,
        "class_order": "class map" if classes is not None else "sorted by name", "signer_names": signer_names,
        "no_event": f"rows with text {NO_EVENT_TEXT!r} are class {NO_EVENT_CLASS!r}",
    }
    if keypoints is not None:
        return _ingest_keypoints(Path(keypoints), csv_path, out, entries, layout, class_names, provenance,
                                 skip_bad=skip_bad, overwrite=overwrite, progress=progress, compression=compression)
    provenance["trim"] = "frames begin..end-1 of each video" if trim else "none"
    from slr_fast.video import extract_entries  # names the video extra in one line when it is missing
    by_line = {e.seq_id: r for e, r in zip(entries, rows, strict=True)}
    trims = ({e.path: (by_line[e.seq_id].begin, by_line[e.seq_id].end) for e in entries if e.problem is None}
             if trim else None)
    return extract_entries(out, entries, layout=layout, classes=class_names, provenance=provenance, trims=trims,
                           workers=workers, skip_bad=skip_bad, overwrite=overwrite, progress=progress,
                           compression=compression, cache_dir=cache_dir, keep_cache=keep_cache)


def _ingest_keypoints(json_path: Path, csv_path: Path, out, entries: list[SourceEntry], layout: Layout,
                      class_names: list[str], provenance: dict, **options) -> IngestReport:
    start = time.perf_counter()
    wanted = {e.seq_id for e in entries if e.problem is None}
    found, extra = read_slovo_keypoints(json_path, wanted, layout, progress=options["progress"])
    chosen = []
    for e in entries:
        if e.problem is not None:  # a bad annotation row: the csv is the file at fault
            chosen.append(replace(e, path=csv_path))
            continue
        if e.seq_id not in found:
            e = replace(e, problem=f"no key {e.seq_id!r} (attachment_id of an annotation row)")
        chosen.append(replace(e, path=json_path))
    provenance.update(keypoints=str(json_path), sides="by mean x: image left = signer's right hand; a lone hand "
                      "by the sequence's midline of two-hand frames (0.5 without any)",
                      keypoints_not_in_annotations=len(extra))

    def read(e: SourceEntry) -> np.ndarray:
        result = found.pop(e.seq_id)  # each id is read once; popping frees it as the store fills
        if isinstance(result, IngestError):
            raise result
        return result

    # One reader: the frames are already in memory, and the store is written in annotation order.
    report = write_entries(out, chosen, read, layout=layout, classes=class_names, provenance=provenance, workers=1,
                           **options)
    report.seconds = time.perf_counter() - start  # the JSON's reading included
    if extra:
        report.notes.append(f"{len(extra)} key(s) of {json_path.name} are not in {ANNOTATIONS} and were not "
                            f"ingested (first: {', '.join(extra[:5])})")
    return report
