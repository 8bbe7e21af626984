"""Store statistics for `slr-fast info`: size, lengths, signers, splits, and how often each part is missing.

Frames are read in blocks of whole storage chunks, so a store of any size is summarised in bounded memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SPLIT_NAMES = {-1: "none", 0: "train", 1: "val", 2: "test"}
PERCENTILES = (5, 50, 95)


def _fraction(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def store_stats(store: Any, block_frames: int = 1 << 18) -> dict[str, Any]:
    """JSON-ready statistics of a KeypointStore (counts, length percentiles, missing rates per part, splits)."""
    layout = store.layout
    lengths = np.asarray(store.lengths, dtype=np.int64)
    labels = np.asarray(store.labels, dtype=np.int64)
    signers = np.asarray(store.signers, dtype=np.int64)
    splits = np.asarray(store.splits, dtype=np.int64)
    slices = layout.part_slices()
    hand_slices = [slices[layout.parts[i].name] for i in layout.hand_parts()]

    # Per-frame missing statistics, streamed block by block (a block is a multiple of the store's chunk).
    chunk = max(1, int(getattr(store, "chunk_frames", block_frames) or block_frames))
    block = max(chunk, (block_frames // chunk) * chunk)
    part_absent = dict.fromkeys(slices, 0)  # frames where every point of the part is NaN
    part_nan_points = dict.fromkeys(slices, 0)  # NaN points, for the point-level rate
    no_hand = empty = 0
    lo = np.full(layout.num_channels, np.inf)
    hi = np.full(layout.num_channels, -np.inf)
    total = int(store.num_frames)
    for start in range(0, total, block):
        frames = store.read_frames(start, min(start + block, total))
        nan = np.isnan(frames).any(axis=2)  # (n, P): a point is missing if any channel is NaN
        for name, sl in slices.items():
            part_absent[name] += int(nan[:, sl].all(axis=1).sum())
            part_nan_points[name] += int(nan[:, sl].sum())
        if hand_slices:
            no_hand += int(np.logical_and.reduce([nan[:, sl].all(axis=1) for sl in hand_slices]).sum())
        empty += int(nan.all(axis=1).sum())
        if (~nan).any():
            lo = np.minimum(lo, np.nanmin(frames.reshape(-1, frames.shape[-1]), axis=0))
            hi = np.maximum(hi, np.nanmax(frames.reshape(-1, frames.shape[-1]), axis=0))

    per_class = np.bincount(labels, minlength=len(store.classes)) if labels.size else np.zeros(len(store.classes))
    split_info = {}
    for code, name in SPLIT_NAMES.items():
        sel = splits == code
        if sel.any() or code >= 0:
            split_info[name] = {
                "sequences": int(sel.sum()),
                "frames": int(lengths[sel].sum()),
                "signers": int(np.unique(signers[sel & (signers >= 0)]).size),
                "classes": int(np.unique(labels[sel]).size),
            }
    known = signers[signers >= 0]
    return {
        "store": str(getattr(store, "where", "")),
        "source_format": (store.provenance or {}).get("source_format"),
        "layout": {"name": layout.name, "points": layout.num_points, "channels": list(layout.channels),
                   "parts": {p.name: p.size for p in layout.parts}},
        "sequences": int(lengths.size),
        "frames": total,
        "classes": len(store.classes),
        "classes_present": int((per_class > 0).sum()),
        "sequences_per_class": {"min": int(per_class.min()) if per_class.size else 0,
                                "median": float(np.median(per_class)) if per_class.size else 0.0,
                                "max": int(per_class.max()) if per_class.size else 0},
        "signers": int(np.unique(known).size),
        "sequences_unknown_signer": int((signers < 0).sum()),
        "length": {
            "min": int(lengths.min()) if lengths.size else 0,
            **{f"p{q}": float(np.percentile(lengths, q)) if lengths.size else 0.0 for q in PERCENTILES},
            "max": int(lengths.max()) if lengths.size else 0,
            "mean": float(lengths.mean()) if lengths.size else 0.0,
        },
        "missing": {
            name: {"frames_absent": _fraction(part_absent[name], total),
                   "points": _fraction(part_nan_points[name], total * (sl.stop - sl.start))}
            for name, sl in slices.items()
        },
        "frames_without_hands": _fraction(no_hand, total) if hand_slices else None,
        "frames_empty": _fraction(empty, total),
        "coordinate_range": {c: [float(lo[k]), float(hi[k])] if np.isfinite(lo[k]) else None
                             for k, c in enumerate(layout.channels)},
        "splits": split_info,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:5.1f} %"


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable summary of store_stats() output."""
    lay = stats["layout"]
    ln = stats["length"]
    spc = stats["sequences_per_class"]
    lines = [
        f"store      {stats['store']}" + (f"  ({stats['source_format']})" if stats.get("source_format") else ""),
        f"layout     {lay['name']}: {lay['points']} points x {len(lay['channels'])} channels ("
        + ", ".join(f"{k} {v}" for k, v in lay["parts"].items()) + ")",
        f"sequences  {stats['sequences']}   frames {stats['frames']}   classes {stats['classes']} "
        f"({stats['classes_present']} present; {spc['min']}-{spc['max']} sequences each)   signers "
        f"{stats['signers']}" + (f" (+{stats['sequences_unknown_signer']} sequences unknown)"
                                 if stats["sequences_unknown_signer"] else ""),
        f"length     min {ln['min']}  p5 {ln['p5']:g}  p50 {ln['p50']:g}  p95 {ln['p95']:g}  max {ln['max']}  "
        f"mean {ln['mean']:.1f}",
        "missing    part          frames absent   points NaN",
    ]
    for name, m in stats["missing"].items():
        lines.append(f"           {name:<13} {_pct(m['frames_absent']):>13}   {_pct(m['points']):>10}")
    lines.append(f"           no hand at all {_pct(stats['frames_without_hands']):>12}   "
                 f"empty frames {_pct(stats['frames_empty'])}")
    lines.append("splits     " + "   ".join(
        f"{name} {s['sequences']} seq / {s['signers']} signers / {s['classes']} classes"
        for name, s in stats["splits"].items() if s["sequences"] or name != "none"))
    rng = ", ".join(f"{c} {v[0]:.3f}..{v[1]:.3f}" for c, v in stats["coordinate_range"].items() if v)
    if rng:
        lines.append(f"range      {rng}")
    return "\n".join(lines)
