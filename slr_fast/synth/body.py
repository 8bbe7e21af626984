"""Lips, upper body and arms of the synthetic signer, in body coordinates.

Body coordinates: origin between the shoulders, x towards the image right (the signer's left side, as a camera
that does not mirror sees it), y down, z away from the camera; the unit is half the shoulder width (~20 cm).
MediaPipe's "left" is the signer's left, so pose 11 (left shoulder) sits at x = +1 and pose 12 at x = -1, and the
face-mesh mouth corner 291 (signer's left) at +x.
"""

from __future__ import annotations

import numpy as np

from slr_fast.layout import LIPS

NUM_POSE_POINTS = 33

# --- Lips ---------------------------------------------------------------------------------------------------------
# Each of the 40 lip points of slr_fast.layout.LIPS lies on one of four contours at a position t in [-1, 1] across
# the mouth (-1 = the signer's right corner). The order of LIPS is: outer upper 61..409, corner 291, outer lower
# 146..375, inner upper 78..415, inner lower 95..308.
_T9 = np.array([-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8])
LIP_CONTOUR = np.array([0] * 10 + [0] + [1] * 9 + [2] * 10 + [3] * 10)  # 0 outer up, 1 outer low, 2/3 inner
LIP_T = np.concatenate([[-1.0], _T9[:4], [0.0], _T9[5:], [1.0], _T9, [-1.0], _T9, _T9, [1.0]])
assert LIP_CONTOUR.size == LIP_T.size == len(LIPS)
LIP_INDEX = {face_index: k for k, face_index in enumerate(LIPS)}

MOUTH_CENTER = np.array([0.0, -0.93, -0.50])
MOUTH_HALF_WIDTH = 0.13


def lip_points(opening: np.ndarray, width: np.ndarray, smile: np.ndarray) -> np.ndarray:
    """(T,) mouth opening (0 closed .. 1 wide open), width factor, corner lift -> (T,40,3) lips in body units."""
    t = LIP_T[None, :]
    bump = (1.0 - t**2) ** 0.7  # contour height profile across the mouth
    # Cupid's bow: the outer upper lip dips slightly at the midline.
    bow = 1.0 - 0.25 * np.exp(-((t / 0.18) ** 2))
    op = opening[:, None]
    # The jaw carries the lower lip: it moves about twice as far as the upper lip when the mouth opens.
    inner_up = -0.25 * op * bump
    inner_low = 0.55 * op * bump
    y = np.select(
        [LIP_CONTOUR[None, :] == 0, LIP_CONTOUR[None, :] == 1, LIP_CONTOUR[None, :] == 2],
        [inner_up - 0.28 * bump * bow, inner_low + 0.32 * bump, inner_up],
        inner_low,
    )
    inner = LIP_CONTOUR[None, :] >= 2
    x = t * np.where(inner, 0.82, 1.0) * width[:, None]
    y = y - smile[:, None] * (np.abs(t) ** 3) * 0.18  # corners rise in a smile
    z = -0.10 * bump - 0.04 * (LIP_CONTOUR[None, :] < 2)  # the middle of the lips is nearer the camera
    pts = np.stack([x, y, np.broadcast_to(z, x.shape)], axis=-1) * MOUTH_HALF_WIDTH
    return pts + MOUTH_CENTER


# --- Pose ---------------------------------------------------------------------------------------------------------
# MediaPipe pose landmarks 0-33 in body units for a standing signer; arms (13-22) are filled from the arm chain.
_POSE_STATIC = {
    0: (0.0, -1.08, -0.58),  # nose
    1: (0.07, -1.25, -0.48), 2: (0.16, -1.26, -0.46), 3: (0.24, -1.25, -0.43),  # left eye inner/centre/outer
    4: (-0.07, -1.25, -0.48), 5: (-0.16, -1.26, -0.46), 6: (-0.24, -1.25, -0.43),  # right eye
    7: (0.40, -1.17, -0.12), 8: (-0.40, -1.17, -0.12),  # ears
    9: (0.12, -0.93, -0.50), 10: (-0.12, -0.93, -0.50),  # mouth corners
    11: (1.0, 0.0, 0.0), 12: (-1.0, 0.0, 0.0),  # shoulders
    23: (0.55, 2.65, 0.05), 24: (-0.55, 2.65, 0.05),  # hips
    25: (0.58, 4.70, -0.10), 26: (-0.58, 4.70, -0.10),  # knees (usually below the frame)
    27: (0.60, 6.70, 0.15), 28: (-0.60, 6.70, 0.15),  # ankles
    29: (0.62, 6.85, 0.25), 30: (-0.62, 6.85, 0.25),  # heels
    31: (0.66, 6.95, -0.25), 32: (-0.66, 6.95, -0.25),  # foot tips
}  # fmt: skip
HEAD_POINTS = np.arange(11)  # pose points that move with the head
SHOULDER = {"right": np.array([-1.0, 0.0, 0.0]), "left": np.array([1.0, 0.0, 0.0])}


def pose_template() -> np.ndarray:
    """(33,3) static pose points (arms NaN until filled from the arm chain)."""
    out = np.full((NUM_POSE_POINTS, 3), np.nan)
    for i, p in _POSE_STATIC.items():
        out[i] = p
    return out


def elbow_positions(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float,
                    pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone inverse kinematics: (3,) shoulder, (T,3) wrist -> (elbow (T,3), reachable wrist (T,3)).

    A wrist beyond reach is pulled back along the shoulder-wrist line, so arm lengths are always respected; the
    elbow bends towards `pole` (down and out for a relaxed arm).
    """
    d = wrist - shoulder  # (T, 3)
    dist = np.linalg.norm(d, axis=1, keepdims=True)
    reach = 0.985 * (upper + fore)
    closest = abs(upper - fore) + 0.05
    clipped = np.clip(dist, closest, reach)
    direction = d / np.maximum(dist, 1e-9)
    wrist = shoulder + direction * clipped
    along = (upper**2 - fore**2 + clipped**2) / (2.0 * clipped)  # law of cosines: elbow's projection on the line
    height = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    perp = pole[None, :] - np.sum(pole * direction, axis=1, keepdims=True) * direction
    perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-9)
    return shoulder + along * direction + height * perp, wrist
