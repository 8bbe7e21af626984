"""Hostile and broken checkpoints: `eval`, `predict`, `train --init-from` and `train --resume` end with one line
naming the file and the field, exit code 2, and never build what a checkpoint's config describes before checking it.

Every checkpoint here is made at test time from a real one (the `tiny_run` fixture trains it) by changing one field.
"""

from __future__ import annotations

import copy
import datetime
import shutil

import pytest
import torch
from cli_testing import assert_one_line_error, call_cli

from slr_fast.model.config import MAX_PARAMETERS


@pytest.fixture(scope="module")
def good_state(tiny_run):
    return torch.load(tiny_run / "last.pt", weights_only=True)


def _first_float(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


def _huge(st):
    st["model_config"].update(dim=16384, heads=256, local_layers=64, global_layers=64, conv_layers=64)


def _layout_without_pose(st):
    st["layout"]["parts"] = st["layout"]["parts"][:-1]


def _other_width(st):
    st["model_config"].update(dim=48, heads=2)


def _nan_weights(st):
    st["model"][_first_float(st["model"])].fill_(float("nan"))


# name: (edit of the state dict, words the error line must hold). Each is tried with eval, predict and init-from.
INFERENCE_CASES = {
    "classes_not_a_list": (lambda st: st.update(classes="sign_000"), ["'classes'", "list"]),
    "classes_repeated": (lambda st: st.update(classes=["sign_000"] * 4), ["'classes'", "listed twice"]),
    "classes_fewer_than_outputs": (lambda st: st.update(classes=st["classes"][:3]), ["'classes'", "3 classes"]),
    "classes_not_strings": (lambda st: st.update(classes=[1, 2, 3, 4]), ["'classes'", "strings"]),
    "layout_garbage": (lambda st: st.update(layout={"parts": 5}), ["'layout'"]),
    "layout_of_other_model": (_layout_without_pose, ["'layout'", "does not match"]),
    "model_config_huge": (_huge, ["model config", "parameters, over the limit", f"{MAX_PARAMETERS:,}"]),
    "model_config_a_list": (lambda st: st.update(model_config=[1, 2]), ["'model_config'", "mapping"]),
    "model_config_other_width": (_other_width, ["weights do not", "shape mismatch"]),
    "model_config_string_width": (lambda st: st["model_config"].update(dim="64"), ["'model_config'", "dim"]),
    "weights_nan": (_nan_weights, ["'model'", "NaN"]),
    "weights_not_tensors": (lambda st: st["model"].update(extra="hello"), ["'model'", "'extra'", "not a tensor"]),
    "not_slr_fast": (lambda st: st.update(format="someone.else"), ["not an slr_fast checkpoint"]),
    "newer_version": (lambda st: st.update(version=2), ["version 2"]),
    "no_model": (lambda st: st.pop("model"), ["lacks", "'model'"]),
    "pickled_object": (lambda st: st.update(when=datetime.date(2024, 1, 1)), ["not a readable checkpoint"]),
}
# Fields only eval/predict use (init-from takes weights and classes, not the preprocessing).
PREPROCESS_CASES = {
    "no_preprocess": (lambda st: st.pop("preprocess"), ["lacks", "'preprocess'"]),
    "preprocess_frames_huge": (lambda st: st["preprocess"].update(T=100000), ["'preprocess'", "MAX_FRAMES"]),
    "preprocess_unknown_mode": (lambda st: st["preprocess"].update(resample="cubic"), ["'preprocess'", "cubic"]),
}


def _write(tmp_path, state, edit, name="ckpt.pt"):
    st = copy.deepcopy(state)
    edit(st)
    path = tmp_path / name
    torch.save(st, path)
    return path


@pytest.mark.parametrize("case", [*INFERENCE_CASES, *PREPROCESS_CASES])
def test_eval_and_predict_refuse_hostile_checkpoints(case, good_state, small_store, tmp_path, capsys):
    edit, words = {**INFERENCE_CASES, **PREPROCESS_CASES}[case]
    path = _write(tmp_path, good_state, edit)
    clip = tmp_path / "clip.parquet"
    clip.write_bytes(b"")  # never read: the checkpoint is refused first
    for argv in (["eval", "--checkpoint", path, "--store", small_store],
                 ["predict", "--checkpoint", path, clip]):
        rc, out, err = call_cli(argv, capsys)
        assert_one_line_error(rc, err, str(path), *words)
        assert out == ""


@pytest.mark.parametrize("case", list(INFERENCE_CASES))
def test_init_from_refuses_hostile_checkpoints(case, good_state, small_store, small_args, tmp_path, capsys):
    edit, words = INFERENCE_CASES[case]
    path = _write(tmp_path, good_state, edit)
    run = tmp_path / "stage2"
    rc, _, err = call_cli(small_args(small_store, run, "--init-from", path, "--new-head"), capsys)
    assert_one_line_error(rc, err, str(path), *words)
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_the_untouched_checkpoint_evaluates_and_ema_is_refused_when_absent(good_state, small_store, tmp_path,
                                                                           capsys):
    """Positive control for the cases above (the same command succeeds on the file they edit), and --ema on a run
    trained without EMA is an error, not the live weights under the EMA's name."""
    path = _write(tmp_path, good_state, lambda st: None)
    rc, out, err = call_cli(["eval", "--checkpoint", path, "--store", small_store, "--json", "--ema"], capsys)
    assert rc == 0, err
    assert '"top1"' in out
    no_ema = _write(tmp_path, good_state, lambda st: st.update(ema=None), "no_ema.pt")
    rc, _, err = call_cli(["eval", "--checkpoint", no_ema, "--store", small_store, "--ema"], capsys)
    assert_one_line_error(rc, err, str(no_ema), "without --ema")


def _exp_avg_wrong_shape(st):
    entry = next(iter(st["optimizer"]["state"].values()))
    entry["exp_avg"] = torch.zeros(3)


def _lr_text(st):
    st["optimizer"]["param_groups"][0]["lr"] = "fast"


def _python_rng_short(st):
    st["rng"]["python"][1] = st["rng"]["python"][1][:10]


# Only `train --resume` uses these fields.
RESUME_CASES = {
    "optimizer_garbage": (lambda st: st.update(optimizer="adam"), ["'optimizer'"]),
    "optimizer_moment_shape": (_exp_avg_wrong_shape, ["'optimizer'", "does not fit", "(3,)"]),
    "optimizer_lr_text": (_lr_text, ["'optimizer'", "'fast'"]),
    "optimizer_groups_missing": (lambda st: st["optimizer"].update(param_groups=[]), ["'optimizer'", "does not fit"]),
    "rng_python_short": (_python_rng_short, ["'rng'", "python"]),
    "rng_torch_wrong_size": (lambda st: st["rng"].update(torch=torch.zeros(10, dtype=torch.uint8)),
                             ["'rng'", "does not fit"]),
    "mix_gen_floats": (lambda st: st.update(mix_gen=torch.zeros(5)), ["'mix_gen'"]),
    "schedule_negative_step": (lambda st: st["schedule"].update(step_num=-5), ["'schedule'", "step_num"]),
    "scaler_text": (lambda st: st.update(scaler={"scale": "x"}), ["'scaler'"]),
    "loader_position_beyond_epoch": (lambda st: st["loader"].update(position=10**9), ["'loader'", "does not fit"]),
    "epoch_text": (lambda st: st.update(epoch="one"), ["'epoch'"]),
    "history_not_a_list": (lambda st: st.update(history={"epoch": 0}), ["'history'"]),
    "history_longer_than_epochs": (lambda st: st["history"].append({"epoch": 1}), ["'history'", "'epoch'"]),
    "partial_nan": (lambda st: st["partial"].update(loss=float("nan")), ["'partial'"]),
    "partial_component_text": (lambda st: st["partial"].update(loss_margin="x"), ["'partial'", "'loss_margin'"]),
    "config_bad_field": (lambda st: st["config"].update(epochs="x"), ["'config'", "config.epochs", "'x'"]),
    "ema_missing": (lambda st: st.update(ema=None), ["'ema'", "ema_decay"]),
    "ema_weights_of_other_model": (lambda st: st["ema"]["module"].pop(_first_float(st["ema"]["module"])),
                                   ["'ema'", "missing"]),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_refuses_hostile_state(case, good_state, tmp_path, capsys):
    edit, words = RESUME_CASES[case]
    run = tmp_path / "run"
    run.mkdir()
    path = _write(run, good_state, edit, "last.pt")
    rc, _, err = call_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(path), *words)
    assert not (run / "summary.json").exists()  # nothing ran


def test_resume_of_the_untouched_checkpoint_finishes_the_run(tiny_run, tmp_path, capsys):
    """Positive control for the resume cases: the same copy, unedited, resumes (the run is at its last epoch, so it
    only evaluates and reports) and leaves no temporary file."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / ".last.pt.stale.tmp").write_bytes(b"half a checkpoint from a killed process")
    rc, out, err = call_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert rc == 0, err
    assert "test top-1" in out and (run / "summary.json").exists()
    assert not list(run.glob(".*.tmp"))
