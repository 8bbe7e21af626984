"""The dataset is not trivially separable: averaging frames loses the order that tells family members apart."""

from __future__ import annotations

import numpy as np

from slr_fast.synth.probe import binned_features, normalize_sequence, probe_accuracy, ridge_fit, ridge_predict


def test_mean_frame_linear_falls_short_of_temporal_features(small_samples, small_config):
    """Ridge on the mean frame vs. the same ridge on 3 time bins, both on held-out signers (val + test)."""
    layout = small_config.get_layout()
    seqs = [s.frames for s in small_samples]
    labels = np.array([s.label for s in small_samples])
    train = np.array([s.split == 0 for s in small_samples])
    mean_acc = probe_accuracy(seqs, labels, train, layout, small_config.classes, bins=1)
    order_acc = probe_accuracy(seqs, labels, train, layout, small_config.classes, bins=3)
    print(f"held-out accuracy: mean-frame linear {mean_acc:.3f}, 3-bin temporal linear {order_acc:.3f}")
    chance = 1.0 / small_config.classes
    assert mean_acc > 2 * chance  # the mean frame does carry the family (place, handshapes)...
    assert mean_acc < 0.7  # ...but not which member of the family (order)
    assert order_acc > 0.85
    assert order_acc - mean_acc > 0.25


def test_normalization_makes_left_handed_sequences_right_handed(small_samples, small_config):
    layout = small_config.get_layout()
    s = layout.part_slices()
    for sample in small_samples[:40]:
        xy = normalize_sequence(sample.frames, layout)
        left = np.isfinite(xy[:, s["left_hand"], 0]).any(axis=1).sum()
        right = np.isfinite(xy[:, s["right_hand"], 0]).any(axis=1).sum()
        assert right >= left
        shoulders = xy[:, [s["pose"].start + 1, s["pose"].start + 2]]
        ok = np.isfinite(shoulders).all(axis=(1, 2))
        # Centre between the shoulders and unit shoulder distance, on average over the sequence.
        np.testing.assert_allclose(np.nanmean(shoulders[ok].mean(axis=1), axis=0), 0.0, atol=0.05)
        np.testing.assert_allclose(np.mean(np.linalg.norm(shoulders[ok, 0] - shoulders[ok, 1], axis=1)), 1.0,
                                   atol=0.05)


def test_binned_features_follow_time_and_ignore_missing(small_config):
    layout = small_config.get_layout()
    T, P = 6, layout.num_points
    frames = np.full((T, P, 2), np.nan, np.float32)
    frames[:, :, 0] = np.arange(T)[:, None]  # x = frame number for every point
    frames[:, :, 1] = 0.0
    frames[1, :, :] = np.nan  # a dropped frame must not count as zero
    feats = binned_features(frames, layout, bins=2).reshape(2, -1)
    # Without shoulders at distinct places the layout-free normalization applies; bins keep their order.
    assert feats[0, 0] < feats[1, 0]
    presence = feats[:, 2 * P:]
    np.testing.assert_allclose(presence[0], 2 / 3)  # bin 0 = frames 0..2 with frame 1 missing
    np.testing.assert_allclose(presence[1], 1.0)


def test_ridge_recovers_a_linear_rule():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    W, stats = ridge_fit(X[:200], y[:200], 2, alpha=1.0)
    assert np.mean(ridge_predict(W, stats, X[200:]) == y[200:]) > 0.9
