"""`slr-fast predict` on video files and folders of them: extracted in the checkpoint's layout, then predicted
like keypoint files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_testing import assert_one_line_error, call_cli
from video_testing import cut, need_video

from slr_fast.layout import get_layout

CLASSES = ["a", "b", "c", "d"]


def _checkpoint(path, layout):
    """An untrained small model's checkpoint (inference fields only)."""
    from slr_fast.model.config import ModelConfig
    from slr_fast.model.model import SignModel
    from slr_fast.preprocess import PreprocessConfig
    from slr_fast.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(CLASSES), part_names=layout.part_names, part_sizes=layout.part_sizes,
                         channels=layout.num_channels, dim=32, heads=2, part_dim=32, part_hidden=32, pool_queries=1)
    model = SignModel(config)
    save_checkpoint(path, {"model": model.state_dict(), "model_config": config.to_dict(), "classes": CLASSES,
                           "layout": layout.to_dict(), "preprocess": PreprocessConfig(T=16).to_dict()})
    return path


@torch.no_grad()
def _reference(checkpoint, clip) -> list[float]:
    """Probabilities of each class for `clip`, from keypoints extracted in this process."""
    from slr_fast.train.inference import _processor, load_model
    from slr_fast.video import read_video_keypoints

    model, st = load_model(checkpoint)
    layout, proc = _processor(st)
    frames = read_video_keypoints(clip, layout)[0]
    out = proc.alloc(1)
    proc.process(frames, np.array([0, len(frames)], np.int64), np.zeros(1, np.int64), 0, out)
    logits = model(torch.from_numpy(out["x"]), torch.from_numpy(out["mask"]), torch.from_numpy(out["length"])).logits
    return torch.softmax(logits.float(), -1)[0].tolist()


def test_predict_extracts_clips_and_folders_in_the_checkpoints_layout(tmp_path, capsys):
    need_video()
    layout = get_layout("default_z")  # not the default: the clip must be extracted in the checkpoint's layout
    ckpt = _checkpoint(tmp_path / "model.pt", layout)
    one = cut(tmp_path / "one.mp4", 17, 21)  # the right hand in view
    folder = tmp_path / "clips"
    two, three = cut(folder / "b.mp4", 30, 34), cut(folder / "a.mp4", 0, 4)
    (folder / "notes.txt").write_text("not a clip")
    rc, out, err = call_cli(["predict", "--checkpoint", ckpt, one, folder, "--json", "--top-k", "4"], capsys)
    assert rc == 0, err
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(one), str(three), str(two)]  # a folder: its videos by name
    probs = []
    for r, clip in zip(results, (one, three, two), strict=True):
        want = _reference(ckpt, clip)
        got = {t["sign"]: t["prob"] for t in r["top"]}
        assert [t["sign"] for t in r["top"]] == sorted(CLASSES, key=lambda c: -want[CLASSES.index(c)])
        assert [got[c] for c in CLASSES] == pytest.approx(want, abs=1e-6)
        probs.append(want)
    assert np.abs(np.diff(probs, axis=0)).max() > 1e-4  # the model sees each clip's keypoints: outputs differ


def test_predict_names_a_bad_clip_in_one_line(tmp_path, capsys):
    need_video()
    ckpt = _checkpoint(tmp_path / "model.pt", get_layout("default"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    rc, _, err = call_cli(["predict", "--checkpoint", ckpt, bad], capsys)
    assert_one_line_error(rc, err, str(bad), "empty file (0 bytes), not a video")
