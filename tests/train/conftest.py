import pytest

from slr_fast.synth import SynthConfig, synth_store


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A small synthetic store with train/val/test signers: 4 classes × 12 sequences, 6 signers."""
    path = tmp_path_factory.mktemp("train") / "small.zarr"
    synth_store(path, SynthConfig(classes=4, per_class=12, signers=6, seed=3, max_length=60), progress=False)
    return str(path)


# A model and run small enough for several short trainings in the CPU test budget.
SMALL_MODEL = ["model.dim=32", "model.heads=2", "model.part_dim=32", "model.part_hidden=32", "model.pool_queries=1"]


def _small_args(store, run_dir, *extra):
    return ["train", "--store", store, "--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "8",
            "--frames", "16", "--threads", "1", "--no-progress", "--ema", "0.9",
            *[a for s in SMALL_MODEL for a in ("--set", s)], *extra]


@pytest.fixture
def small_args():
    """Command line of a short CPU training run on `small_store`."""
    return _small_args


@pytest.fixture(scope="session")
def tiny_run(small_store, tmp_path_factory):
    """A finished one-epoch run (with EMA) of the small model on `small_store`: its folder holds last.pt, best.pt.

    Tests that need a checkpoint copy or edit its files and never change the folder itself."""
    from slr_fast.cli.main import main

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(_small_args(small_store, run, "--epochs", "1")) == 0
    return run
