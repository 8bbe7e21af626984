"""Augmentation: every op equals its NumPy reference and does what it must to the data; randomness is reproducible."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from engine_testing import assert_matches_reference

from slr_fast.augment import OPS, AugmentPipeline, default_pipeline, load_pipeline, named_pipeline
from slr_fast.engine import BatchProcessor
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.preprocess import PreprocessConfig

SL = DEFAULT_LAYOUT.part_slices()
PAD = PreprocessConfig(T=256, resample="pad", drop_handless=False)  # output frame t = augmented frame t


def run(bp, frames, offsets, epoch=0, ids=None):
    idx = np.arange(len(offsets) - 1)
    return bp.process(frames, offsets, idx, epoch, bp.alloc(len(idx)), sample_ids=ids)


def check_reference(bp, frames, offsets, epoch=0):
    return assert_matches_reference(bp, frames, offsets, epoch, check_flags=False)


def pair(ops, pc=PAD, seed=3):
    """(plain, augmented) processors on the same preprocessing."""
    return BatchProcessor(DEFAULT_LAYOUT, pc, None, seed), BatchProcessor(DEFAULT_LAYOUT, pc, ops, seed)


@pytest.mark.parametrize("op", sorted(OPS))
def test_each_op_equals_reference(batch, op):
    check_reference(BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=37), [{"op": op}], seed=5), *batch, epoch=2)


@pytest.mark.parametrize("op", ["scale", "rotate", "mirror", "part_distort", "detector_noise", "time_warp"])
def test_ops_with_z_equal_reference(make_ragged, z_layout, op):
    frames, offsets = make_ragged([0, 1, 2, 30, 90], layout=z_layout)
    check_reference(BatchProcessor(z_layout, PreprocessConfig(T=20, resample="linear"), [{"op": op}]), frames, offsets)


def test_full_pipeline_equals_reference(batch):
    for normalize in ("sequence", "part", "none"):
        bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=32, normalize=normalize), "full", seed=11)
        for epoch in (0, 1):
            check_reference(bp, *batch, epoch=epoch)


# ------------------------------------------------------------------------------------------------ determinism
def test_same_batch_whatever_threads_composition_and_resume(batch):
    frames, offsets = batch
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=32), "full", seed=7)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(bp, frames, offsets, epoch=4)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run(bp, frames, offsets, epoch=4)
    finally:
        numba.set_num_threads(before)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])
    # A different batch composition: the same sample id gives the same sample.
    sub = bp.process(frames, offsets, np.array([9, 3]), 4, bp.alloc(2))
    np.testing.assert_array_equal(sub["x"], one["x"][[9, 3]])
    # A fresh processor (a resumed run) reproduces epoch 4; epoch 5 differs.
    again = run(BatchProcessor.from_config(bp.config()), frames, offsets, epoch=4)
    np.testing.assert_array_equal(again["x"], one["x"])
    assert not np.array_equal(run(bp, frames, offsets, epoch=5)["x"], one["x"])
    # Randomness follows the sample id, not the row: the loader passes global dataset indices.
    shifted = run(bp, frames, offsets, epoch=4, ids=np.arange(len(offsets) - 1) + 1000)
    assert not np.array_equal(shifted["x"], one["x"])


def test_probability_zero_is_identity(batch):
    plain, aug = pair([{"op": name, "p": 0.0} for name in sorted(OPS)], PreprocessConfig(T=32))
    np.testing.assert_array_equal(run(plain, *batch)["x"], run(aug, *batch)["x"])


def test_probability_is_respected(make_ragged):
    frames, offsets = make_ragged([20] * 400, handless=0.0)
    plain, aug = pair([{"op": "noise", "p": 0.3, "std": 0.1}], PreprocessConfig(T=20))
    changed = (run(plain, frames, offsets)["x"] != run(aug, frames, offsets)["x"]).any(axis=(1, 2, 3))
    assert 0.23 < changed.mean() < 0.37  # binomial(400, 0.3): +-3.3 sigma


# ----------------------------------------------------------------------------------------------- op semantics
def test_mirror_twice_is_identity_and_swaps_hands(make_ragged):
    frames, offsets = make_ragged([25, 40], handless=0.0)
    plain, twice = pair([{"op": "mirror"}, {"op": "mirror"}])
    a, b = run(plain, frames, offsets), run(twice, frames, offsets)
    np.testing.assert_array_equal(a["x"], b["x"])
    once = run(pair([{"op": "mirror"}])[1], frames, offsets)
    np.testing.assert_array_equal(once["x"][:, :, SL["left_hand"], 0], -a["x"][:, :, SL["right_hand"], 0])
    np.testing.assert_array_equal(once["x"][:, :, SL["left_hand"], 1], a["x"][:, :, SL["right_hand"], 1])
    np.testing.assert_array_equal(once["mask"][:, :, SL["left_hand"]], a["mask"][:, :, SL["right_hand"]])
    mirror = DEFAULT_LAYOUT.mirror_index()
    np.testing.assert_array_equal(once["x"][..., 1], a["x"][:, :, mirror, 1])  # lips and pose pairs swap too


def test_scale_multiplies_the_spread(make_ragged):
    frames, offsets = make_ragged([30, 50])
    plain, scaled = pair([{"op": "scale", "min_scale": 1.5, "max_scale": 1.5, "aspect": 0.0}])
    a, b = run(plain, frames, offsets), run(scaled, frames, offsets)
    np.testing.assert_allclose(b["x"], 1.5 * a["x"], rtol=1e-6, atol=1e-6)
    assert np.std(b["x"][a["mask"] > 0]) == pytest.approx(1.5 * np.std(a["x"][a["mask"] > 0]), rel=1e-5)


def test_rotation_keeps_distances_in_plane_and_3d(make_ragged, z_layout):
    frames, offsets = make_ragged([30])
    plain, rot = pair([{"op": "rotate", "yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 90.0}])
    a, b = run(plain, frames, offsets)["x"][0, :30], run(rot, frames, offsets)["x"][0, :30]
    np.testing.assert_allclose(np.linalg.norm(b, axis=-1), np.linalg.norm(a, axis=-1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, b)
    frames, offsets = make_ragged([30], layout=z_layout)
    pc = PreprocessConfig(T=64, resample="pad", drop_handless=False)
    a = run(BatchProcessor(z_layout, pc), frames, offsets)["x"][0, :30]
    b = run(BatchProcessor(z_layout, pc, [{"op": "rotate", "yaw_deg": 60.0}]), frames, offsets)["x"][0, :30]
    np.testing.assert_allclose(np.linalg.norm(b, axis=-1), np.linalg.norm(a, axis=-1), rtol=1e-5, atol=1e-6)
    # Without z a yaw can only foreshorten: |x| never grows and y is untouched.
    plain, yaw = pair([{"op": "rotate", "yaw_deg": 60.0, "pitch_deg": 0.0, "roll_deg": 0.0}])
    frames, offsets = make_ragged([30])
    a, b = run(plain, frames, offsets)["x"][0], run(yaw, frames, offsets)["x"][0]
    np.testing.assert_array_equal(a[..., 1], b[..., 1])
    assert (np.abs(b[..., 0]) <= np.abs(a[..., 0]) + 1e-7).all() and not np.array_equal(a, b)


def test_time_warp_keeps_first_and_last_frames(make_ragged):
    frames, offsets = make_ragged([40] * 30, missing=0.0, handless=0.0)
    plain, warp = pair([{"op": "time_warp", "min_speed": 0.5, "max_speed": 2.0}])
    a, b = run(plain, frames, offsets), run(warp, frames, offsets)
    L = b["length"]
    assert ((L >= 39 / 2.0 + 1 - 0.5) & (L <= 39 / 0.5 + 1 + 0.5)).all() and len(set(L.tolist())) > 5
    for i in range(30):
        np.testing.assert_array_equal(b["x"][i, 0], a["x"][i, 0])
        np.testing.assert_allclose(b["x"][i, L[i] - 1], a["x"][i, 39], rtol=1e-6, atol=1e-7)


def _clock(n_seqs, n):
    """Sequences whose x coordinate of every point is the frame number (y random), so time maps are visible."""
    frames = np.zeros((n_seqs * n, 87, 2), np.float32)
    frames[..., 0] = np.tile(np.arange(n, dtype=np.float32), n_seqs)[:, None]
    frames[..., 1] = np.random.default_rng(0).random(frames.shape[:2])
    return frames, np.arange(n_seqs + 1) * n


def test_speed_change_is_monotone_and_keeps_ends():
    frames, offsets = _clock(20, 50)
    pc = PreprocessConfig(T=64, resample="pad", drop_handless=False, normalize="none")
    r = run(BatchProcessor(DEFAULT_LAYOUT, pc, [{"op": "speed_change", "strength": 1.0}]), frames, offsets)
    t = r["x"][:, :50, 0, 0]
    assert (r["length"] == 50).all() and (t[:, 0] == 0).all() and np.allclose(t[:, -1], 49)
    assert (np.diff(t, axis=1) >= 0).all() and not np.allclose(t, np.arange(50))


def test_temporal_crop_is_a_contiguous_window():
    frames, offsets = _clock(20, 50)
    pc = PreprocessConfig(T=64, resample="pad", drop_handless=False, normalize="none")
    r = run(BatchProcessor(DEFAULT_LAYOUT, pc, [{"op": "temporal_crop", "min_frac": 0.6}]), frames, offsets)
    assert ((r["length"] >= 30) & (r["length"] <= 50)).all() and (r["length"] < 50).any()
    for i, L in enumerate(r["length"]):
        t = r["x"][i, :L, 0, 0]
        np.testing.assert_array_equal(np.diff(t), 1.0)
        assert 0 <= t[0] and t[-1] <= 49


def test_noise_has_the_requested_std(make_ragged):
    frames, offsets = make_ragged([60] * 10, handless=0.0)
    plain, noisy = pair([{"op": "noise", "std": 0.05}])
    a, b = run(plain, frames, offsets), run(noisy, frames, offsets)
    d = (b["x"] - a["x"])[a["mask"] > 0]
    assert d.std() == pytest.approx(0.05, rel=0.03) and abs(d.mean()) < 0.002


def test_dropout_rate_within_bounds(make_ragged):
    frames, offsets = make_ragged([100] * 10, missing=0.0, handless=0.0)
    _, drop = pair([{"op": "dropout", "rate": 0.2}])
    kept = run(drop, frames, offsets)["mask"][:, :100].mean()
    assert 0.8 - 0.01 < kept < 0.8 + 0.01  # 87,000 Bernoulli(0.8): sigma 0.0014
    _, part = pair([{"op": "dropout", "rate": 0.0, "part_rate": 0.5}])
    m = run(part, frames, offsets)["mask"][:, :100]
    for sl in SL.values():  # whole parts go: within a part a frame is all there or all gone
        per_frame = m[:, :, sl].mean(axis=2)
        assert set(np.unique(per_frame)) <= {0.0, 1.0} and 0.45 < per_frame.mean() < 0.55


def test_part_distort_is_a_similarity_per_part(make_ragged):
    frames, offsets = make_ragged([40], missing=0.0, handless=0.0)
    plain, dist = pair([{"op": "part_distort", "scale": 0.2, "rotate_deg": 20.0, "shift": 0.1}])
    a, b = run(plain, frames, offsets)["x"][0, :40], run(dist, frames, offsets)["x"][0, :40]
    for sl in SL.values():
        da = np.linalg.norm(a[:, sl, None] - a[:, None, sl], axis=-1)
        db = np.linalg.norm(b[:, sl, None] - b[:, None, sl], axis=-1)
        ratio = db[da > 1e-3] / da[da > 1e-3]
        assert np.ptp(ratio) < 1e-3 and np.exp(-0.2) - 1e-4 <= ratio.mean() <= np.exp(0.2) + 1e-4


def test_detector_noise_swaps_drops_and_jitters(make_ragged):
    frames, offsets = make_ragged([50] * 4, missing=0.0, handless=0.0)
    quiet = dict(jitter_std=0.0, miss_rate=0.0, swap_rate=0.0)
    plain, swap = pair([{"op": "detector_noise", **quiet, "swap_rate": 1.0, "swap_max_len": 1}])
    a, b = run(plain, frames, offsets)["x"], run(swap, frames, offsets)["x"]
    np.testing.assert_array_equal(b[:, :, SL["left_hand"]], a[:, :, SL["right_hand"]])
    np.testing.assert_array_equal(b[:, :, SL["lips"]], a[:, :, SL["lips"]])
    _, miss = pair([{"op": "detector_noise", **quiet, "miss_rate": 0.1, "miss_max_len": 5}])
    m = run(miss, frames, offsets)["mask"][:, :50]
    hand = m[:, :, SL["left_hand"]].mean(axis=2)
    assert set(np.unique(hand)) == {0.0, 1.0} and m[:, :, SL["lips"]].all()
    assert 0.55 < hand.mean() < 0.9  # runs of mean length 3 started at rate 0.1 among the uncovered frames
    _, jit = pair([{"op": "detector_noise", **quiet, "jitter_std": 0.05, "jitter_corr": 0.9}])
    d = (run(jit, frames, offsets)["x"] - a)[:, :50]  # (4, 50, 87, 2)
    assert d.std() == pytest.approx(0.05, rel=0.1)
    lag1 = (d[:, 1:] * d[:, :-1]).mean() / (d * d).mean()
    assert 0.85 < lag1 < 0.95  # AR(1) with rho 0.9: temporally correlated


# ------------------------------------------------------------------------------------------- pipeline as data
def test_pipeline_round_trips_and_prints(tmp_path):
    pipe = named_pipeline("full")
    assert AugmentPipeline.from_config(pipe.to_config()) == pipe
    path = tmp_path / "aug.json"
    pipe.to_json(path)
    assert load_pipeline(str(path)) == pipe
    yaml = pytest.importorskip("yaml")
    (tmp_path / "aug.yaml").write_text(yaml.safe_dump(pipe.to_config()))
    assert load_pipeline(tmp_path / "aug.yaml") == pipe
    text = repr(pipe)
    assert all(f"{op.name}(p={op.p}" in text for op in pipe.ops)
    assert [op.name for op in default_pipeline().ops] == ["time_warp", "scale", "noise"]
    assert load_pipeline('[{"op": "mirror", "p": 0.5}]').ops[0].p == 0.5


@pytest.mark.parametrize("config,match", [
    ([{"op": "flip"}], r"unknown op 'flip'; valid: \['detector_noise', 'dropout'"),
    ([{"op": "noise", "sigma": 1}], r"unknown parameters \['sigma'\]; valid: \['p', 'std'\]"),
    ([{"op": "noise", "p": 1.5}], r"'noise': p=1.5 must lie in \[0, 1\]"),
    ([{"op": "time_warp", "min_speed": 2.0, "max_speed": 1.0}], "min_speed <= max_speed"),
    ([{"op": "dropout", "rate": float("nan")}], "rate=nan must be a finite number"),
    ([{"p": 0.5}], "expected a dict with an 'op' key"),
])
def test_bad_pipeline_configs_are_rejected(config, match):
    with pytest.raises(ValueError, match=match):
        AugmentPipeline.from_config(config)


def test_bad_pipeline_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_pipeline("nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_pipeline(bad)
    bad.write_text('[{"op": "warp"}]')
    with pytest.raises(ValueError, match="bad.json: augment entry 0: unknown op 'warp'"):
        load_pipeline(bad)


def test_augment_preview(make_ragged, tmp_path):
    from slr_fast.engine import augment_preview, preview_figure

    frames, _ = make_ragged([50], handless=0.0)
    before, after = augment_preview(frames, DEFAULT_LAYOUT, [{"op": "mirror"}, {"op": "time_warp"}], seed=1)
    assert before.shape == (50, 87, 2) and after.shape[1:] == (87, 2) and after.shape[0] != 50
    np.testing.assert_array_equal(after[0, SL["left_hand"], 0], -before[0, SL["right_hand"], 0])
    b2, a2 = augment_preview(frames, DEFAULT_LAYOUT, "full", resampled=True)
    assert b2.shape == a2.shape == (64, 87, 2)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    preview_figure(frames, DEFAULT_LAYOUT, "full", seed=2).savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
