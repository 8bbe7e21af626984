"""Render one sequence of one sign by one signer: the motion, the skeleton, the camera and the detector.

The motion is a per-frame state vector (wrist position, joint angles, palm orientation, mouth) for each hand,
evaluated segment by segment on the sign's phase, with each segment blended out of the previous one so the motion
is continuous. Hands rise from rest and return to it. Forward kinematics gives the hands, two-bone inverse
kinematics the elbows; the whole skeleton is built for a right-handed signer and mirrored for a left-handed one.
The camera maps body units to MediaPipe's normalized image coordinates; the detector adds temporally correlated
jitter and drops hands, lips or whole frames in bursts (NaN), more often for resting, fast or out-of-frame hands.
"""

from __future__ import annotations

import math

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.layout import LIPS, Layout, Part
from slr_fast.synth.body import (
    HEAD_POINTS,
    MOUTH_CENTER,
    NUM_POSE_POINTS,
    elbow_positions,
    lip_points,
    pose_template,
)
from slr_fast.synth.hand import HANDSHAPE_NAMES, hand_points, rotation, shape_params
from slr_fast.synth.signer import ALL_LOCATIONS, LOCATION_ROW, Signer
from slr_fast.synth.vocab import BASE_HAND_POSITION, DIRECTIONS, ORIENTATIONS, Segment, Sign

# Every point the generator draws, in one array: lips 40, left hand 21, right hand 21, pose 33.
SOURCE_LAYOUT = Layout(parts=(
    Part("lips", "face", LIPS),
    Part("left_hand", "left_hand", tuple(range(21))),
    Part("right_hand", "right_hand", tuple(range(21))),
    Part("pose", "pose", tuple(range(NUM_POSE_POINTS))),
), channels=("x", "y", "z"), name="synth_sources")
_SLICES = SOURCE_LAYOUT.part_slices()
LIPS_S, LEFT_S, RIGHT_S, POSE_S = _SLICES["lips"], _SLICES["left_hand"], _SLICES["right_hand"], _SLICES["pose"]
_MIRROR = SOURCE_LAYOUT.mirror_index()
_SOURCE_PART = SOURCE_LAYOUT.part_ids()
# Jitter per source part (lips, left hand, right hand, pose): the face mesh moves its lip points together, so
# their own noise is small next to the mouth's size; hands and pose points wobble individually.
_SHARED_JITTER = np.array([0.5, 1.0, 1.0, 1.0])
_OWN_JITTER = np.array([0.12, 1.0, 1.0, 1.0])

# Per-frame motion state of one hand: position 3, joint flexion 15, splay 1, thumb abduction 1, thumb opposition 1,
# palm orientation 3 (roll, pitch, yaw), mouth 3 (opening, width, smile; used from the dominant hand's track).
POS, FLEX, SPREAD, TABD, TOPP, ORIENT, MOUTH = (slice(0, 3), slice(3, 18), 18, 19, 20, slice(21, 24), slice(24, 27))
STATE = 27
_SHAPES = shape_params(list(HANDSHAPE_NAMES))
_SHAPE_ROW = {n: i for i, n in enumerate(HANDSHAPE_NAMES)}
_PLACES = np.array(list(ALL_LOCATIONS.values()))
REST = np.array([-1.15, 2.5, -0.3])  # a hand hanging by the side
REST_ORIENT = (-75.0, 0.0, 170.0)  # fingers down, palm towards the thigh
_ARM_POLE = np.array([-0.5, 1.0, 0.3]) / np.linalg.norm([-0.5, 1.0, 0.3])  # elbows hang down and out
_BLEND = 0.3  # share of a segment spent moving out of the previous one


def source_rows(layout: Layout) -> np.ndarray:
    """(P,) row of SOURCE_LAYOUT holding each point of `layout` (face points must be lip points)."""
    where = {}
    for part in SOURCE_LAYOUT.parts:
        for k, i in enumerate(part.indices):
            where[(part.source, i)] = _SLICES[part.name].start + k
    try:
        return np.array([where[(p.source, i)] for p in layout.parts for i in p.indices], dtype=np.int64)
    except KeyError as e:
        raise UserInputError(f"layout {layout.name!r}: the generator cannot draw point {e.args[0]}") from e


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def smooth_noise(rng: np.random.Generator, T: int, shape: tuple[int, ...], width: int) -> np.ndarray:
    """(T, *shape) unit-variance Gaussian noise correlated over about `width` frames (a moving average)."""
    w = max(1, int(width))
    white = rng.standard_normal((T + w - 1, *shape))
    c = np.concatenate([np.zeros((1, *shape)), np.cumsum(white, axis=0)])
    return (c[w:] - c[:-w]) / math.sqrt(w)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz-Stegun 7.1.26 (|error| < 1e-7); maps correlated noise to uniforms."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def _movement(seg: Segment, v: np.ndarray, amplitude: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Wrist offset (n,3) and palm-roll offset (n,) of a segment's movement at local phase v."""
    n = v.size
    s = _smoothstep(v)
    reps = seg.repeats
    amp = seg.amplitude * amplitude
    off = np.zeros((n, 3))
    roll = np.zeros(n)
    m = seg.movement
    if m == "circle":
        plane, turn = seg.direction.rsplit("_", 1)
        a, b = {"frontal": (0, 1), "horizontal": (0, 2), "sagittal": (2, 1)}[plane]
        ang = (1.0 if turn == "cw" else -1.0) * 2.0 * np.pi * reps * s + phase * 2.0 * np.pi
        off[:, a] = amp * (np.cos(ang) - math.cos(phase * 2.0 * np.pi))
        off[:, b] = amp * (np.sin(ang) - math.sin(phase * 2.0 * np.pi))
        return off, roll
    d = np.asarray(DIRECTIONS[seg.direction], dtype=np.float64)
    d = d / np.linalg.norm(d)
    if m in ("hold", "wiggle"):
        off = amp * v[:, None] * d  # a slow drift while the hand holds its place
    elif m == "line":
        off = amp * s[:, None] * d
    elif m == "arc":
        bulge = np.cross(d, [0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
        bulge = bulge / max(np.linalg.norm(bulge), 1e-9)
        off = amp * (s[:, None] * d + 0.35 * np.sin(np.pi * s)[:, None] * bulge)
    elif m == "tap":
        off = amp * (0.5 - 0.5 * np.cos(2.0 * np.pi * (reps * v + phase)))[:, None] * d
    elif m == "shake":
        off = amp * np.sin(2.0 * np.pi * (reps * v + phase))[:, None] * d
    elif m == "twist":
        roll = 0.9 * np.sin(2.0 * np.pi * (reps * v + phase))
    return off, roll


def _mouth(action: str, v: np.ndarray) -> np.ndarray:
    """(n,3) mouth opening, width and smile of a mouthing action; every action starts and ends at rest."""
    out = np.zeros((v.size, 3))
    out[:, 0], out[:, 1] = 0.04, 1.0
    bump = np.sin(np.pi * v)
    if action == "open":
        out[:, 0] += 0.55 * bump
    elif action == "repeat":
        out[:, 0] += 0.4 * (0.5 - 0.5 * np.cos(4.0 * np.pi * v))
    elif action == "round":
        out[:, 0] += 0.3 * bump
        out[:, 1] -= 0.3 * bump
    elif action == "wide":
        out[:, 0] += 0.1 * bump
        out[:, 1] += 0.15 * bump
        out[:, 2] += 0.8 * bump
    elif action == "pa":  # a short burst late in the segment: time-asymmetric on purpose
        out[:, 0] += 0.6 * np.exp(-(((v - 0.72) / 0.09) ** 2))
    return out


def _segment_state(seg: Segment, v: np.ndarray, signer: Signer, place_noise: np.ndarray, amplitude: float,
                   lateral: float, phase: float) -> np.ndarray:
    """(n, STATE) motion state of one hand through one segment."""
    out = np.empty((v.size, STATE))
    row = LOCATION_ROW[seg.location]
    place = _PLACES[row] + signer.place_offsets[row] + place_noise
    place = place + np.array([lateral, 0.0, 0.0])
    off, roll = _movement(seg, v, amplitude, phase)
    out[:, POS] = place + off
    w = _smoothstep((v - 0.25) / 0.5)[:, None]  # handshape and palm change mid-segment
    a, b = _SHAPE_ROW[seg.shape_start], _SHAPE_ROW[seg.shape_end]
    flex = _SHAPES["flex"][a].reshape(-1) * (1.0 - w) + _SHAPES["flex"][b].reshape(-1) * w
    if seg.movement == "wiggle":  # fingers flutter one after another
        wave = 0.35 * np.sin(2.0 * np.pi * seg.repeats * v[:, None] + 0.9 * np.arange(4)[None, :])
        flex = flex.reshape(-1, 5, 3).copy()
        flex[:, 1:, 0] += wave
        flex = flex.reshape(-1, 15)
    out[:, FLEX] = flex
    for col, key in ((SPREAD, "spread"), (TABD, "thumb_abd"), (TOPP, "thumb_opp")):
        out[:, col] = _SHAPES[key][a] * (1.0 - w[:, 0]) + _SHAPES[key][b] * w[:, 0]
    o0 = np.radians(ORIENTATIONS[seg.orient_start])
    o1 = np.radians(ORIENTATIONS[seg.orient_end])
    out[:, ORIENT] = o0 * (1.0 - w) + o1 * w
    out[:, ORIENT.start] += roll
    out[:, MOUTH] = _mouth(seg.lips, v)
    return out


def _track(sign: Sign, u: np.ndarray, bounds: np.ndarray, signer: Signer, place_noise: np.ndarray,
           amplitude: float, lateral: float, phase: float) -> np.ndarray:
    """(T, STATE) state of one hand through the whole sign at phases u, continuous across segments."""
    T = u.size
    out = np.empty((T, STATE))
    k_of = np.clip(np.searchsorted(bounds, u, side="right") - 1, 0, len(sign.segments) - 1)
    prev_end = None
    edge = np.array([0.0, 1.0])
    for k, seg in enumerate(sign.segments):
        ends = _segment_state(seg, edge, signer, place_noise[k], amplitude, lateral, phase)
        sel = np.flatnonzero(k_of == k)
        if sel.size:
            v = (u[sel] - bounds[k]) / (bounds[k + 1] - bounds[k])
            state = _segment_state(seg, v, signer, place_noise[k], amplitude, lateral, phase)
            if prev_end is not None:  # glide out of the previous segment's last pose
                state += (prev_end - ends[0]) * (1.0 - _smoothstep(v / _BLEND))[:, None]
            out[sel] = state
        prev_end = ends[1]
    return out


def _static_state(position: np.ndarray, shape: str, orient: str | tuple[float, float, float], T: int) -> np.ndarray:
    """(T, STATE) state of a hand that holds still (at rest or as a base hand)."""
    row = _SHAPE_ROW[shape]
    out = np.empty((T, STATE))
    out[:, POS] = position
    out[:, FLEX] = _SHAPES["flex"][row].reshape(-1)
    out[:, SPREAD], out[:, TABD], out[:, TOPP] = (_SHAPES[k][row] for k in ("spread", "thumb_abd", "thumb_opp"))
    out[:, ORIENT] = np.radians(ORIENTATIONS[orient] if isinstance(orient, str) else orient)
    out[:, MOUTH] = (0.04, 1.0, 0.0)
    return out


def _hand_and_elbow(state: np.ndarray, signer: Signer, joint_noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-hand points (T,21,3) and elbow (T,3) in body units from a motion state."""
    T = state.shape[0]
    lax = signer.laxness
    # Lax signers never fully straighten nor fully close their fingers.
    flex = state[:, FLEX].reshape(T, 5, 3) * (1.0 - 0.15 * lax) + 0.2 * lax + joint_noise
    local = hand_points(flex, state[:, SPREAD], state[:, TABD], state[:, TOPP], signer.fingers)
    rot = rotation(state[:, ORIENT.start], state[:, ORIENT.start + 1], state[:, ORIENT.start + 2])
    shoulder = np.array([-signer.shoulder_width, 0.0, 0.0])
    elbow, wrist = elbow_positions(shoulder, state[:, POS], signer.upper_arm, signer.forearm, _ARM_POLE)
    hand = np.einsum("tij,tpj->tpi", rot, local) * signer.palm + wrist[:, None, :]
    return hand, elbow


def _activity(tau: np.ndarray, entry: float, exit_: float) -> np.ndarray:
    """(T,) 0 at rest .. 1 signing: the hands rise during the entry share and drop during the exit share."""
    up = _smoothstep(tau / entry) if entry > 0 else np.ones_like(tau)
    down = _smoothstep((1.0 - tau) / exit_) if exit_ > 0 else np.ones_like(tau)
    return np.minimum(up, down)


def render_sequence(sign: Sign, signer: Signer, length: int, rng: np.random.Generator, rows: np.ndarray,
                    channels: int, *, hand_miss: float, rest_miss: float, face_miss: float, frame_miss: float,
                    jitter: float) -> np.ndarray:
    """(length, len(rows), channels) float32 frames of `sign` by `signer`, NaN where the detector missed."""
    T = int(length)
    tau = np.linspace(0.0, 1.0, T) if T > 1 else np.array([0.5])
    entry, exit_ = rng.uniform(0.0, 0.3, size=2)
    u = np.clip((tau - entry) / (1.0 - entry - exit_), 0.0, 1.0)
    warp = rng.uniform(-0.5, 0.5)  # uneven pace: |warp| < 1 keeps time monotone
    u = u + warp * np.sin(2.0 * np.pi * u) / (2.0 * np.pi)
    if sign.reverse:
        u = 1.0 - u
    n_seg = len(sign.segments)
    weights = np.array([s.weight for s in sign.segments]) * rng.uniform(0.75, 1.25, size=n_seg)
    bounds = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    place_noise = rng.normal(0.0, 0.04, size=(n_seg, 3))
    amplitude = signer.amplitude * rng.uniform(0.9, 1.1)

    # Motion of the dominant hand (modelled as the right) and of the other hand in its own mirrored frame.
    lateral = -0.3 if sign.hands in ("sym", "alt") else 0.0  # two moving hands keep apart
    dom = _track(sign, u, bounds, signer, place_noise, amplitude, lateral, 0.0)
    if sign.hands in ("sym", "alt"):
        phase = 0.5 / max(s.repeats for s in sign.segments) if sign.hands == "alt" else 0.0
        other = _track(sign, u, bounds, signer, place_noise, amplitude, lateral, phase)
    elif sign.hands == "base":
        other = _static_state(np.asarray(BASE_HAND_POSITION), sign.base_shape, sign.base_orient, T)
    else:
        other = _static_state(REST, "flat", REST_ORIENT, T)
    act = _activity(tau, entry, exit_)
    rest = _static_state(REST, "flat", REST_ORIENT, 1)
    dom = rest + (dom - rest) * act[:, None]
    other = rest + (other - rest) * act[:, None]
    other_active = act if sign.hands != "one" else np.zeros(T)

    right, right_elbow = _hand_and_elbow(dom, signer, rng.normal(0.0, 0.05, size=(5, 3)))
    left, left_elbow = _hand_and_elbow(other, signer, rng.normal(0.0, 0.05, size=(5, 3)))
    left[..., 0] *= -1.0
    left_elbow[:, 0] *= -1.0

    pts = np.empty((T, SOURCE_LAYOUT.num_points, 3))
    pose = np.broadcast_to(pose_template(), (T, NUM_POSE_POINTS, 3)).copy()
    pose[:, [11, 12, 23, 24], 0] *= signer.shoulder_width
    pose[:, 14], pose[:, 16], pose[:, 18], pose[:, 20], pose[:, 22] = right_elbow, right[:, 0], right[:, 17], \
        right[:, 5], right[:, 2]
    pose[:, 13], pose[:, 15], pose[:, 17], pose[:, 19], pose[:, 21] = left_elbow, left[:, 0], left[:, 17], \
        left[:, 5], left[:, 2]
    mouth = dom[:, MOUTH]
    lips = lip_points(mouth[:, 0], mouth[:, 1], mouth[:, 2])
    # The head nods and turns a little on its own; the whole body sways.
    head = 0.03 * smooth_noise(rng, T, (3,), 9)
    pose[:, HEAD_POINTS] += head[:, None, :]
    lips += head[:, None, :]
    pts[:, LIPS_S], pts[:, LEFT_S], pts[:, RIGHT_S], pts[:, POSE_S] = lips, left, right, pose
    pts += 0.04 * smooth_noise(rng, T, (3,), 12)[:, None, :]
    # The detector finds a hand reliably only once it is well up in the signing space.
    active = _smoothstep((np.stack([other_active, act], axis=1) - 0.4) / 0.5)  # (T, 2): left, right
    if signer.left_handed:  # mirror the whole signer: the dominant hand becomes the left hand
        pts[..., 0] *= -1.0
        pts = pts[:, _MIRROR]
        active = active[:, ::-1]

    # Depth the way MediaPipe reports it: hands relative to their wrist, pose to the hips' midpoint, face to itself.
    z_ref = np.empty((T, SOURCE_LAYOUT.num_points))
    z_ref[:, LEFT_S] = pts[:, LEFT_S.start, 2][:, None]
    z_ref[:, RIGHT_S] = pts[:, RIGHT_S.start, 2][:, None]
    z_ref[:, POSE_S] = 0.5 * (pts[:, POSE_S.start + 23, 2] + pts[:, POSE_S.start + 24, 2])[:, None]
    z_ref[:, LIPS_S] = MOUTH_CENTER[2]
    img = np.empty_like(pts)
    img[..., 0] = signer.center_x + signer.unit * pts[..., 0] / signer.aspect
    img[..., 1] = signer.shoulder_y + signer.unit * pts[..., 1]
    img[..., 2] = signer.unit * (pts[..., 2] - z_ref) / signer.aspect

    # Detector misses, in bursts: hands more often when resting or moving fast, always when out of the frame.
    wrists = np.stack([pts[:, LEFT_S.start], pts[:, RIGHT_S.start]], axis=1)  # (T, 2, 3) body units
    speed = np.zeros((T, 2))
    speed[1:] = np.linalg.norm(np.diff(wrists, axis=0), axis=2)
    p_up = np.clip(hand_miss * signer.miss_factor * (0.75 + 2.5 * np.minimum(speed, 0.2)), 0.0, 0.97)
    p_hand = p_up * active + rest_miss * (1.0 - active)
    gone = np.zeros((T, 4), dtype=bool)  # per source part: lips, left hand, right hand, pose
    gone[:, 1:3] = normal_cdf(smooth_noise(rng, T, (2,), 5)) < p_hand
    for h, sl in enumerate((LEFT_S, RIGHT_S)):
        wx, wy = img[:, sl.start, 0], img[:, sl.start, 1]
        gone[:, 1 + h] |= (wx < 0) | (wx > 1) | (wy < 0) | (wy > 1)
    # A hand in front of the mouth hides the lips from the face detector.
    tips = np.stack([pts[:, LEFT_S.start + 8], pts[:, RIGHT_S.start + 8]], axis=1)
    near = np.linalg.norm(tips - MOUTH_CENTER, axis=2).min(axis=1) < 0.35
    gone[:, 0] = normal_cdf(smooth_noise(rng, T, (1,), 4))[:, 0] < face_miss + 0.4 * near
    gone |= (normal_cdf(smooth_noise(rng, T, (1,), 3))[:, 0] < frame_miss)[:, None]

    # Only the requested points from here on: jitter and misses cost per output point.
    out = img[:, rows, :channels]
    part = _SOURCE_PART[rows]
    # Detector jitter: a shared wobble per part plus each point's own, both correlated over a few frames.
    sigma = jitter * signer.jitter_factor * signer.unit
    if sigma > 0:
        shared = smooth_noise(rng, T, (4, channels), 3)[:, part] * _SHARED_JITTER[part, None]
        own = smooth_noise(rng, T, (rows.size, channels), 2) * _OWN_JITTER[part, None]
        scale = np.array([1.0 / signer.aspect, 1.0, 2.0 / signer.aspect])[:channels]  # depth is the noisiest
        out += (sigma * 0.7) * (shared + own) * scale
    out[gone[:, part]] = np.nan
    return out.astype(np.float32)
