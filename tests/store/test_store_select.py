"""Selection by split, signer and class subset; class renumbering; deterministic signer-independent splits."""

import numpy as np
import pytest
from store_testing import smooth_sequences

from slr_fast.store import class_subset, signer_split, write_signer_split, write_splits, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    n = 60
    path = tmp_path_factory.mktemp("sel") / "s.zarr"
    return write_store(path, smooth_sequences(n, max_len=5), [i % 6 for i in range(n)],
                       signers=[i % 5 - 1 for i in range(n)], classes=[f"sign{k}" for k in range(6)],
                       splits=[[None, "train", "val", "test"][i % 4] for i in range(n)])


def test_select_by_split(store):
    train = store.select(split="train")
    assert train.dtype == np.int64 and (store.splits[train] == 0).all()
    assert len(train) == (store.splits == 0).sum() == 15
    both = store.select(split=["val", "test"])
    assert set(store.splits[both]) == {1, 2} and len(both) == 30
    assert (store.splits[store.select(split="none")] == -1).all()
    assert np.array_equal(store.select(split=1), store.select(split="val"))
    assert store.split_counts() == {"train": 15, "val": 15, "test": 15, "none": 15}


def test_select_by_signer_and_class(store):
    sel = store.select(signers=[0, 2])
    assert set(store.signers[sel]) == {0, 2} and len(sel) == 24
    by_name = store.select(classes=["sign1", "sign4"])
    assert np.array_equal(by_name, store.select(classes=[1, 4]))
    assert set(store.labels[by_name]) == {1, 4}
    combo = store.select(split="train", signers=[0], classes=[1, 3, 5])
    expected = [i for i in range(60) if i % 4 == 1 and i % 5 - 1 == 0 and (i % 6) in (1, 3, 5)]
    assert combo.tolist() == expected
    assert len(store.select()) == 60


def test_select_rejects_unknown_values(store):
    with pytest.raises(ValueError, match="unknown class 'sign9'"):
        store.select(classes=["sign9"])
    with pytest.raises(ValueError, match="class id 6 outside 0..5"):
        store.select(classes=[6])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        store.select(split="dev")


def test_class_subset_renumbers(store):
    sub = store.class_subset(["sign4", "sign1"])
    assert sub.names == ["sign4", "sign1"] and len(sub) == 2
    idx = store.select(classes=sub.ids)
    new = sub.apply(store.labels[idx])
    assert set(new) == {0, 1}
    assert (new[store.labels[idx] == 4] == 0).all()
    with pytest.raises(ValueError, match="label 0 is not in the class subset"):
        sub.apply(np.array([0]))
    with pytest.raises(ValueError, match="names a class twice"):
        class_subset(store.classes, [1, "sign1"])


def test_signer_split_is_signer_independent_and_deterministic():
    signers = np.repeat(np.arange(21), 30)[np.random.default_rng(0).permutation(630)]
    codes = signer_split(signers, seed=3)
    assert codes.dtype == np.int8 and set(codes) == {0, 1, 2}
    for s in range(21):
        assert len(set(codes[signers == s])) == 1  # every signer in exactly one split
    per_split = [len(set(signers[codes == k])) for k in range(3)]
    assert per_split == [17, 2, 2]  # 21 signers by 0.8/0.1/0.1, largest remainder
    assert np.array_equal(codes, signer_split(signers, seed=3))
    assert not np.array_equal(codes, signer_split(signers, seed=4))
    # The split of a signer depends on the set of signer ids, not on sequence order.
    perm = np.random.default_rng(1).permutation(630)
    assert np.array_equal(signer_split(signers[perm], seed=3), codes[perm])


def test_signer_split_small_and_unknown():
    # Three signers and three non-empty fractions: each split gets one.
    assert sorted(signer_split(np.array([5, 6, 7]), fractions=(0.9, 0.05, 0.05))) == [0, 1, 2]
    signers = np.array([0, 1, -1, 2, -1])
    with pytest.raises(ValueError, match="2 of 5 sequences have an unknown signer"):
        signer_split(signers)
    codes = signer_split(signers, unknown="none")
    assert (codes[signers == -1] == -1).all() and (codes[signers >= 0] >= 0).all()
    assert (signer_split(signers, unknown="train")[signers == -1] == 0).all()
    with pytest.raises(ValueError, match="summing to 1"):
        signer_split(signers, fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="unknown='x'"):
        signer_split(signers, unknown="x")


def test_write_signer_split_into_store(tmp_path):
    path = tmp_path / "nosplit.zarr"
    signers = [i % 7 for i in range(70)]
    write_store(path, smooth_sequences(70, max_len=4), [0] * 70, signers=signers)
    store = write_signer_split(path, fractions=(0.6, 0.2, 0.2), seed=5)
    assert np.array_equal(store.splits, signer_split(np.array(signers), fractions=(0.6, 0.2, 0.2), seed=5))
    for s in range(7):
        assert len(set(store.splits[store.signers == s])) == 1
    assert store.split_counts()["none"] == 0 and min(store.split_counts()[k] for k in ("train", "val", "test")) > 0
    assert store.provenance["split"] == {"kind": "signer", "fractions": [0.6, 0.2, 0.2], "seed": 5, "unknown": "error"}
    with pytest.raises(ValueError, match="3 split entries given for 70 sequences"):
        write_splits(path, ["train"] * 3)
    store = write_splits(path, ["test"] * 70)
    assert store.split_counts()["test"] == 70 and store.provenance["split"] == {"kind": "explicit"}


def test_write_splits_at_url():
    url = "memory://slr-fast-tests/splits/s.zarr"
    write_store(url, smooth_sequences(4, max_len=4), [0] * 4, signers=[0, 1, 2, 3])
    store = write_splits(url, [None, "train", 1, "test"])
    assert store.splits.tolist() == [-1, 0, 1, 2]
