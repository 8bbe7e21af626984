"""Hand forward kinematics, palm rotations, lips and arm inverse kinematics: geometric properties."""

from __future__ import annotations

import numpy as np
import pytest

from slr_fast.layout import LIPS, make_layout
from slr_fast.synth.body import LIP_INDEX, elbow_positions, lip_points
from slr_fast.synth.hand import _BONES, _THUMB_BONES, HANDSHAPE_NAMES, HANDSHAPES, hand_points, rotation, shape_params

FINGER_CHAINS = [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)]


def shape_points(name: str) -> np.ndarray:
    p = shape_params([name])
    return hand_points(p["flex"], p["spread"], p["thumb_abd"], p["thumb_opp"])[0]


def test_bone_lengths_are_kept_for_any_joint_angles():
    rng = np.random.default_rng(0)
    T = 50
    flex = rng.uniform(-0.3, 1.8, size=(T, 5, 3))
    pts = hand_points(flex, rng.uniform(0, 1, T), rng.uniform(0, 1.4, T), rng.uniform(0, 1.1, T))
    assert pts.shape == (T, 21, 3)
    assert np.allclose(pts[:, 0], 0.0)  # the wrist is the origin
    want = np.vstack([_THUMB_BONES, _BONES])
    for f, chain in enumerate(FINGER_CHAINS):
        got = np.linalg.norm(np.diff(pts[:, list(chain)], axis=1), axis=2)  # (T, 3)
        np.testing.assert_allclose(got, np.broadcast_to(want[f], got.shape), atol=1e-12)


def test_handshapes_fold_the_right_fingers():
    mcp_tip = [(5, 8), (9, 12), (13, 16), (17, 20)]

    def extension(pts):  # tip distance from the wrist relative to its knuckle's: > 1.5 extended, < 1.2 folded
        return np.array([np.linalg.norm(pts[t]) / np.linalg.norm(pts[m]) for m, t in mcp_tip])

    expected = {"flat": "EEEE", "fist": "FFFF", "point": "EFFF", "V": "EEFF", "W": "EEEF", "Y": "FFFE",
                "I": "FFFE", "horns": "EFFE", "L": "EFFF", "open": "EEEE"}
    for name, code in expected.items():
        ext = extension(shape_points(name))
        for finger, c in enumerate(code):
            if c == "E":
                assert ext[finger] > 1.5, (name, finger, ext)
            else:
                assert ext[finger] < 1.2, (name, finger, ext)


def test_thumb_meets_index_in_O_and_stands_out_in_L():
    o, lshape = shape_points("O"), shape_points("L")
    assert np.linalg.norm(o[4] - o[8]) < 0.2  # pinch: thumb tip at the index tip (palm units)
    assert lshape[4, 0] - lshape[2, 0] > 0.3  # thumb points sideways, away from the palm


def test_spread_opens_the_fingers():
    flat, open_ = shape_points("flat"), shape_points("open")
    assert np.linalg.norm(open_[8] - open_[20]) > 1.3 * np.linalg.norm(flat[8] - flat[20])


def test_unknown_handshape_is_named():
    with pytest.raises(ValueError, match="'Q'"):
        shape_params(["flat", "Q"])
    assert set(HANDSHAPE_NAMES) == set(HANDSHAPES) and len(HANDSHAPES) >= 12


def test_rotations_are_proper_and_turn_the_palm():
    rng = np.random.default_rng(1)
    r = rotation(*rng.uniform(-3, 3, size=(3, 20)))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    normal = np.array([0.0, 0.0, -1.0])  # palm towards the camera
    side = rotation(np.array([-np.pi / 2]), np.zeros(1), np.zeros(1))[0] @ normal
    np.testing.assert_allclose(side, [1.0, 0.0, 0.0], atol=1e-12)  # a right palm turned to the midline (+x)
    down = rotation(np.zeros(1), np.array([np.pi / 2]), np.zeros(1))[0]
    np.testing.assert_allclose(down @ [0.0, -1.0, 0.0], [0.0, 0.0, -1.0], atol=1e-12)  # fingers forward
    np.testing.assert_allclose(down @ normal, [0.0, 1.0, 0.0], atol=1e-12)  # palm down


def test_lips_open_close_and_are_mirror_symmetric():
    opening = np.array([0.0, 0.5, 1.0])
    pts = lip_points(opening, np.ones(3), np.zeros(3))
    assert pts.shape == (3, 40, 3)
    up, low = pts[:, LIP_INDEX[13]], pts[:, LIP_INDEX[14]]  # inner lip midpoints
    gap = low[:, 1] - up[:, 1]
    assert abs(gap[0]) < 1e-9 and 0 < gap[1] < gap[2]  # closed mouth: inner lips touch; opening grows the gap
    layout = make_layout()
    mirror = layout.mirror_index()[:40]  # lips come first in the default layout
    np.testing.assert_allclose(pts[:, mirror, 0], -pts[:, :, 0], atol=1e-12)
    np.testing.assert_allclose(pts[:, mirror, 1], pts[:, :, 1], atol=1e-12)
    assert pts[0, LIP_INDEX[61], 0] < pts[0, LIP_INDEX[291], 0]  # 61 is the signer's right corner (image left)
    assert len(LIP_INDEX) == len(LIPS)


def test_round_lips_are_narrower():
    wide = lip_points(np.array([0.3]), np.array([1.0]), np.zeros(1))
    round_ = lip_points(np.array([0.3]), np.array([0.7]), np.zeros(1))
    width = lambda p: p[0, LIP_INDEX[291], 0] - p[0, LIP_INDEX[61], 0]
    assert width(round_) == pytest.approx(0.7 * width(wide))


def test_elbow_respects_arm_lengths_and_reach():
    shoulder = np.array([-1.0, 0.0, 0.0])
    rng = np.random.default_rng(2)
    wrist = shoulder + rng.normal(0, 1.5, size=(200, 3))
    upper, fore = 1.45, 1.25
    pole = np.array([-0.5, 1.0, 0.3]) / np.linalg.norm([-0.5, 1.0, 0.3])
    elbow, reached = elbow_positions(shoulder, wrist, upper, fore, pole)
    np.testing.assert_allclose(np.linalg.norm(elbow - shoulder, axis=1), upper, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(reached - elbow, axis=1), fore, atol=1e-9)
    dist = np.linalg.norm(wrist - shoulder, axis=1)
    inside = (dist < 0.98 * (upper + fore)) & (dist > upper - fore + 0.06)
    np.testing.assert_allclose(reached[inside], wrist[inside], atol=1e-9)  # reachable wrists are kept
    # Unreachable ones are pulled back along the same direction.
    far = ~inside & (dist > upper)
    cos = np.sum((reached[far] - shoulder) * (wrist[far] - shoulder), axis=1) / (
        np.linalg.norm(reached[far] - shoulder, axis=1) * dist[far])
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)
