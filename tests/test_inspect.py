"""`slr-fast info` statistics (exact on a hand-made store), `slr-fast show`, and the skeleton drawing helpers."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from slr_fast.cli.main import main  # noqa: E402
from slr_fast.inspect import format_stats, store_stats  # noqa: E402
from slr_fast.layout import DEFAULT_LAYOUT, Layout, Part, get_layout  # noqa: E402
from slr_fast.store import KeypointStore, write_store  # noqa: E402
from slr_fast.viz import HAND_EDGES, draw_comparison, draw_frame, draw_sequence, pick_frames, skeleton_edges  # noqa

SL = DEFAULT_LAYOUT.part_slices()


@pytest.fixture(scope="module")
def known_store(tmp_path_factory):
    """Four sequences with known gaps: lengths 2, 4, 6, 8; splits train, train, val, none."""
    P = DEFAULT_LAYOUT.num_points
    seqs = []
    for t in (2, 4, 6, 8):
        f = np.full((t, P, 2), 0.5, np.float32)
        seqs.append(f)
    seqs[0][0, SL["left_hand"]] = np.nan  # frame without the left hand, right hand still there
    seqs[1][:, SL["left_hand"]] = np.nan
    seqs[1][:2, SL["right_hand"]] = np.nan  # 2 frames with no hand at all
    seqs[2][3] = np.nan  # an empty frame (also no hand, no lips, no pose)
    seqs[3][1:, SL["lips"].start] = np.nan  # one lip point missing in 7 frames: points, not whole-part absence
    seqs[3][0, 0, 0] = 0.1
    seqs[3][0, 0, 1] = 0.9
    path = tmp_path_factory.mktemp("inspect") / "known.zarr"
    store = write_store(path, seqs, labels=[0, 1, 1, 2], signers=[3, 3, 4, -1], classes=["a", "b", "c", "d"],
                        splits=["train", "train", "val", None])
    return store


def test_store_stats_counts_exactly(known_store):
    st = store_stats(known_store, block_frames=3)  # blocks smaller than the store: streaming must add up
    assert st["sequences"] == 4 and st["frames"] == 20 and st["classes"] == 4 and st["classes_present"] == 3
    assert st["signers"] == 2 and st["sequences_unknown_signer"] == 1
    assert st["length"]["min"] == 2 and st["length"]["max"] == 8
    assert st["length"]["p50"] == pytest.approx(5.0) and st["length"]["mean"] == pytest.approx(5.0)
    assert st["sequences_per_class"] == {"min": 0, "median": 1.0, "max": 2}
    m = st["missing"]
    assert m["left_hand"]["frames_absent"] == pytest.approx((1 + 4 + 1) / 20)
    assert m["right_hand"]["frames_absent"] == pytest.approx((2 + 1) / 20)
    assert m["pose"]["frames_absent"] == pytest.approx(1 / 20)
    assert m["lips"]["frames_absent"] == pytest.approx(1 / 20)
    assert m["lips"]["points"] == pytest.approx((40 + 7) / (20 * 40))  # the empty frame + 7 frames of point 0
    assert st["frames_without_hands"] == pytest.approx((2 + 1) / 20)
    assert st["frames_empty"] == pytest.approx(1 / 20)
    assert st["splits"]["train"] == {"sequences": 2, "frames": 6, "signers": 1, "classes": 2}
    assert st["splits"]["val"]["sequences"] == 1 and st["splits"]["test"]["sequences"] == 0
    assert st["splits"]["none"]["sequences"] == 1
    assert st["coordinate_range"]["x"] == [pytest.approx(0.1), pytest.approx(0.5)]
    assert st["coordinate_range"]["y"] == [pytest.approx(0.5), pytest.approx(0.9)]
    assert store_stats(known_store) == {**st}  # block size does not change the result
    text = format_stats(st)
    assert "sequences  4" in text and "no hand at all" in text and "15.0 %" in text


def test_info_cli_text_and_json(known_store, capsys):
    assert main(["info", str(known_store.where)]) == 0
    out = capsys.readouterr().out
    assert "p50 5" in out and "left_hand" in out
    assert main(["info", str(known_store.where), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["frames"] == 20 and parsed["missing"]["pose"]["frames_absent"] == pytest.approx(0.05)


def test_info_on_a_missing_store_names_it(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing.zarr")]) == 2
    assert "nothing.zarr" in capsys.readouterr().err


def test_show_writes_a_png(known_store, tmp_path, capsys):
    out = tmp_path / "fig" / "seq.png"
    assert main(["show", str(known_store.where), "--index", "-1", "--out", str(out), "--frames", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show", str(known_store.where), "--index", "9", "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["show", str(known_store.where), "--index", "0", "--out", str(out), "--frame-ids", "0,5"]) == 2
    assert "frame ids [5]" in capsys.readouterr().err


def test_skeleton_edges_follow_the_layout():
    edges = skeleton_edges(DEFAULT_LAYOUT)
    hands = [e for e in edges if e[2] in ("left_hand", "right_hand")]
    assert len(hands) == 2 * len(HAND_EDGES)
    assert sum(e[2] == "face" for e in edges) == 40  # two closed lip rings of 20 points each
    pose = {(a, b) for a, b, s in edges if s == "pose"}
    p0 = SL["pose"].start
    assert (p0 + 1, p0 + 2) in pose  # shoulders
    assert (p0 + 4, SL["right_hand"].start) in pose  # right elbow to the right hand's wrist (no pose wrist)
    arm = get_layout("arm")
    arm_pose = {(a, b) for a, b, s in skeleton_edges(arm) if s == "pose"}
    q0 = arm.part_slices()["pose"].start
    assert (q0, q0 + 1) in arm_pose  # elbow 13 - wrist 15 inside the pose part
    only_lips = Layout(parts=(Part("lips", "face", (61, 185, 40)),))
    assert [(a, b) for a, b, _ in skeleton_edges(only_lips)] == [(0, 1), (1, 2)]


def test_draw_frame_skips_missing_points():
    frame = np.full((DEFAULT_LAYOUT.num_points, 2), 0.5) + np.random.default_rng(0).normal(0, 0.05, (87, 2))
    fig, ax = plt.subplots()
    draw_frame(ax, frame, DEFAULT_LAYOUT)
    full_lines = len(ax.lines)
    assert full_lines == len(skeleton_edges(DEFAULT_LAYOUT))
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # y axis points down like image coordinates
    frame[SL["left_hand"]] = np.nan
    ax.clear()
    draw_frame(ax, frame, DEFAULT_LAYOUT)
    lost = len(HAND_EDGES) + 1  # the hand's bones and the forearm that ends at its wrist
    assert len(ax.lines) == full_lines - lost
    assert ax.collections[0].get_offsets().shape[0] == DEFAULT_LAYOUT.num_points - 21
    with pytest.raises(ValueError, match="does not match layout"):
        draw_frame(ax, frame[:10], DEFAULT_LAYOUT)
    plt.close(fig)


def test_draw_sequence_and_comparison_panels():
    rng = np.random.default_rng(1)
    seq = rng.uniform(0.2, 0.8, size=(10, 87, 2)).astype(np.float32)
    fig = draw_sequence(seq, DEFAULT_LAYOUT, count=4)
    assert len(fig.axes) == 4 and [a.get_title() for a in fig.axes] == ["frame 0", "frame 3", "frame 6", "frame 9"]
    lims = {a.get_xlim() for a in fig.axes}
    assert len(lims) == 1  # one shared view, so motion shows
    plt.close(fig)
    fig = draw_comparison({"original": seq, "resampled": seq[::2]}, DEFAULT_LAYOUT, count=3)
    assert len(fig.axes) == 6
    plt.close(fig)
    assert pick_frames(3, 6) == [0, 1, 2] and pick_frames(0, 4) == [] and pick_frames(100, 2) == [0, 99]
    with pytest.raises(ValueError, match="outside"):
        draw_sequence(seq, DEFAULT_LAYOUT, [0, 10])


def test_figures_name_the_hands_and_keep_the_proportions_of_the_frame():
    rng = np.random.default_rng(2)
    seq = rng.uniform(0.2, 0.8, size=(6, 87, 2)).astype(np.float32)
    seq[..., 0] = 0.3 + 0.4 * seq[..., 0]  # x spans 0.24, y 0.6: a tall view
    fig = draw_sequence(seq, DEFAULT_LAYOUT, count=3)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["left hand", "right hand"] and set(legend) == {"left hand", "right hand", "lips", "pose"}
    colors = {t.get_text(): h.get_color() for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles,
                                                            strict=True)}
    assert colors["left hand"] != colors["right hand"]
    fig.canvas.draw()

    def shape(ax):  # (drawn width / height of the panel box, data width / height of its view)
        box = ax.get_window_extent()
        (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()
        return box.width / box.height, (x1 - x0) / (y1 - y0)

    box, view = shape(fig.axes[0])
    assert box == pytest.approx(view, rel=0.02) and view < 0.6  # equal units: a tall view is a tall panel
    fig_w, fig_h = fig.get_size_inches()
    assert fig_w < 3 * 2.4 * 0.6  # and the figure is sized to such panels, not to a fixed square per panel
    # aspect = width / height of the video: x is drawn that many times longer.
    wide = draw_sequence(seq, DEFAULT_LAYOUT, count=3, aspect=16 / 9)
    wide.canvas.draw()

    def spans(ax):  # (x span, y span) of the points drawn
        xy = np.asarray(ax.collections[0].get_offsets())
        return np.ptp(xy[:, 0]), np.ptp(xy[:, 1])

    (wx, wy), (nx, ny) = spans(wide.axes[0]), spans(fig.axes[0])
    assert (wx / nx, wy / ny) == (pytest.approx(16 / 9), pytest.approx(1.0))
    wide_box, wide_view = shape(wide.axes[0])
    assert wide_box == pytest.approx(wide_view, rel=0.02) and wide_view > view
    plt.close(wide)
    plt.close(fig)
    fig = draw_comparison({"original": seq, "scaled": 0.5 + 1.5 * (seq - 0.5)}, DEFAULT_LAYOUT, count=2)
    assert len({a.get_xlim() for a in fig.axes}) == 1  # one view for both rows: the scaling shows
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["left hand", "right hand"]
    plt.close(fig)
    only_hands = Layout(parts=(Part("left_hand", "left_hand", tuple(range(21))),))
    fig = draw_sequence(seq[:, :21], only_hands, count=1)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["left hand"]
    plt.close(fig)


def test_show_aspect_option(known_store, tmp_path, capsys):
    out = tmp_path / "a.png"
    base = ["show", str(known_store.where), "--index", "3", "--out", str(out), "--frames", "2"]
    assert main([*base, "--aspect", "16:9"]) == 0 and out.exists()
    with pytest.raises(SystemExit):
        main([*base, "--aspect", "0:9"])
    assert "--aspect" in capsys.readouterr().err


def test_show_draws_a_real_synthetic_sequence(tmp_path):
    from slr_fast.synth import SynthConfig, synth_store

    store = synth_store(tmp_path / "s.zarr", SynthConfig(classes=2, per_class=2, signers=2), progress=False)
    out = tmp_path / "synth.png"
    assert main(["show", str(store.where), "--index", "1", "--out", str(out)]) == 0
    img = plt.imread(out)
    assert img.shape[0] > 100 and img.std() > 0.01  # something was drawn
    aug = tmp_path / "aug.png"
    args = ["show", str(store.where), "--index", "1", "--out", str(aug), "--frames", "3"]
    assert main([*args, "--augment", "full"]) == 0
    assert plt.imread(aug).shape[0] > 1.5 * img.shape[0]  # two rows: original and augmented
    assert main([*args, "--augment", "nonsense"]) == 2
    assert isinstance(KeypointStore.open(store.where), KeypointStore)
