"""Stores at fsspec URLs (memory://, file://) write and read through zarr's FsspecStore like local ones."""

import uuid

import numpy as np
import pytest
from store_testing import smooth_sequences

from slr_fast.store import KeypointStore, StoreError, write_store


@pytest.fixture
def memory_url():
    return f"memory://slr-fast-tests/{uuid.uuid4().hex}/s.zarr"


def test_memory_url_roundtrip(memory_url):
    seqs = smooth_sequences(25, seed=9)
    write_store(memory_url, seqs, [i % 3 for i in range(25)], signers=list(range(25)), chunk_frames=32)
    store = KeypointStore.open(memory_url)
    assert store.where == memory_url and len(store) == 25
    for got, i in zip(store.get_many([24, 0, 11]), [24, 0, 11], strict=True):
        assert np.array_equal(got, seqs[i], equal_nan=True)
    assert np.array_equal(store.load().frames_array(), np.concatenate(seqs), equal_nan=True)


def test_file_url_through_fsspec(tmp_path):
    url = f"file://{tmp_path}/nested/s.zarr"
    seqs = smooth_sequences(8, seed=10)
    write_store(url, seqs, [0] * 8, storage_options={"auto_mkdir": True})
    # The same bytes open as a local path: a URL store is an ordinary store.
    local = KeypointStore.open(tmp_path / "nested" / "s.zarr")
    assert np.array_equal(local[7][0], seqs[7], equal_nan=True)
    assert len(KeypointStore.open(url, storage_options={})) == 8


def test_missing_url(memory_url):
    with pytest.raises(StoreError, match=f"{memory_url}: no keypoint store"):
        KeypointStore.open(memory_url)


def test_storage_options_on_local_path_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="storage_options are only for URLs"):
        KeypointStore.open(tmp_path / "s.zarr", storage_options={"anon": True})


def test_unknown_protocol_names_the_url():
    with pytest.raises(ValueError, match="nosuchproto://x/s.zarr"):
        KeypointStore.open("nosuchproto://x/s.zarr")
