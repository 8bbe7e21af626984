"""The kernel ablation runner: grid parsing, one row per config, logit differences, unavailable backends."""

import json

import pytest

from slr_fast.ablate import parse_grid
from slr_fast.cli.main import main


def test_parse_grid_is_the_cartesian_product():
    grid = parse_grid("attention=torch|native|triton; rmsnorm=native|triton")
    assert len(grid) == 6
    assert {(k.attention, k.rmsnorm) for k in grid} == {(a, r) for a in ("torch", "native", "triton")
                                                         for r in ("native", "triton")}
    assert all(k.swiglu == "auto" for k in grid)
    with pytest.raises(ValueError, match="unknown op"):
        parse_grid("attn=torch")
    with pytest.raises(ValueError, match="unknown backend"):
        parse_grid("attention=cuda")


def test_ablate_time_mode_table(small_store, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # CPU without the interpreter: triton is unavailable
    out = tmp_path / "abl"
    args = ["ablate", "--store", small_store, "--kernels-grid", "attention=torch|native|triton;rmsnorm=torch|native",
            "--steps", "2", "--warmup", "1", "--batch-size", "8", "--frames", "16", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert len(rows) == 6
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    ref = [r for r in ok if r["kernels"].startswith("rmsnorm=torch") and "attention=torch" in r["kernels"]]
    assert ref and ref[0]["max_logit_diff_init"] == 0.0
    for r in ok:
        assert r["samples_per_s"] > 0
        # Same weights, same batch: backends differ only by floating-point order.
        assert r["max_logit_diff_init"] < 1e-4
        # And the same training steps on the same batches: forward, every gradient and AdamW agree, so the loss
        # after them does too (a backend with a wrong backward would drift here).
        assert r["final_loss"] == pytest.approx(ref[0]["final_loss"], rel=1e-4)
    bad = [r for r in rows if r["status"] != "ok"]
    assert all("attention=triton" in r["kernels"] and "Triton needs a CUDA device" in r["status"] for r in bad)
    table = (out / "ablation.md").read_text()
    assert table.count("\n| ") == 7 and "samples_per_s" in table


def test_ablate_train_mode_reports_what_eval_gives_for_each_run(small_store, tmp_path, capsys):
    out = tmp_path / "abl"
    args = ["ablate", "--store", small_store, "--kernels-grid", "attention=torch|native", "--mode", "train",
            "--epochs", "1", "--batch-size", "8", "--frames", "16", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["max_logit_diff_init"] < 1e-4 for r in rows)
    runs = {json.loads((c.parent / "config.json").read_text())["kernels"]: c.parent for c in out.glob("*/best.pt")}
    assert sorted(runs) == sorted(r["kernels"] for r in rows)
    for r in rows:
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(runs[r["kernels"]]), "--store", small_store, "--json"]) == 0
        assert r["test_acc"] == json.loads(capsys.readouterr().out)["top1"]
        assert r["val_acc"] == json.loads((runs[r["kernels"]] / "metrics.jsonl").read_text())["val_acc"]
