"""Skeleton drawing with matplotlib: a frame on an Axes, a few frames of a sequence, versions side by side.

Bones are looked up by MediaPipe source index, so any layout draws correctly: an edge is drawn when both of its
end points are in the layout and detected (NaN points and their bones are skipped). Images use y down, like the
normalized coordinates, and share one view across a figure's panels so motion between frames stays visible.

Proportions: one unit of x is drawn as long as one unit of y, times `aspect`. MediaPipe normalizes x by the video's
width and y by its height, so `aspect` = width / height (16/9 for landscape HD) draws the shapes as filmed; the
default 1 draws the stored numbers as they are. Panels take the shape of the view, so nothing is squeezed into a
fixed box, and a legend names the colour of each hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.layout import Layout

# MediaPipe Hands topology: thumb, the four fingers from the wrist, and the palm's knuckle line.
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
# Lip contours through face-mesh indices: outer then inner ring, each closed.
_OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)
_INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
FACE_EDGES = tuple(zip(_OUTER_LIPS[:-1], _OUTER_LIPS[1:], strict=True)) + tuple(
    zip(_INNER_LIPS[:-1], _INNER_LIPS[1:], strict=True))
# MediaPipe Pose upper body: shoulders, arms, hands' pose points, torso, and the face points.
POSE_EDGES = (
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (15, 17), (15, 19), (17, 19), (15, 21),
    (16, 18), (16, 20), (18, 20), (16, 22), (11, 23), (12, 24), (23, 24),
    (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (0, 1), (0, 4),
)  # fmt: skip
_SOURCE_EDGES = {"left_hand": HAND_EDGES, "right_hand": HAND_EDGES, "face": FACE_EDGES, "pose": POSE_EDGES}
# Colours per source (matplotlib's default cycle, picked so left/right hands differ clearly), and their legend.
SOURCE_COLORS = {"face": "tab:red", "left_hand": "tab:blue", "right_hand": "tab:orange", "pose": "tab:gray"}
SOURCE_LABELS = {"left_hand": "left hand", "right_hand": "right hand", "face": "lips", "pose": "pose"}
PANEL_HEIGHT = 2.4  # inches per row of panels; a panel's width follows the view's shape
PANEL_RATIO = (0.35, 3.0)  # narrowest and widest panel (width / height), for views of a single line of points


def skeleton_edges(layout: Layout) -> list[tuple[int, int, str]]:
    """(point a, point b, source) for every bone whose two ends are in `layout`."""
    where: dict[tuple[str, int], int] = {}
    point = 0
    for part in layout.parts:
        for i in part.indices:
            where.setdefault((part.source, i), point)
            point += 1
    edges = []
    for source, pairs in _SOURCE_EDGES.items():
        for a, b in pairs:
            if (source, a) in where and (source, b) in where:
                edges.append((where[(source, a)], where[(source, b)], source))
    # Without the pose wrists (the default layout stops at the elbows) the forearm runs to the hand's wrist.
    for elbow, wrist, hand in ((13, 15, "left_hand"), (14, 16, "right_hand")):
        if ("pose", wrist) not in where and ("pose", elbow) in where and (hand, 0) in where:
            edges.append((where[("pose", elbow)], where[(hand, 0)], "pose"))
    return edges


def _point_sources(layout: Layout) -> list[str]:
    return [p.source for p in layout.parts for _ in p.indices]


def _check_frame(frame: np.ndarray, layout: Layout) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float64)
    if frame.ndim != 2 or frame.shape[0] != layout.num_points or frame.shape[1] < 2:
        raise ValueError(f"frame of shape {frame.shape} does not match layout {layout.name!r} "
                         f"({layout.num_points} points, >= 2 channels)")
    return frame


def frame_limits(frames: np.ndarray, margin: float = 0.05, aspect: float = 1.0) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) around the detected points of (T,P,C) or (P,C) frames, x times `aspect` as drawn;
    the unit square if none."""
    xy = np.asarray(frames, dtype=np.float64)[..., :2].reshape(-1, 2) * (aspect, 1.0)
    xy = xy[~np.isnan(xy).any(axis=1)]
    if xy.size == 0:
        return 0.0, 1.0, 0.0, 1.0
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = margin * max(float((hi - lo).max()), 1e-3)
    return float(lo[0] - pad), float(hi[0] + pad), float(lo[1] - pad), float(hi[1] + pad)


def _check_aspect(aspect: float) -> float:
    if not (isinstance(aspect, int | float) and np.isfinite(aspect) and 0.05 <= aspect <= 20):
        raise UserInputError(f"aspect {aspect!r}: not a frame width / height ratio in [0.05, 20]")
    return float(aspect)


def draw_frame(ax: Any, frame: np.ndarray, layout: Layout, *, limits: tuple[float, float, float, float] | None = None,
               title: str | None = None, point_size: float = 4.0, line_width: float = 1.2,
               colors: Mapping[str, str] | None = None, alpha: float = 1.0, aspect: float = 1.0) -> Any:
    """Draw one (P,C) frame's skeleton on a matplotlib Axes (y down, x times `aspect`, equal units); returns the
    Axes. `limits` are in drawn units (frame_limits with the same aspect)."""
    frame = _check_frame(frame, layout)
    colors = {**SOURCE_COLORS, **(colors or {})}
    sources = _point_sources(layout)
    xy = frame[:, :2] * (_check_aspect(aspect), 1.0)
    for a, b, source in skeleton_edges(layout):
        if not (np.isnan(xy[a]).any() or np.isnan(xy[b]).any()):
            ax.plot([xy[a, 0], xy[b, 0]], [xy[a, 1], xy[b, 1]], color=colors[source], lw=line_width, alpha=alpha)
    ok = ~np.isnan(xy).any(axis=1)
    ax.scatter(xy[ok, 0], xy[ok, 1], s=point_size, c=[colors[s] for s, k in zip(sources, ok, strict=True) if k],
               alpha=alpha, linewidths=0)
    xmin, xmax, ymin, ymax = limits if limits is not None else frame_limits(frame, aspect=aspect)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymax, ymin)  # image coordinates: y grows downwards
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def pick_frames(length: int, count: int) -> list[int]:
    """`count` evenly spread frame numbers of a sequence of `length` frames (all of them when it is shorter)."""
    if length <= 0:
        return []
    if count >= length:
        return list(range(length))
    return sorted({int(round(i)) for i in np.linspace(0, length - 1, count)})


def panel_size(limits: tuple[float, float, float, float]) -> tuple[float, float]:
    """(width, height) in inches of a panel showing `limits` at equal units: the view's shape, within PANEL_RATIO."""
    xmin, xmax, ymin, ymax = limits
    ratio = (xmax - xmin) / max(ymax - ymin, 1e-9)
    return PANEL_HEIGHT * float(np.clip(ratio, *PANEL_RATIO)), PANEL_HEIGHT


def add_legend(fig: Any, layout: Layout, colors: Mapping[str, str] | None = None) -> Any:
    """A legend under the panels naming the colour of each source `layout` has (which hand is which)."""
    from matplotlib.lines import Line2D

    colors = {**SOURCE_COLORS, **(colors or {})}
    present = {p.source for p in layout.parts}
    handles = [Line2D([], [], color=colors[s], marker="o", ms=3, lw=1.2, label=SOURCE_LABELS[s])
               for s in SOURCE_LABELS if s in present]
    return fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


def _figure(cols: int, rows: int, limits: tuple[float, float, float, float]) -> Any:
    import matplotlib.pyplot as plt

    width, height = panel_size(limits)
    # Constrained layout keeps room for the titles above and the legend below the panels.
    return plt.figure(figsize=(width * cols + 0.3, height * rows + 0.9), layout="constrained")


def draw_sequence(frames: np.ndarray, layout: Layout, frame_ids: Sequence[int] | None = None, *, count: int = 6,
                  axes: Sequence[Any] | None = None, fig: Any = None, label: str | None = None, aspect: float = 1.0,
                  limits: tuple[float, float, float, float] | None = None) -> Any:
    """Draw frames (T,P,C) of a sequence in a row of panels sharing one view; returns the figure.

    `frame_ids` picks frames (default: `count` spread evenly); `axes` draws into existing axes (one per frame),
    e.g. a row of a larger grid; otherwise a new figure (or `fig`) gets one row, shaped like the view, with a
    legend of the hands. `aspect`: the video's width / height (see the module's docstring); `limits`: the view
    (default: around these frames).
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, P, C), got shape {frames.shape}")
    ids = pick_frames(frames.shape[0], count) if frame_ids is None else [int(i) for i in frame_ids]
    bad = [i for i in ids if not 0 <= i < frames.shape[0]]
    if bad:
        raise UserInputError(f"frame ids {bad} outside the sequence's {frames.shape[0]} frames")
    if not ids:
        raise ValueError("nothing to draw: the sequence has no frames")
    aspect = _check_aspect(aspect)
    limits = limits if limits is not None else frame_limits(frames[ids], aspect=aspect)
    if axes is None:
        if fig is None:
            fig = _figure(len(ids), 1, limits)
        axes = fig.subplots(1, len(ids), squeeze=False)[0]
        add_legend(fig, layout)
    if len(axes) != len(ids):
        raise ValueError(f"got {len(axes)} axes for {len(ids)} frames")
    for ax, i in zip(axes, ids, strict=True):
        draw_frame(ax, frames[i], layout, limits=limits, title=f"frame {i}", aspect=aspect)
    if label:
        axes[0].set_ylabel(label, fontsize=8)
    return axes[0].figure


def draw_comparison(versions: Mapping[str, np.ndarray], layout: Layout, frame_ids: Sequence[int] | None = None, *,
                    count: int = 6, aspect: float = 1.0) -> Any:
    """One row per named version of a sequence (e.g. "original", "augmented"), same frames and one view, so a
    scaling or a shift shows; returns the figure.

    Versions may differ in length (time augmentations): frame ids are then spread over each version separately.
    """
    if not versions:
        raise ValueError("draw_comparison needs at least one version")
    aspect = _check_aspect(aspect)
    rows = {name: np.asarray(v) for name, v in versions.items()}
    ids_of = {name: (pick_frames(v.shape[0], count) if frame_ids is None else list(frame_ids))
              for name, v in rows.items()}
    shown = [v[[i for i in ids_of[name] if 0 <= i < len(v)]] for name, v in rows.items()]
    limits = frame_limits(np.concatenate([v.reshape(-1, *v.shape[-2:]) for v in shown]), aspect=aspect)
    cols = max(len(i) for i in ids_of.values())
    fig = _figure(cols, len(rows), limits)
    grid = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, v) in enumerate(rows.items()):
        ids = ids_of[name]
        draw_sequence(v, layout, ids, axes=list(grid[r, : len(ids)]), label=name, aspect=aspect, limits=limits)
        for ax in grid[r, len(ids):]:
            ax.axis("off")
    add_legend(fig, layout)
    return fig
