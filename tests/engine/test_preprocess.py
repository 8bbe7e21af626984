"""Preprocessing: the compiled batch kernel equals the NumPy per-sample reference for every option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from engine_testing import assert_matches_reference

from slr_fast.engine import BatchProcessor
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.preprocess import FLAG_EMPTY, FLAG_MIRRORED, FLAG_NO_HAND, FLAG_NO_POINTS, PreprocessConfig

OPTIONS = list(itertools.product(["sequence", "part", "none"], ["mean", "linear", "pad"], [True, False]))


@pytest.mark.parametrize("normalize,resample,drop", OPTIONS)
def test_matches_reference(batch, normalize, resample, drop):
    cfg = PreprocessConfig(T=37, normalize=normalize, resample=resample, drop_handless=drop)
    assert_matches_reference(BatchProcessor(DEFAULT_LAYOUT, cfg), *batch)


@pytest.mark.parametrize("mask,level", [("channel", "point"), ("separate", "part"), ("channel", "part")])
def test_mask_modes_match_reference(batch, mask, level):
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16, mask=mask, mask_level=level))
    got = assert_matches_reference(bp, *batch)
    if mask == "channel":
        assert got["x"].shape[-1] == 3
        np.testing.assert_array_equal(got["x"][..., 2], got["mask"])


@pytest.mark.parametrize("dominant,normalize,augment", [("right", "sequence", None), ("left", "none", None),
                                                        ("right", "part", "full")])
def test_dominant_hand_matches_reference(batch, dominant, normalize, augment):
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=24, normalize=normalize, dominant_hand=dominant),
                        augment, seed=3)
    got = assert_matches_reference(bp, *batch, epoch=2)
    mirrored = (got["flags"] & FLAG_MIRRORED) > 0
    assert 3 <= mirrored.sum() <= len(mirrored) - 3  # both hands random walks: some sequences turn, some do not


# ---------------------------------------------------------------------------------------------- what steps do
def one(bp, seq, epoch=0):
    offsets = np.array([0, len(seq)])
    return {k: v[0] for k, v in bp.process(seq, offsets, np.array([0]), epoch, bp.alloc(1)).items()}


def test_sequence_normalization_centres_and_scales(make_ragged):
    frames, offsets = make_ragged([50], missing=0.2, handless=0.0)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=64, resample="pad", drop_handless=False)), frames)
    pts = r["x"][:50][r["mask"][:50] > 0]  # (k, 2) present points
    np.testing.assert_allclose(pts.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt((pts**2).mean()), 1.0, rtol=1e-5)


def test_part_normalization_centres_each_part(make_ragged):
    frames, _ = make_ragged([40], handless=0.0)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=64, normalize="part", resample="pad")), frames)
    for name, sl in DEFAULT_LAYOUT.part_slices().items():
        m = r["mask"][:40, sl] > 0
        pts = r["x"][:40, sl][m]
        np.testing.assert_allclose(pts.mean(axis=0), 0.0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.sqrt((pts**2).mean()), 1.0, rtol=1e-5, err_msg=name)


def test_mean_resample_averages_windows_and_stretch_repeats(make_ragged):
    frames, _ = make_ragged([32], missing=0.0, handless=0.0)
    cfg = dict(normalize="none", drop_handless=False)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16, **cfg)), frames)
    np.testing.assert_allclose(r["x"], frames.reshape(16, 2, 87, 2).mean(axis=1), rtol=1e-6)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=64, **cfg)), frames)
    np.testing.assert_array_equal(r["x"], np.repeat(frames, 2, axis=0))  # 32 -> 64: each frame twice


def test_linear_resample_keeps_endpoints(make_ragged):
    frames, _ = make_ragged([50], missing=0.0, handless=0.0)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=20, resample="linear", normalize="none")), frames)
    np.testing.assert_array_equal(r["x"][0], frames[0])
    np.testing.assert_array_equal(r["x"][-1], frames[-1])


def test_drop_handless_removes_exactly_the_handless_frames(make_ragged):
    frames, _ = make_ragged([30], missing=0.0, handless=0.0)
    hands = np.r_[DEFAULT_LAYOUT.part_slices()["left_hand"], DEFAULT_LAYOUT.part_slices()["right_hand"]]
    for f in (0, 5, 6, 29):
        frames[f, hands] = np.nan
    frames[7, DEFAULT_LAYOUT.part_slices()["left_hand"]] = np.nan  # one hand visible: kept
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=64, resample="pad", normalize="none")), frames)
    keep = [f for f in range(30) if f not in (0, 5, 6, 29)]
    assert r["length"] == len(keep)
    np.testing.assert_array_equal(r["x"][:len(keep)], np.nan_to_num(frames[keep]))
    assert r["flags"] == 0


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("resample", ["mean", "linear", "pad"])
def test_empty_sequence_gives_zeros_and_flag(resample):
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=8, resample=resample))
    r = one(bp, np.zeros((0, 87, 2), np.float32))
    assert r["length"] == 0 and r["flags"] == FLAG_EMPTY
    assert not r["x"].any() and not r["mask"].any()


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("resample", ["mean", "linear", "pad"])
def test_one_and_two_frames(make_ragged, n, resample):
    frames, _ = make_ragged([n], missing=0.0, handless=0.0)
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=5, resample=resample, normalize="none"))
    r = one(bp, frames)
    assert r["length"] == (n if resample == "pad" else 5)
    assert np.isfinite(r["x"]).all() and r["mask"][: r["length"]].all()
    np.testing.assert_array_equal(r["x"][0], frames[0])
    np.testing.assert_array_equal(r["x"][r["length"] - 1], frames[-1])


def test_T1(make_ragged):
    frames, _ = make_ragged([9], missing=0.0, handless=0.0)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=1, normalize="none")), frames)
    np.testing.assert_allclose(r["x"][0], frames.mean(axis=0), rtol=1e-6)  # one window: the whole sequence
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=1, normalize="none", resample="linear")), frames)
    np.testing.assert_array_equal(r["x"][0], frames[4])  # the middle frame


def test_all_nan_part_and_all_nan_sequence(make_ragged):
    frames, _ = make_ragged([12], handless=0.0)
    lips = DEFAULT_LAYOUT.part_slices()["lips"]
    frames[:, lips] = np.nan
    for normalize in ("sequence", "part", "none"):
        r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16, normalize=normalize)), frames)
        assert np.isfinite(r["x"]).all() and not r["mask"][:, lips].any() and r["mask"].any()
    r = one(BatchProcessor(DEFAULT_LAYOUT), np.full((12, 87, 2), np.nan, np.float32))
    assert r["flags"] == FLAG_NO_HAND | FLAG_NO_POINTS and r["length"] == 64
    assert not r["x"].any() and not r["mask"].any()


def test_no_hand_anywhere_keeps_all_frames(make_ragged):
    frames, _ = make_ragged([10], handless=1.0)
    r = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16, resample="pad")), frames)
    assert r["flags"] == FLAG_NO_HAND and r["length"] == 10 and r["mask"][:10].any()


@pytest.mark.parametrize("normalize", ["sequence", "part", "none"])
def test_inf_and_huge_coordinates(make_ragged, normalize):
    frames, _ = make_ragged([20], missing=0.0, handless=0.0)
    frames[3, 50, 0] = np.inf
    frames[4, 51, 1] = -np.inf
    frames[5, 52] = 1e30
    frames[6, 53] = 3e38
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=32, resample="pad", normalize=normalize),
                        [{"op": "scale", "min_scale": 1.5, "max_scale": 1.5}])
    r = one(bp, frames)
    assert np.isfinite(r["x"]).all()
    assert r["mask"][3, 50] == 0 and r["mask"][4, 51] == 0  # inf: a missing point, never a value
    assert r["mask"][5, 52] == 1  # huge but finite stays a point
    if normalize == "none":
        assert r["mask"][6, 53] == 0  # 3e38 * 1.5 overflows float32: marked missing, not inf
    assert_matches_reference(bp, frames, np.array([0, 20]))


def test_bad_arguments_are_named():
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=4))
    frames = np.zeros((10, 87, 2), np.float32)
    with pytest.raises(ValueError, match=r"frames must be \(F, 87, 2\)"):
        bp.process(np.zeros((10, 86, 2), np.float32), np.array([0, 10]), np.array([0]), 0, bp.alloc(1))
    with pytest.raises(ValueError, match="offsets must be non-decreasing"):
        bp.process(frames, np.array([0, 5, 3]), np.array([0]), 0, bp.alloc(1))
    with pytest.raises(ValueError, match="offsets must be non-decreasing"):
        bp.process(frames, np.array([0, 11]), np.array([0]), 0, bp.alloc(1))
    with pytest.raises(IndexError, match=r"indices \[2\] outside 0..1"):
        bp.process(frames, np.array([0, 5, 10]), np.array([0, 2]), 0, bp.alloc(2))
    with pytest.raises(ValueError, match=r"out\['x'\] must be"):
        bp.process(frames, np.array([0, 10]), np.array([0, 0]), 0, bp.alloc(1))
    with pytest.raises(ValueError, match="epoch"):
        bp.process(frames, np.array([0, 10]), np.array([0]), -1, bp.alloc(1))
    with pytest.raises(ValueError, match="seed"):
        BatchProcessor(DEFAULT_LAYOUT, seed=-3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(T=0), "T must be a positive integer"),
    (dict(normalize="zscore"), r"normalize='zscore' is not one of \['sequence', 'part', 'none'\]"),
    (dict(resample="cubic"), "resample='cubic'"),
    (dict(mask="both"), "mask='both'"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PreprocessConfig(**kwargs)
    with pytest.raises(ValueError, match=r"unknown PreprocessConfig keys \['t'\]"):
        PreprocessConfig.from_dict({"t": 3})


def _mirrored(frames: np.ndarray) -> np.ndarray:
    """The signer filmed in a mirror: x -> 1 - x, left and right points swapped."""
    out = frames[:, DEFAULT_LAYOUT.mirror_index()].copy()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def test_dominant_hand_turns_a_left_handed_signer_into_a_right_handed_one(make_ragged):
    frames, _ = make_ragged([40], missing=0.1, handless=0.0, seed=5)
    sl = DEFAULT_LAYOUT.part_slices()
    right, left = sl["right_hand"], sl["left_hand"]
    # A right-handed sign: the right hand travels, the left hand rests (a little jitter).
    frames[:, right] += np.linspace(0.0, 0.5, 40, dtype=np.float32)[:, None, None]
    frames[:, left] = frames[:1, left] + np.random.default_rng(0).normal(0, 1e-3, frames[:, left].shape)
    lefty = _mirrored(frames)  # the same sign by a left-handed signer
    cfg = dict(T=32, drop_handless=False)
    keep = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(**cfg))
    canon = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(**cfg, dominant_hand="right"))
    a, b = one(keep, frames), one(keep, lefty)
    assert not np.allclose(a["x"], b["x"], atol=1e-3)  # as recorded, the two differ
    ca, cb = one(canon, frames), one(canon, lefty)
    assert ca["flags"] & FLAG_MIRRORED == 0 and cb["flags"] & FLAG_MIRRORED
    np.testing.assert_array_equal(ca["x"], a["x"])  # already right-handed: untouched
    np.testing.assert_allclose(cb["x"], ca["x"], atol=1e-5)  # the left-handed one now reads the same
    np.testing.assert_array_equal(cb["mask"], ca["mask"])
    # "left" canonicalizes the other way: now the right-handed one is turned.
    cl = one(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(**cfg, dominant_hand="left")), frames)
    assert cl["flags"] & FLAG_MIRRORED
    np.testing.assert_allclose(cl["x"], b["x"], atol=1e-5)


def test_dominant_hand_needs_both_hands():
    from slr_fast.errors import UserInputError
    from slr_fast.layout import Layout, Part

    one_hand = Layout((Part("right_hand", "right_hand", tuple(range(21))),), name="one_hand")
    with pytest.raises(UserInputError, match="dominant_hand='right' needs a layout with both hands"):
        BatchProcessor(one_hand, PreprocessConfig(dominant_hand="right"))
    with pytest.raises(ValueError, match=r"dominant_hand='both' is not one of \['keep', 'right', 'left'\]"):
        PreprocessConfig(dominant_hand="both")
