"""What a run folder records beside its checkpoints, written by rank 0 only.

- `metrics.jsonl`: one JSON record per epoch (what `report.py` reads);
- `lr.csv`: `step,epoch,lr` — the learning rate of the first parameter group at every optimizer step (a cyclic
  schedule may cycle every few epochs, so one sample per epoch would miss its peaks), evenly thinned to at most
  MAX_LR_POINTS rows for very long runs.

An epoch's records are appended before its checkpoint is saved, and a resumed run first drops every record of
the epochs it will run again: a process killed between the two writes leaves neither a gap nor a duplicate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from slr_fast.fileio import writing

METRICS = "metrics.jsonl"
LR = "lr.csv"
LR_HEADER = "step,epoch,lr"
MAX_LR_POINTS = 20_000  # ~0.5 MB of CSV: every step of a 50-epoch run of 400 steps per epoch


def lr_stride(total_steps: int) -> int:
    """Record every `lr_stride`-th step: 1 up to MAX_LR_POINTS steps, evenly spaced beyond."""
    return max(1, math.ceil(total_steps / MAX_LR_POINTS))


def start(run_dir: Path) -> None:
    """Empty record files for a new run."""
    for name, text in ((METRICS, ""), (LR, LR_HEADER + "\n")):
        with writing(run_dir / name):
            (run_dir / name).write_text(text)


def append_epoch(run_dir: Path, rec: dict, lr_rows: list[tuple[int, int, float]]) -> None:
    """Append an epoch's metrics record and its (step, epoch, lr) rows."""
    with writing(run_dir / METRICS), open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(rec) + "\n")
    path = run_dir / LR
    with writing(path), open(path, "a") as f:
        if f.tell() == 0:  # a run started before lr.csv existed
            f.write(LR_HEADER + "\n")
        f.writelines(f"{step},{epoch},{lr!r}\n" for step, epoch, lr in lr_rows)


def keep_epochs(run_dir: Path, epochs: int) -> None:
    """Drop the records of epochs >= `epochs` (a resumed run starts there and writes them again)."""
    path = run_dir / METRICS
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if _epoch_of_record(ln) < epochs]
        if len(kept) != len(lines):
            with writing(path):
                path.write_text("".join(ln + "\n" for ln in kept))
    path = run_dir / LR
    if path.exists():
        rows = path.read_text().splitlines()[1:]
        kept = [r for r in rows if _epoch_of_row(r) < epochs]
        if len(kept) != len(rows):
            with writing(path):
                path.write_text("".join(ln + "\n" for ln in [LR_HEADER, *kept]))


def _epoch_of_record(line: str) -> float:
    try:
        epoch = json.loads(line).get("epoch")
    except (json.JSONDecodeError, AttributeError):
        return math.inf  # a torn last line of a killed process: written again
    return epoch if isinstance(epoch, int) else math.inf


def _epoch_of_row(row: str) -> float:
    parts = row.split(",")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else math.inf


def read_lr(run_dir: str | Path) -> tuple[list[int], list[float]] | None:
    """(steps, learning rates) of a run's lr.csv; None when the run has none (runs made before it existed)."""
    path = Path(run_dir) / LR
    if not path.exists():
        return None
    steps, lrs = [], []
    for row in path.read_text().splitlines()[1:]:
        parts = row.split(",")
        if len(parts) == 3:
            try:
                steps.append(int(parts[0]))
                lrs.append(float(parts[2]))
            except ValueError:
                continue  # a torn last line of a killed process
    return steps, lrs
