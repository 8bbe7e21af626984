"""Inference from a checkpoint: load on any device with any backend, evaluate a store split, predict files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slr_fast.errors import UserInputError, user_input
from slr_fast.fileio import regular_file_problem
from slr_fast.layout import Layout
from slr_fast.train.checkpoint import INFERENCE_FIELDS, CheckpointError, load_checkpoint
from slr_fast.train.runtime import init_runtime, resolve_device


def load_model(path: str | Path, device: str = "cpu", kernels: str = "auto", use_ema: bool = False):
    """(model in eval mode, checkpoint dict). Works on CPU whatever backend trained it: weights are backend-free.

    The checkpoint is untrusted: every field used here is checked, and the model its config describes is bounded
    and compared with the weights before it is built (slr_fast.model.checkpoint.model_from_state)."""
    from kernels.registry import KernelConfig
    from slr_fast.model.checkpoint import model_from_state

    with user_input(f"--kernels {kernels}: "):
        kernel_config = KernelConfig.parse(kernels)
    st = load_checkpoint(path, map_location="cpu", fields=INFERENCE_FIELDS + (("ema",) if use_ema else ()))
    if use_ema and st["ema"] is None:
        raise CheckpointError(f"{st['path']}: --ema asked for EMA weights, but the run was trained without --ema")
    weights = st["ema"]["module"] if use_ema else st["model"]
    model = model_from_state(st["model_config"], weights, st["path"], kernel_config)
    return model.to(device).eval(), st


def _processor(st: dict):
    from slr_fast.engine import BatchProcessor
    from slr_fast.preprocess import PreprocessConfig

    layout = Layout.from_dict(st["layout"])
    return layout, BatchProcessor(layout, PreprocessConfig.from_dict(st["preprocess"]), None, seed=0)


def evaluate_checkpoint(checkpoint: str, store_path: str, split: str = "test", batch_size: int = 256,
                        device: str = "auto", kernels: str = "auto", use_ema: bool = False) -> dict:
    """Top-1/top-5, loss, per-class accuracy and confused pairs of a checkpoint on a store split."""
    from slr_fast.loader import KeypointLoader, LoaderConfig
    from slr_fast.store import KeypointStore
    from slr_fast.train.evaluate import run_eval

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"--batch-size {batch_size!r}: not an integer >= 1")
    with user_input():
        rt = init_runtime(device, "fp32")
    model, st = load_model(checkpoint, str(rt.device), kernels, use_ema)
    store = KeypointStore.open(store_path)
    layout, proc = _processor(st)
    problem = layout_difference(store.layout, layout)
    if problem:
        raise UserInputError(f"{store_path}: its keypoint layout differs from the checkpoint's: {problem}")
    classes = list(st["classes"])
    missing = sorted(set(classes) - set(store.classes))
    if missing:
        raise UserInputError(f"{store_path}: lacks {len(missing)} classes of the checkpoint, e.g. {missing[:3]}")
    loader = KeypointLoader(store, proc, LoaderConfig(batch_size=batch_size, shuffle=False, drop_last=False,
                                                      split=split or None, classes=classes, rank=0, world_size=1))
    try:
        if len(loader) == 0:
            raise UserInputError(f"{store_path}: no sequences of the checkpoint's classes in split {split!r}")
        report = run_eval(model, loader, rt, len(classes), classes, signers=store.signers)
    finally:
        loader.close()
    report.update(split=split, checkpoint=st["path"], store=str(store_path))
    return report


def describe_layout(layout: Layout) -> str:
    """`default: lips 40, left_hand 21, right_hand 21, pose 5 × (x, y)` — a layout in one line."""
    parts = ", ".join(f"{name} {size}" for name, size in zip(layout.part_names, layout.part_sizes, strict=True))
    return f"{layout.name}: {parts} × ({', '.join(layout.channels)})"


def layout_difference(got: Layout, want: Layout) -> str | None:
    """How layout `got` (a store's, a file's) differs from `want` (a checkpoint's), in words; None when equal."""
    if got.to_dict()["parts"] == want.to_dict()["parts"] and tuple(got.channels) == tuple(want.channels):
        return None
    a, b = describe_layout(got), describe_layout(want)
    if a.partition(": ")[2] != b.partition(": ")[2]:
        return f"{a} vs {b}"
    # Same part names, sizes and channels: some parts take other source points.
    other = "; ".join(f"{p.name} takes {p.source} points {list(p.indices)[:8]} vs {list(q.indices)[:8]}"
                      for p, q in zip(got.parts, want.parts, strict=True) if p != q)
    return f"{a} vs {b} ({other})"


# Keypoint files `predict` reads, by suffix; a folder stands for its files with these suffixes, sorted by name.
KEYPOINT_SUFFIXES = (".parquet", ".pose")
PREDICT_BATCH = 64  # sequences per forward pass: a folder of thousands of files is not one batch


def _is_video(path: str | Path) -> bool:
    from slr_fast.video.reader import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def keypoint_files(paths: list[str]) -> list[str]:
    """`paths` with each folder replaced by its .parquet, .pose and video files (sorted); every file checked to be
    a regular file (a FIFO would block the reader) before anything is read."""
    out = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(str(f) for f in path.iterdir()
                           if (f.suffix in KEYPOINT_SUFFIXES or _is_video(f)) and f.is_file())
            if not found:
                raise UserInputError(f"{given}: a folder without {' or '.join(KEYPOINT_SUFFIXES)} or video files")
            out += found
            continue
        problem = regular_file_problem(given)
        if problem:
            raise UserInputError(f"{given}: {problem}")
        out.append(str(given))
    return out


def read_keypoint_file(path: str | Path, layout: Layout, coords: str = "auto",
                       missing_points: str = "error") -> np.ndarray:
    """(T, P, C) float32 frames of one GISLR parquet or .pose file, in the checkpoint's layout. `coords` and
    `missing_points` apply to .pose files (GISLR files always hold every point, normalized)."""
    path = Path(path)
    if path.suffix == ".parquet":
        from slr_fast.ingest import read_gislr_file

        return read_gislr_file(path, layout)
    if path.suffix == ".pose":
        from slr_fast.ingest import read_pose_file

        return read_pose_file(path, layout, coords=coords, missing_points=missing_points)
    if _is_video(path):
        from slr_fast.video import read_video_keypoints

        return read_video_keypoints(path, layout)[0]
    raise UserInputError(f"{path}: unsupported file type {path.suffix!r}; expected .parquet (GISLR), .pose or a "
                         f"video (.mp4, .mov, ...)")


@torch.no_grad()
def predict_files(checkpoint: str, files: list[str], top_k: int = 5, device: str = "cpu", kernels: str = "auto",
                  use_ema: bool = False, coords: str = "auto", missing_points: str = "error") -> list[dict]:
    """Top-k signs with probabilities for each file — a folder stands for its .parquet, .pose and video files,
    sorted — (top_k >= 1; at most the checkpoint's number of classes). Each result names the checkpoint file used.
    Videos are extracted first with MediaPipe Holistic in the checkpoint's layout, on one worker process per video
    (the video extra)."""
    from slr_fast.ingest.pose import COORD_MODES, MISSING_MODES

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserInputError(f"--top-k {top_k!r}: not an integer >= 1")
    if coords not in COORD_MODES:
        raise UserInputError(f"--coords {coords!r}: not one of {', '.join(COORD_MODES)}")
    if missing_points not in MISSING_MODES:
        raise UserInputError(f"--missing-points {missing_points!r}: not one of {', '.join(MISSING_MODES)}")
    files = keypoint_files(files)  # before the model is loaded
    with user_input():
        device = str(resolve_device(device))
    model, st = load_model(checkpoint, device, kernels, use_ema)
    layout, proc = _processor(st)
    classes = list(st["classes"])
    k = min(top_k, len(classes))
    videos = [f for f in files if _is_video(f)]
    extracted: dict[str, np.ndarray] = {}
    if videos:
        from slr_fast.video import extract_files

        extracted = dict(zip(videos, extract_files(videos, layout), strict=True))
    results = []
    for start in range(0, len(files), PREDICT_BATCH):
        chunk = files[start:start + PREDICT_BATCH]
        seqs = [extracted[f] if f in extracted else read_keypoint_file(f, layout, coords, missing_points)
                for f in chunk]
        offsets = np.zeros(len(seqs) + 1, np.int64)
        offsets[1:] = np.cumsum([len(s) for s in seqs])
        out = proc.alloc(len(seqs))
        proc.process(np.concatenate(seqs), offsets, np.arange(len(seqs), dtype=np.int64), 0, out)
        logits = model(torch.from_numpy(out["x"]).to(device), torch.from_numpy(out["mask"]).to(device),
                       torch.from_numpy(out["length"]).to(device)).logits
        p, i = torch.softmax(logits.float(), -1).cpu().topk(k, dim=-1)
        results += [{"file": f, "checkpoint": st["path"],
                     "top": [{"sign": classes[int(c)], "prob": float(q)} for q, c in zip(pp, ii, strict=True)]}
                    for f, pp, ii in zip(chunk, p, i, strict=True)]
    return results
