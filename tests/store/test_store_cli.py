"""`slr-fast split` and `slr-fast verify`."""

import numpy as np
import pytest

from slr_fast.cli.main import main
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.store import KeypointStore, write_store


def _store(path, signers):
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(5, DEFAULT_LAYOUT.num_points, 2)).astype(np.float32) for _ in signers]
    write_store(path, seqs, [i % 2 for i in range(len(signers))], signers=signers, classes=["a", "b"])


def test_split_by_signer_and_verify(tmp_path, capsys):
    path = tmp_path / "s.zarr"
    _store(path, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9])
    assert main(["split", str(path), "--seed", "3"]) == 0
    store = KeypointStore.open(path)
    counts = store.split_counts()
    assert counts["none"] == 0 and counts["train"] == 16 and counts["val"] == 2 and counts["test"] == 2
    for s in np.unique(store.signers):  # every signer in exactly one split
        assert len(np.unique(store.splits[store.signers == s])) == 1
    assert main(["verify", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_split_unknown_signers_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "u.zarr"
    _store(path, [0, 1, -1, 2])
    assert main(["split", str(path)]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["split", str(path), "--unknown-signers", "none"]) == 0
    assert KeypointStore.open(path).split_counts()["none"] == 1
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing the command line
        main(["split", str(path), "--fractions", "1,2"])
    assert exit_info.value.code == 2 and "--fractions" in capsys.readouterr().err
