"""The generator: determinism, layouts, realism (lengths, misses, handedness, arms), signer splits, bad configs."""

from __future__ import annotations

import numpy as np
import pytest

from slr_fast.layout import Layout, Part, get_layout
from slr_fast.synth import SynthConfig, class_names, generate, make_signers, make_vocabulary
from slr_fast.synth.signer import assign_splits

QUIET = {"hand_miss_rate": 0.0, "rest_miss_rate": 0.0, "face_miss_rate": 0.0, "frame_miss_rate": 0.0, "jitter": 0.0}


def hand_slices(layout: Layout) -> tuple[slice, slice]:
    s = layout.part_slices()
    return s["left_hand"], s["right_hand"]


def test_same_seed_same_data_other_seed_other_data():
    cfg = SynthConfig(classes=5, per_class=4, signers=3, seed=11)
    a, b = list(generate(cfg)), list(generate(SynthConfig(classes=5, per_class=4, signers=3, seed=11)))
    c = list(generate(SynthConfig(classes=5, per_class=4, signers=3, seed=12)))
    assert len(a) == 20
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.frames, y.frames, equal_nan=True)
        assert (x.label, x.signer, x.seq_id, x.split) == (y.label, y.signer, y.seq_id, y.split)
    differ = [x.frames.shape != z.frames.shape or not np.array_equal(x.frames, z.frames, equal_nan=True)
              for x, z in zip(a, c, strict=True)]
    assert all(differ)


def test_a_slice_of_the_order_equals_the_full_run():
    cfg = SynthConfig(classes=4, per_class=5, signers=3)
    full = list(generate(cfg))
    part = list(generate(cfg, start=7, stop=12))
    assert [p.seq_id for p in part] == [f.seq_id for f in full[7:12]]
    for p, f in zip(part, full[7:12], strict=True):
        assert np.array_equal(p.frames, f.frames, equal_nan=True)


def test_sample_structure(small_samples, small_config):
    layout = small_config.get_layout()
    assert len(small_samples) == small_config.classes * small_config.per_class
    for s in small_samples:
        assert s.frames.dtype == np.float32 and s.frames.ndim == 3
        assert s.frames.shape[1:] == (layout.num_points, layout.num_channels)
        assert not np.isinf(s.frames).any()
    labels = np.array([s.label for s in small_samples])
    assert np.array_equal(np.bincount(labels), np.full(small_config.classes, small_config.per_class))
    assert len({s.seq_id for s in small_samples}) == len(small_samples)
    assert class_names(small_config)[:3] == ["sign_000", "sign_001", "sign_002"]


def test_points_are_mediapipe_like(small_samples, small_config):
    frames = np.concatenate([s.frames for s in small_samples])
    left, right = hand_slices(small_config.get_layout())
    hands = frames[:, np.r_[left, right]]
    # Hands are only reported inside the image; the skeleton stays in the normalized range.
    wrists = frames[:, [left.start, right.start]]
    ok = ~np.isnan(wrists[..., 0])
    assert ((wrists[ok] >= 0) & (wrists[ok] <= 1)).all()
    assert np.nanmin(hands) > -0.2 and np.nanmax(hands) < 1.2
    pose = small_config.get_layout().part_slices()["pose"]
    nose, l_sh, r_sh = frames[:, pose.start], frames[:, pose.start + 1], frames[:, pose.start + 2]
    assert np.nanmean(nose[:, 1]) < np.nanmean(l_sh[:, 1])  # y grows downwards: the head is above the shoulders
    seen = ~np.isnan(l_sh[:, 0]) & ~np.isnan(r_sh[:, 0])
    assert (l_sh[seen, 0] > r_sh[seen, 0]).all()  # pose 11 (signer's left) on the image right


def test_lengths_are_varied_and_in_range(small_samples, small_config):
    lengths = np.array([s.frames.shape[0] for s in small_samples])
    assert lengths.min() >= small_config.min_length and lengths.max() <= small_config.max_length
    p5, p50, p95 = np.percentile(lengths, [5, 50, 95])
    assert 25 <= p50 <= 65 and p95 / p5 > 3  # log-normal around ~40 frames with a long tail
    short = SynthConfig(classes=3, per_class=3, signers=3, length_median=4, min_length=2, max_length=6)
    assert all(2 <= s.frames.shape[0] <= 6 for s in generate(short))


def test_hands_go_missing_in_bursts_about_a_third(small_samples, small_config):
    frames = np.concatenate([s.frames for s in small_samples])
    left, right = hand_slices(small_config.get_layout())
    for sl in (left, right):
        nan = np.isnan(frames[:, sl, 0])
        assert np.array_equal(nan.all(axis=1), nan.any(axis=1))  # a hand is missed whole, as MediaPipe does
    no_hand = np.isnan(frames[:, left, 0]).all(1) & np.isnan(frames[:, right, 0]).all(1)
    assert 0.2 < no_hand.mean() < 0.45
    # Bursts: runs of missing frames (within sequences) are on average clearly longer than one frame.
    runs = []
    for s in small_samples:
        miss = np.isnan(s.frames[:, right.start, 0]).astype(np.int8)
        edges = np.diff(np.concatenate([[0], miss, [0]]))
        runs.extend(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    assert np.mean(runs) > 2.0
    lips = small_config.get_layout().part_slices()["lips"]
    lips_gone = np.isnan(frames[:, lips, 0]).all(1).mean()
    assert 0.0 < lips_gone < 0.15


def test_no_detector_noise_means_no_misses():
    cfg = SynthConfig(classes=4, per_class=3, signers=3, **QUIET)
    for s in generate(cfg):
        left, right = hand_slices(cfg.get_layout())
        dom = right if not make_signers(cfg)[s.signer].left_handed else left
        core = s.frames[s.frames.shape[0] // 3: 2 * s.frames.shape[0] // 3]  # mid-sign: the hand is up
        assert not np.isnan(core[:, dom]).any()
        assert not np.isnan(s.frames[:, 40:]).all(axis=(1, 2)).any()  # no whole-frame drop-outs


def test_left_handed_signers_sign_with_the_left_hand():
    cfg = SynthConfig(classes=8, per_class=8, signers=4, left_handed=0.5, split=(1, 0, 0), **QUIET)
    signers = make_signers(cfg)
    assert sum(s.left_handed for s in signers) == 2
    left, right = hand_slices(cfg.get_layout())
    vocab = make_vocabulary(cfg.classes, cfg.seed)
    motion = {True: [], False: []}
    for s in generate(cfg):
        if vocab[s.label].hands not in ("one", "base"):  # only one hand moves in these
            continue
        travel = [np.nansum(np.linalg.norm(np.diff(s.frames[:, sl.start], axis=0), axis=1)) for sl in (left, right)]
        motion[signers[s.signer].left_handed].append(travel[0] - travel[1])
    assert len(motion[True]) > 5 and len(motion[False]) > 5
    assert (np.array(motion[True]) > 0).all()  # the left hand does the moving
    assert (np.array(motion[False]) < 0).all()


def test_arm_and_z_layouts_keep_the_arm_consistent():
    """Pose wrist = hand wrist, and the forearm keeps its length in 3D (depth from the z channel)."""
    cfg = SynthConfig(classes=3, per_class=3, signers=3, layout="arm_z", **QUIET)
    layout = get_layout("arm_z")
    assert cfg.get_layout() == layout
    signers = make_signers(cfg)
    pose = layout.part_slices()["pose"]
    left = layout.part_slices()["left_hand"]
    for s in generate(cfg):
        f = s.frames.astype(np.float64)
        assert f.shape[2] == 3
        elbow, wrist = f[:, pose.start], f[:, pose.start + 1]  # arm preset: 13 elbow, 15 wrist (signer's left)
        ok = ~np.isnan(f[:, left.start, 0])
        np.testing.assert_allclose(wrist[ok, :2], f[ok, left.start, :2], atol=1e-6)
        np.testing.assert_allclose(f[ok, left.start, 2], 0.0, atol=1e-6)  # hand depth is relative to its wrist
        sg = signers[s.signer]
        d = (wrist - elbow) * np.array([sg.aspect, 1.0, sg.aspect])  # undo the image's width normalization
        length = np.linalg.norm(d, axis=1) / sg.unit
        np.testing.assert_allclose(length, sg.forearm, rtol=1e-4)


def test_signers_split_whole_and_every_class_everywhere(small_samples, small_config):
    split_of = {}
    for s in small_samples:
        assert split_of.setdefault(s.signer, s.split) == s.split
    codes = np.array(list(split_of.values()))
    assert set(codes.tolist()) == {0, 1, 2} and len(split_of) == small_config.signers
    for code in range(3):
        labels = {s.label for s in small_samples if s.split == code}
        assert labels == set(range(small_config.classes))


@pytest.mark.parametrize("n, shares", [(12, (0.7, 0.15, 0.15)), (3, (0.8, 0.1, 0.1)), (5, (1, 0, 0)), (40, (6, 2, 2))])
def test_assign_splits(n, shares):
    codes = assign_splits(n, shares, seed=0)
    counts = np.bincount(codes, minlength=3)
    assert counts.sum() == n
    for i, share in enumerate(shares):
        assert (counts[i] > 0) == (share > 0)
    if n == 40:
        assert counts.tolist() == [24, 8, 8]
    assert np.array_equal(codes, assign_splits(n, shares, seed=0))


def test_vocabulary_families_and_prefix_stability():
    small, big = make_vocabulary(10, seed=3), make_vocabulary(30, seed=3)
    assert small == big[:10]
    for a, b in zip(big[0::2], big[1::2], strict=True):  # family_size 2: the same segments, played backwards
        assert a.family == b.family and a.segments == b.segments and a.reverse != b.reverse
    fams = make_vocabulary(12, seed=3, family_size=4)
    orders = {tuple(s.location for s in sign.segments) + (sign.reverse,) for sign in fams[:4]}
    assert len(orders) == 4
    keys = {(s.hands,) + tuple((g.location, g.movement, g.shape_start) for g in s.segments) for s in big[0::2]}
    assert len(keys) == 15  # families are distinct


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": 0}, "classes"),
    ({"per_class": -1}, "per_class"),
    ({"hand_miss_rate": 1.5}, "hand_miss_rate"),
    ({"min_length": 10, "max_length": 5}, "min_length"),
    ({"family_size": 5}, "family_size"),
    ({"split": (0.5, 0.5)}, "split"),
    ({"layout": "nope"}, "nope"),
    ({"layout": Layout(parts=(Part("face", "face", (1, 61)),))}, r"face indices \[1\]"),
])
def test_bad_config_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SynthConfig(**kwargs)
