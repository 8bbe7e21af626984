"""End-to-end training on CPU: outputs of a run, resume after a kill, fine-tuning stages, eval and predict, DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from slr_fast.cli.main import main
from slr_fast.train.checkpoint import CheckpointError, load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _weights(run_dir):
    return load_checkpoint(Path(run_dir) / "last.pt")["model"]


def test_train_writes_run_outputs_and_eval_predict(small_store, small_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(small_args(small_store, run, "--mixup", "0.5")) == 0
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "loss.png", "accuracy.png", "lr.png",
                 "report.md", "summary.json"):
        assert (run / name).exists(), name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "ema_val_acc", "lr", "samples_per_s"):
        assert all(key in e for e in epochs), key
    ck = load_checkpoint(run / "last.pt")
    assert ck["epoch"] == 2 and ck["classes"] == ["sign_000", "sign_001", "sign_002", "sign_003"]
    assert ck["kernels"]["attention"] in ("native", "torch") and ck["config"]["data"]["frames"] == 16
    assert ck["ema"] is not None and ck["augment"]  # the augmentation pipeline is saved with the run
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--store", small_store, "--split", "test", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # One test accuracy per run: eval on the run folder evaluates the weights report.md and summary.json report.
    summary = json.loads((run / "summary.json").read_text())
    assert r["checkpoint"] == summary["test"]["checkpoint"] == str(run / "best.pt")
    assert (r["top1"], r["samples"]) == (summary["test"]["top1"], summary["test"]["samples"])
    assert f"weights: {run / 'best.pt'}" in (run / "report.md").read_text()
    from slr_fast.store import KeypointStore

    store = KeypointStore.open(small_store)
    assert r["samples"] == store.split_counts()["test"]
    assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 and set(r["per_class"]) <= set(ck["classes"])
    # Per signer: every test signer once, supports adding up, and the weighted mean is the top-1.
    test_signers = {str(int(s)) for s in store.signers[store.select("test")]}
    assert set(r["per_signer"]) == test_signers
    assert sum(v["support"] for v in r["per_signer"].values()) == r["samples"]
    hits = sum(v["accuracy"] * v["support"] for v in r["per_signer"].values())
    assert hits / r["samples"] == pytest.approx(r["top1"])
    assert summary["test"]["per_signer"] == r["per_signer"]  # the run's own test figure, split by signer
    assert f"- per signer ({len(test_signers)}): " in (run / "report.md").read_text()
    assert main(["eval", "--checkpoint", str(run), "--store", small_store, "--split", "test"]) == 0
    assert f"per signer ({len(test_signers)}): lowest" in capsys.readouterr().out
    # Predict from GISLR parquet files written from the store's own sequences.
    from slr_fast.ingest.gislr_format import write_gislr_file

    files = []
    for i in range(2):
        path = tmp_path / f"seq{i}.parquet"
        frames = store[i][0]
        full = np.full((len(frames), 543, 3), np.nan)
        full[:, store.layout.gislr_rows(), :2] = frames  # z left NaN: the layout is x/y
        write_gislr_file(path, full)
        files.append(str(path))
    assert main(["predict", "--checkpoint", str(run / "best.pt"), *files, "--top-k", "3", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [len(p["top"]) for p in preds] == [3, 3]
    assert all(abs(sum(t["prob"] for t in p["top"]) - 1) < 1 for p in preds)
    assert all(p["top"][0]["prob"] >= p["top"][1]["prob"] for p in preds)


def test_bad_checkpoint_and_existing_run_are_clear_errors(small_store, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    assert main(["eval", "--checkpoint", str(bad), "--store", small_store]) == 2
    assert "bad.pt" in capsys.readouterr().err


def _run_cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "slr_fast", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_kill_matches_uninterrupted_run(small_store, small_args, tmp_path):
    extra = ("--save-every-steps", "1", "--mixup", "0.5")
    full = _run_cli(small_args(small_store, tmp_path / "full", *extra))
    killed = _run_cli(small_args(small_store, tmp_path / "killed", *extra))
    ckpt = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 600  # generous: CI machines can be slow to even import torch
    while time.time() < deadline and killed.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 3:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "training finished before it could be killed: " + killed.stdout.read()
    assert ckpt.exists(), "no mid-epoch checkpoint appeared within the deadline"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step = load_checkpoint(ckpt)["step"]
    resumed = _run_cli(["train", "--resume", str(tmp_path / "killed"), "--no-progress"])
    out_r, out_f = resumed.communicate(timeout=300)[0], full.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out_r
    assert full.returncode == 0, out_f
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"resumed at step {step} differs from the uninterrupted run"
    hist_f = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    hist_r = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [h["val_acc"] for h in hist_f] == [h["val_acc"] for h in hist_r]
    # The resumed epoch logs the rate of its first step, not of the step it resumed at; lr.csv has every step once.
    assert [h["lr"] for h in hist_f] == [h["lr"] for h in hist_r]
    assert (tmp_path / "full" / "lr.csv").read_text() == (tmp_path / "killed" / "lr.csv").read_text()


def test_fine_tune_stage_with_new_class_subset(small_store, small_args, tmp_path, capsys):
    first = tmp_path / "stage1"
    assert main(small_args(small_store, first, "--classes", "sign_000,sign_001,sign_002")) == 0
    assert main(small_args(small_store, tmp_path / "stage2", "--init-from", str(first / "best.pt"))) == 2
    assert "pass --new-head" in capsys.readouterr().err
    second = tmp_path / "stage2b"
    assert main(small_args(small_store, second, "--init-from", str(first / "best.pt"), "--new-head",
                           "--lr", "5e-4", "--schedule", "onecycle")) == 0
    s1, s2 = load_checkpoint(first / "best.pt"), load_checkpoint(second / "last.pt")
    assert len(s1["classes"]) == 3 and len(s2["classes"]) == 4
    assert s2["config"]["init_from"].endswith("best.pt")


def test_epochs_count_the_training_sequences_the_preprocessing_mirrored(small_store, small_args, tmp_path, capsys):
    """dominant_hand=right: each epoch's record and printed line say how many training sequences were mirrored,
    as many as the NumPy reference flags over the training split."""
    from slr_fast.engine import BatchProcessor
    from slr_fast.preprocess import FLAG_MIRRORED, PreprocessConfig
    from slr_fast.store import KeypointStore

    run = tmp_path / "run"
    assert main(small_args(small_store, run, "--epochs", "1", "--augment", "none", "--ema", "0",
                           "--set", "data.preprocess.dominant_hand=right")) == 0
    store = KeypointStore.open(small_store)
    bp = BatchProcessor(store.layout, PreprocessConfig(T=16, dominant_hand="right"), None)
    want = sum(bool(bp.reference_sample(store[int(i)][0], 0, int(i))["flags"] & FLAG_MIRRORED)
               for i in store.select("train"))
    assert want > 0  # the store has a left-handed training signer
    (epoch,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert (epoch["train_mirrored"], epoch["train_empty"], epoch["train_no_points"]) == (want, 0, 0)
    assert f"samples/s | {want} mirrored" in capsys.readouterr().out


@pytest.mark.slow
def test_two_process_ddp_ranks_agree_and_test_the_best_weights(small_store, small_args, tmp_path, capsys):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Two epochs, best by validation loss (which falls from epoch 0 to 1 here): rank 0 rewrites best.pt at the very
    # end, the moment another rank reading best.pt itself would take the previous one.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "slr_fast", *small_args(small_store, run, "--set", "early_stop_metric=val_loss")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(summary["rank_param_digests"]) == 2 and summary["ranks_agree"]
    assert len(set(summary["test_rank_param_digests"])) == 1
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]  # only rank 0 wrote
    assert proc.stdout.count("test top-1") == 1  # only rank 0 printed
    # The reported figure is the one `eval` gives for best.pt: both ranks evaluated those weights.
    assert summary["test"]["checkpoint"] == str(run / "best.pt")
    assert main(["eval", "--checkpoint", str(run), "--store", small_store, "--split", "test", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["checkpoint"] == str(run / "best.pt") and r["samples"] == summary["test"]["samples"]
    assert r["top1"] == summary["test"]["top1"] and r["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-4)
    # What makes the case: the last epoch improved, so best.pt was rewritten as the run ended.
    assert epochs[1]["val_loss"] < epochs[0]["val_loss"] and load_checkpoint(run / "best.pt")["epoch"] == 2
