"""A 21-point hand: handshape vocabulary and forward kinematics in MediaPipe's landmark order.

Landmark order (MediaPipe Hands): 0 wrist; thumb 1 CMC, 2 MCP, 3 IP, 4 tip; then index 5-8, middle 9-12,
ring 13-16, pinky 17-20, each MCP, PIP, DIP, tip.

Geometry is built for a right hand in body coordinates (x to the image right, y down, z away from the camera)
held up with the palm towards the camera; a left hand is the mirror image (x negated), done by the caller.
Lengths are in palm units (wrist to middle MCP = 1). A finger bends in the plane spanned by its direction in the
palm and the palm normal, so flexion angles alone give every handshape; the thumb bends across the palm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_HAND_POINTS = 21

# MCP joint positions relative to the wrist (index is on the thumb side, +x for a right hand facing the camera).
_MCP = np.array([[0.30, -0.94, 0.0], [0.06, -1.00, 0.0], [-0.16, -0.94, 0.0], [-0.35, -0.82, 0.0]])
_THUMB_CMC = np.array([0.22, -0.22, 0.02])
# Bone lengths (proximal, middle, distal) per finger, from adult hand proportions relative to palm length.
_BONES = np.array([[0.42, 0.25, 0.21], [0.47, 0.29, 0.23], [0.44, 0.28, 0.22], [0.35, 0.20, 0.19]])
_THUMB_BONES = np.array([0.40, 0.32, 0.27])
# Resting splay of each finger (radians, towards the thumb side) and the extra splay of a spread hand.
_SPLAY = np.array([0.10, 0.0, -0.09, -0.20])
_SPREAD = np.array([0.22, 0.0, -0.17, -0.34])

# Finger postures: flexion (degrees) at MCP, PIP, DIP.
_FINGER = {
    "E": (0, 0, 0),  # extended
    "F": (88, 102, 62),  # folded into the palm
    "C": (35, 45, 30),  # curved
    "O": (55, 65, 45),  # rounded to meet the thumb
    "H": (10, 85, 60),  # hooked (claw)
    "B": (82, 0, 0),  # bent at the knuckles only
}
# Thumb postures: abduction from the palm (rad), opposition out of the palm plane (rad), flexion (deg) x3.
_THUMB = {
    "in": (0.30, 0.05, (0, 10, 10)),  # along the side of the palm
    "out": (1.25, 0.0, (0, 0, 0)),  # stretched away (L, Y)
    "across": (0.30, 0.50, (0, 40, 30)),  # over the folded fingers (fist)
    "opp": (0.60, 0.80, (5, 15, 10)),  # opposed, facing the fingers (C)
    "pinch": (0.30, 0.70, (0, 10, 7)),  # meeting the finger tips (O)
}


@dataclass(frozen=True)
class Handshape:
    """Joint angles of one handshape: (5, 3) flexion in radians (thumb first), splay, thumb pose."""

    name: str
    flex: np.ndarray  # (5, 3) radians; row 0 thumb (CMC-MCP, MCP, IP), rows 1-4 index..pinky (MCP, PIP, DIP)
    spread: float  # 0 fingers together .. 1 spread
    thumb_abd: float  # radians away from the palm's side
    thumb_opp: float  # radians out of the palm plane, towards the palm side


def _shape(name: str, fingers: str, thumb: str, spread: float) -> Handshape:
    abd, opp, tflex = _THUMB[thumb]
    flex = np.radians(np.array([tflex] + [_FINGER[f] for f in fingers], dtype=np.float64))
    return Handshape(name, flex, spread, abd, opp)


# The handshape vocabulary: names follow the usual sign-language letters/descriptions.
HANDSHAPES: dict[str, Handshape] = {
    h.name: h
    for h in (
        _shape("fist", "FFFF", "across", 0.0),
        _shape("flat", "EEEE", "in", 0.0),
        _shape("open", "EEEE", "out", 1.0),
        _shape("point", "EFFF", "across", 0.0),
        _shape("V", "EEFF", "across", 1.0),
        _shape("W", "EEEF", "across", 0.8),
        _shape("C", "CCCC", "opp", 0.15),
        _shape("O", "OOOO", "pinch", 0.0),
        _shape("L", "EFFF", "out", 0.3),
        _shape("Y", "FFFE", "out", 0.6),
        _shape("I", "FFFE", "across", 0.0),
        _shape("horns", "EFFE", "across", 0.5),
        _shape("claw", "HHHH", "opp", 0.7),
        _shape("bent", "BBBB", "in", 0.0),
    )
}
HANDSHAPE_NAMES = tuple(HANDSHAPES)


def shape_params(names: list[str]) -> dict[str, np.ndarray]:
    """Stack handshapes into arrays: flex (K,5,3), spread (K,), thumb_abd (K,), thumb_opp (K,)."""
    unknown = [n for n in names if n not in HANDSHAPES]
    if unknown:
        raise ValueError(f"unknown handshape(s) {unknown}; valid: {list(HANDSHAPE_NAMES)}")
    hs = [HANDSHAPES[n] for n in names]
    return {
        "flex": np.stack([h.flex for h in hs]),
        "spread": np.array([h.spread for h in hs]),
        "thumb_abd": np.array([h.thumb_abd for h in hs]),
        "thumb_opp": np.array([h.thumb_opp for h in hs]),
    }


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_points(flex: np.ndarray, spread: np.ndarray, thumb_abd: np.ndarray, thumb_opp: np.ndarray,
                proportions: np.ndarray | None = None) -> np.ndarray:
    """Forward kinematics: (T,5,3) flexion, (T,) splay/thumb angles -> (T,21,3) right-hand points, palm units.

    The hand is upright (fingers towards -y) with the palm facing the camera (palm normal -z); rotate afterwards.
    `proportions` (4,) scales each finger's length (signer variation); None keeps the template.
    """
    T = flex.shape[0]
    up = np.array([0.0, -1.0, 0.0])
    side = np.array([1.0, 0.0, 0.0])  # towards the thumb
    normal = np.array([0.0, 0.0, -1.0])  # out of the palm: fingers curl this way
    out = np.empty((T, NUM_HAND_POINTS, 3))
    out[:, 0] = 0.0

    # Fingers: direction in the palm plane from splay, then three bones bending towards the palm normal.
    angle = _SPLAY[None, :] + _SPREAD[None, :] * spread[:, None]  # (T, 4)
    direction = np.cos(angle)[..., None] * up + np.sin(angle)[..., None] * side  # (T, 4, 3)
    cum = np.cumsum(flex[:, 1:, :], axis=2)  # (T, 4, 3) cumulative bend of each bone
    bone_dir = np.cos(cum)[..., None] * direction[:, :, None, :] + np.sin(cum)[..., None] * normal  # (T,4,3,3)
    bones = _BONES if proportions is None else _BONES * proportions[:, None]
    joints = _MCP[None, :, None, :] + np.cumsum(bones[None, :, :, None] * bone_dir, axis=2)  # (T, 4, 3, 3)
    # Points 5.. : per finger MCP then the three joints after it.
    fingers = np.concatenate([np.broadcast_to(_MCP[None, :, None, :], (T, 4, 1, 3)), joints], axis=2)
    out[:, 5:] = fingers.reshape(T, 16, 3)

    # Thumb: leaves the CMC abducted from the palm's side and opposed out of its plane, bends across the palm.
    in_plane = np.cos(thumb_abd)[:, None] * up + np.sin(thumb_abd)[:, None] * side  # (T, 3)
    t_dir = _normalize(np.cos(thumb_opp)[:, None] * in_plane + np.sin(thumb_opp)[:, None] * normal)
    across = _normalize(0.75 * normal - 0.65 * side)  # the thumb folds towards the little finger
    t_normal = _normalize(across - np.sum(across * t_dir, axis=1, keepdims=True) * t_dir)
    t_cum = np.cumsum(flex[:, 0, :], axis=1)  # (T, 3)
    t_bone = np.cos(t_cum)[..., None] * t_dir[:, None, :] + np.sin(t_cum)[..., None] * t_normal[:, None, :]
    out[:, 1] = _THUMB_CMC
    out[:, 2:5] = _THUMB_CMC + np.cumsum(_THUMB_BONES[None, :, None] * t_bone, axis=1)
    return out


def rotation(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(T,3,3) rotations R = Rz(yaw) @ Rx(pitch) @ Ry(roll) for palm orientation.

    roll turns the palm about the fingers' axis (0 facing the camera, -pi/2 facing the body's midline for a right
    hand, pi facing the body), pitch tips the fingers towards the camera (pi/2: fingers forward, palm down), yaw
    tilts the hand in the image plane.
    """
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    T = roll.shape[0]
    ry = np.zeros((T, 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = cr, sr, 1.0, -sr, cr
    rx = np.zeros((T, 3, 3))
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1.0, cp, -sp, sp, cp
    rz = np.zeros((T, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cy, -sy, sy, cy, 1.0
    return rz @ rx @ ry
