"""synth_store and the `slr-fast synth` command: what lands in the store equals what the generator yields."""

from __future__ import annotations

import numpy as np
import pytest

from slr_fast.cli.main import main
from slr_fast.store import KeypointStore
from slr_fast.synth import GENERATOR_VERSION, SynthConfig, generate, synth_store

TINY = SynthConfig(classes=4, per_class=6, signers=3, seed=5)


def test_store_holds_the_generated_sequences(tmp_path):
    store = synth_store(tmp_path / "s.zarr", TINY, progress=False)
    samples = list(generate(TINY))
    assert len(store) == len(samples)
    assert store.classes == ["sign_000", "sign_001", "sign_002", "sign_003"]
    assert store.layout == TINY.get_layout()
    for i, s in enumerate(samples):
        frames, label = store[i]
        assert np.array_equal(frames, s.frames, equal_nan=True)
        assert label == s.label and store.signers[i] == s.signer and store.splits[i] == s.split
        assert str(store.seq_ids[i]) == s.seq_id
    prov = store.provenance
    assert prov["source_format"] == "synthetic" and prov["generator_version"] == GENERATOR_VERSION
    assert SynthConfig.from_dict(prov["config"]) == TINY  # the store records how to regenerate it
    with pytest.raises(ValueError, match="exists"):
        synth_store(tmp_path / "s.zarr", TINY, progress=False)


def test_worker_processes_give_identical_stores(tmp_path):
    cfg = SynthConfig(classes=5, per_class=4, signers=2, seed=1)
    a = synth_store(tmp_path / "a.zarr", cfg, progress=False)
    b = synth_store(tmp_path / "b.zarr", cfg, progress=False, workers=2)
    assert np.array_equal(a.frames_array(), b.frames_array(), equal_nan=True)
    assert np.array_equal(a.offsets, b.offsets) and list(a.seq_ids) == list(b.seq_ids)
    with pytest.raises(ValueError, match="workers"):
        synth_store(tmp_path / "c.zarr", cfg, workers=0)


def test_cli_synth_writes_the_requested_store(tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    rc = main(["synth", str(out), "--classes", "3", "--per-class", "4", "--signers", "3", "--seed", "9",
               "--layout", "arm_z", "--no-progress"])
    assert rc == 0
    assert "wrote 12 sequences" in capsys.readouterr().out
    store = KeypointStore.open(out)
    assert len(store) == 12 and store.layout.name == "arm_z" and store.layout.num_channels == 3
    want = list(generate(SynthConfig(classes=3, per_class=4, signers=3, seed=9, layout="arm_z")))
    assert np.array_equal(store[5][0], want[5].frames, equal_nan=True)
    assert main(["synth", str(out), "--classes", "3", "--per-class", "4", "--signers", "3", "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["synth", str(out), "--classes", "3", "--per-class", "4", "--signers", "3", "--no-progress",
                 "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--classes", "0"], "classes"),
    (["--hand-miss-rate", "2"], "hand_miss_rate"),
    (["--min-length", "50", "--max-length", "10"], "min_length"),
])
def test_cli_synth_bad_values_fail_with_a_message(tmp_path, capsys, args, message):
    assert main(["synth", str(tmp_path / "x.zarr"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert "slr-fast synth: error:" in err and message in err
    assert not (tmp_path / "x.zarr").exists()
