"""Shared pieces of every ingest path: the error type, the report, class maps, and ordered parallel reading.

Readers turn one source file into a (T, P, C) float32 array in a layout's point order (NaN = not detected).
Ingest functions read many files on a thread pool and stream the results into a `StoreWriter` strictly in source
order, so the store is byte-for-byte the same whatever the worker count.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem
from slr_fast.layout import Layout

T = TypeVar("T")
R = TypeVar("R")


class IngestError(UserInputError):
    """A source file (or its label) cannot be ingested; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        # One line, whatever a library's message held (pyarrow's and pose-format's may span several).
        self.problem = " ".join(part.strip() for part in str(problem).splitlines() if part.strip())
        super().__init__(f"{self.path}: {self.problem}")


@dataclass
class IngestReport:
    """What an ingest run wrote and what it skipped (with reasons)."""

    out: str
    written: int = 0
    frames: int = 0
    classes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason), in source order
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # anything else a user should know about the run

    @property
    def files_per_s(self) -> float:
        """Files read (written or skipped) per second of wall time."""
        n = self.written + len(self.skipped)
        return n / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """A few human-readable lines: counts, then every skipped file with its reason."""
        rate = self.files_per_s
        shown = f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"  # videos go at a few per second, keypoint files faster
        lines = [
            f"wrote {self.written} sequences ({self.frames} frames, {len(self.classes)} classes) to {self.out} "
            f"in {self.seconds:.1f} s ({shown} files/s)"
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"  {f}: {reason}" for f, reason in self.skipped]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def load_classes(path: str | os.PathLike) -> list[str]:
    """Class names in id order from a sign map: JSON {sign: id}, JSON [sign, ...], or text with one sign per line."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise IngestError(path, f"class map: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IngestError(path, f"cannot read class map: {getattr(e, 'strerror', None) or e}") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise IngestError(path, f"class map is not valid JSON: {e}") from e
        if isinstance(data, dict):
            # GISLR's sign_to_prediction_index_map.json: {sign: index}; ids must be exactly 0..K-1.
            try:
                ids = {str(k): int(v) for k, v in data.items()}
            except (TypeError, ValueError) as e:
                raise IngestError(path, f"class map values must be integer ids: {e}") from e
            if sorted(ids.values()) != list(range(len(ids))):
                raise IngestError(path, f"class ids must be exactly 0..{len(ids) - 1}, each once")
            classes = sorted(ids, key=ids.__getitem__)
        elif isinstance(data, list) and all(isinstance(s, str) for s in data):
            classes = list(data)
        else:
            raise IngestError(path, "class map JSON must be an object {sign: id} or a list of sign names")
    else:
        classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise IngestError(path, "class map is empty")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise IngestError(path, f"class map lists these signs more than once: {dup[:10]}")
    return classes


def resolve_classes(signs: Iterable[str], classes: str | os.PathLike | Sequence[str] | None) -> list[str]:
    """Class names in id order: from a map file or list when given, else the distinct signs sorted by name."""
    if classes is None:
        return sorted(set(signs))
    if isinstance(classes, (str, os.PathLike)):
        return load_classes(classes)
    return [str(c) for c in classes]


def check_unique_ids(csv_path: str | os.PathLike, entries: Sequence[SourceEntry], column: str) -> None:
    """Sequence ids must be unique: a repeated row would otherwise fail half-way through writing."""
    seen: dict[str | None, int] = {}
    for line, e in enumerate(entries, start=2):
        if e.seq_id in seen:
            raise IngestError(csv_path, f"line {line}: {column} {e.seq_id!r} repeats line {seen[e.seq_id]}")
        seen[e.seq_id] = line


def assign_signer_split(source: str | os.PathLike, entries: Sequence[SourceEntry], split_rule: str, seed: int,
                        fractions: Sequence[float], unknown: str) -> tuple[list[SourceEntry], str]:
    """Entries with a seeded signer-independent split (see slr_fast.store.signer_split), and the rule as recorded in
    the store. Refused when the labels already carry splits (`split_rule` is not "none"). Entries whose labels
    are unusable (`problem`) are bad files and take no part, so they never move a signer's split."""
    from slr_fast.store import signer_split

    if split_rule != "none":
        raise IngestError(source, "has a split column; drop --split-by-signer or the column")
    out = list(entries)
    good = [i for i, e in enumerate(out) if e.problem is None]
    codes = signer_split(np.array([out[i].signer for i in good], np.int64), fractions, seed=seed, unknown=unknown)
    for i, c in zip(good, codes, strict=True):
        out[i] = replace(out[i], split=int(c))
    return out, f"signer_split fractions={list(fractions)} seed={seed}"


def check_frames(path: str | os.PathLike, frames: np.ndarray, layout: Layout) -> np.ndarray:
    """Reject wrong shapes, empty or all-NaN sequences and infinite values; returns the frames unchanged."""
    expected = (layout.num_points, layout.num_channels)
    if frames.ndim != 3 or frames.shape[1:] != expected:
        raise IngestError(path, f"frames have shape {frames.shape}, layout {layout.name!r} needs (T, *{expected})")
    if frames.shape[0] == 0:
        raise IngestError(path, "empty sequence: no frames")
    if np.isnan(frames).all():
        raise IngestError(path, f"all-NaN sequence: no point of layout {layout.name!r} is detected in any frame")
    infinite = np.isinf(frames)
    if infinite.any():
        f, p, c = (int(i) for i in np.argwhere(infinite)[0])
        raise IngestError(path, f"infinite coordinate ({frames[f, p, c]}) at frame {f}, point {p} "
                                f"({layout.point_name(p)}), channel {layout.channels[c]!r}; undetected points "
                                f"must be NaN")
    return frames


def default_workers() -> int:
    """Readers release the GIL in pyarrow/NumPy, so one thread per core keeps every core busy."""
    return max(1, min(8, os.cpu_count() or 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                ahead: int | None = None) -> Iterator[tuple[T, R | BaseException]]:
    """Yield (item, fn(item) or the exception it raised) in input order, computed on `workers` threads.

    In-flight work is bounded (`ahead` results), so memory stays flat on corpora of any size while the consumer
    (the store writer) sees results in a deterministic order. The bound is generous (a few MB of frames) so that
    readers keep going while the consumer is busy compressing and writing a batch of chunks.
    """
    def call(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as e:  # carried to the consumer, which decides between raising and skipping
            return e

    if workers <= 1:
        for item in items:
            yield item, call(item)
        return
    window: deque[tuple[T, Future]] = deque()
    limit = ahead if ahead is not None else 64 + 8 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slr-ingest") as pool:
        try:
            for item in items:
                window.append((item, pool.submit(call, item)))
                if len(window) >= limit:
                    done, fut = window.popleft()
                    yield done, fut.result()
            while window:
                done, fut = window.popleft()
                yield done, fut.result()
        finally:
            for _, fut in window:  # consumer stopped early (error): don't read files nobody will use
                fut.cancel()


@dataclass(frozen=True)
class SourceEntry:
    """One labelled source file: where it is and what it shows."""

    path: Path
    sign: str | None  # None: the file has no label (reported as a bad file)
    signer: int = -1  # -1 = unknown
    seq_id: str | None = None
    split: int = -1  # -1 none, 0 train, 1 val, 2 test
    problem: str | None = None  # why the labels make this file unusable (e.g. a bad signer id); None = fine


# Signer ids are stored as int32; -1 means unknown.
_SIGNER_MAX = 2**31 - 1


def signer_problem(raw: str | None, what: str) -> tuple[int, str | None]:
    """(signer id, None) for a usable id in a labels file, else (-1, why): not an integer, below -1 or beyond
    int32. `what` names the field and place, e.g. "participant_id on line 7 of train.csv"."""
    text = (raw or "").strip()
    try:
        value = int(text)
    except ValueError:
        return -1, f"{what} is {raw!r}, not an integer"
    if not -1 <= value <= _SIGNER_MAX:
        return -1, f"{what} is {value}, outside -1 (unknown) .. {_SIGNER_MAX}"
    return value, None


def entry_label_problem(e: SourceEntry, class_id: Mapping[str, int], provenance: Mapping) -> str | None:
    """Why an entry's labels make it unusable (its own problem, no label, a sign outside the classes), or None."""
    if e.problem:
        return e.problem
    if e.sign is None:
        return f"no label: the file is not listed in {provenance.get('source', 'the labels')}"
    if e.sign not in class_id:
        return f"unknown sign {e.sign!r} (not among the {len(class_id)} classes of the class map)"
    return None


def check_labels(entries: Sequence[SourceEntry], class_id: Mapping[str, int], provenance: Mapping) -> None:
    """Raise the IngestError of the first entry whose labels are unusable (before any file is read)."""
    for e in entries:
        problem = entry_label_problem(e, class_id, provenance)
        if problem:
            raise IngestError(e.path, problem)


def match_files(files: Sequence[str | os.PathLike], entries: Sequence[SourceEntry], csv_path: Path,
                suffixes: Sequence[str]) -> list[SourceEntry]:
    """The labelled entry of every given file (folders expand to their files with one of `suffixes`, sorted).

    A file is matched by its path, else by its name when exactly one labels row has that name; an unlabelled file
    is kept as an entry without a sign, so --skip-bad reports it like any other bad file.
    """
    wanted = tuple(s.lower() for s in suffixes)
    paths: dict[str, Path] = {}  # a file named twice (itself and via its folder) is ingested once, first place
    for f in files:
        f = Path(f)
        found = sorted(p for p in f.rglob("*") if p.suffix.lower() in wanted and p.is_file()) if f.is_dir() else [f]
        for p in found:
            paths.setdefault(os.path.normpath(p.absolute()), p)
    by_path = {os.path.normpath(e.path): e for e in entries}
    by_name: dict[str, list[SourceEntry]] = {}
    for e in entries:
        by_name.setdefault(e.path.name, []).append(e)
    out = []
    for key, p in paths.items():
        e = by_path.get(key)
        if e is None and len(by_name.get(p.name, [])) == 1:  # labels listed by file name only
            e = by_name[p.name][0]
        if e is None:
            # Kept as an entry whose sign cannot resolve, so --skip-bad reports it like any other bad file.
            e = SourceEntry(p, None, -1, str(p), -1)
        out.append(replace(e, path=p))
    if not out:
        raise IngestError(csv_path, f"no {'/'.join(wanted)} files among {[str(f) for f in files]}")
    return out


def write_entries(out: str | os.PathLike, entries: Sequence[SourceEntry],
                  read: Callable[[SourceEntry], np.ndarray], *, layout: Layout, classes: Sequence[str],
                  provenance: dict, workers: int | None = None, skip_bad: bool = False, overwrite: bool = False,
                  progress: bool = True, compression: str | None = None) -> IngestReport:
    """Read entries on a thread pool and stream them into a new store in entry order.

    The first bad file raises its IngestError (and no store is published) unless `skip_bad`, which collects every
    (file, reason) in the report and the store's provenance instead. Unknown signs are bad files too.
    `compression` names a store preset (`slr_fast.store.compression_names()`; None: the store's default).
    """
    from slr_fast.store import StoreWriter

    start = time.perf_counter()
    class_id = {c: i for i, c in enumerate(classes)}
    report = IngestReport(out=str(out), classes=list(classes))
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = default_workers() if workers is None else int(workers)

    def label_problem(e: SourceEntry) -> str | None:
        return entry_label_problem(e, class_id, provenance)

    if not skip_bad:  # a bad label fails before any file is read, not after thousands
        check_labels(entries, class_id, provenance)

    def load(e: SourceEntry) -> np.ndarray:
        problem = label_problem(e)
        if problem:
            raise IngestError(e.path, problem)
        return read(e)

    results = ordered_map(load, entries, workers)
    # The first result starts the readers; creating the store (importing zarr, ~0.3 s) then overlaps their work.
    first = next(results, None)
    try:
        options = {} if compression is None else {"compression": compression}
        writer = StoreWriter(out, layout=layout, classes=list(classes), provenance=provenance, overwrite=overwrite,
                             total=len(entries), progress=progress, **options)
    except BaseException:
        results.close()  # stop the readers: nothing will consume their work
        raise
    with writer:
        for e, result in itertools.chain([first] if first else [], results):
            if isinstance(result, BaseException):
                if not isinstance(result, IngestError):  # a bug, not a bad file: keep its traceback
                    if hasattr(result, "add_note"):
                        result.add_note(f"while reading {e.path}")
                    raise result
                if not skip_bad:
                    raise result
                report.skipped.append((result.path, result.problem))
                continue
            try:
                writer.append(result, class_id[e.sign], signer=e.signer, seq_id=e.seq_id, split=e.split)
            except ValueError as err:  # the writer's own checks (shape, values, id): a bad file, named as such
                if not skip_bad:
                    raise IngestError(e.path, str(err)) from err
                report.skipped.append((str(e.path), str(err)))
                continue
            report.written += 1
            report.frames += len(result)
        if report.written == 0:
            first = report.skipped[0] if report.skipped else ("", "no entries")
            raise IngestError(out, f"no sequence could be read ({len(report.skipped)} skipped; first: "
                                   f"{first[0]}: {first[1]})")
        # Known only now: recorded in the store's provenance before it is published.
        writer.provenance.update(files=len(entries), written=report.written, skipped=len(report.skipped),
                                 skipped_files=[f"{f}: {r}" for f, r in report.skipped[:100]])
    report.seconds = time.perf_counter() - start
    return report
