"""`KeypointStore.open` refuses damaged stores with a message naming the store and the problem."""

import shutil

import numpy as np
import pytest
import zarr
from store_testing import rewrite_array, smooth_sequences

from slr_fast.layout import get_layout
from slr_fast.store import KeypointStore, StoreError, write_store


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path, smooth_sequences(30, seed=2), [i % 3 for i in range(30)], signers=[i % 5 for i in range(30)],
                classes=["a", "b", "c"])
    return path


def _attrs(path, **changes):
    g = zarr.open_group(path, mode="r+")
    meta = dict(g.attrs["slr_fast"])
    meta.update(changes)
    g.attrs["slr_fast"] = meta


def _set(path, name, fn):
    rewrite_array(path, name, fn(zarr.open_group(path, mode="r")[name][...]))


def _replace(path, name, values):
    rewrite_array(path, name, values, recreate=True)


def test_valid_store_opens(store_path):
    assert len(KeypointStore.open(store_path)) == 30


def test_missing_path(tmp_path):
    with pytest.raises(StoreError, match=r"nothing\.zarr: no keypoint store"):
        KeypointStore.open(tmp_path / "nothing.zarr")


def test_plain_zarr_group_is_not_a_store(tmp_path):
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(StoreError, match=r"g\.zarr: not an slr_fast keypoint store"):
        KeypointStore.open(tmp_path / "g.zarr")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"complete": False}, "incomplete .* re-run the ingest"),
        ({"schema_version": 99}, "schema version 99 is not supported"),
        ({"layout": {"parts": [{"name": "x", "source": "nose", "indices": [0]}]}}, "invalid layout"),
        ({"layout": get_layout("arm_z").to_dict()}, r"frames have \(87, 2\) .* layout 'arm_z' says \(87, 3\)"),
        ({"classes": []}, "non-empty list of class names"),
        ({"classes": ["a", "b", "a"]}, r"duplicate class names \['a'\]"),
        ({"classes": ["a", "b"]}, "label 2 of sequence 2 is outside the 2 classes"),
        ({"num_sequences": 31}, "record 31 sequences but the arrays hold 30"),
        ({"provenance": "x"}, "'provenance' attribute must be a mapping"),
    ],
)
def test_bad_attributes(store_path, change, message):
    _attrs(store_path, **change)
    with pytest.raises(StoreError, match=message) as err:
        KeypointStore.open(store_path)
    assert str(store_path) in str(err.value)


def test_offsets_not_monotonic(store_path):
    def swap(o):
        o[17] = o[19] + 1
        return o

    _set(store_path, "offsets", swap)
    with pytest.raises(StoreError, match="offsets not monotonic at sequence 17"):
        KeypointStore.open(store_path)


def test_offsets_must_end_at_frame_count(store_path):
    _set(store_path, "offsets", lambda o: np.where(np.arange(len(o)) == len(o) - 1, o - 1, o))
    with pytest.raises(StoreError, match=r"offsets end at \d+ but frames holds \d+ frames"):
        KeypointStore.open(store_path)


def test_offsets_must_start_at_zero(store_path):
    _set(store_path, "offsets", lambda o: np.where(np.arange(len(o)) == 0, 3, o))
    with pytest.raises(StoreError, match="offsets must start at 0, got 3"):
        KeypointStore.open(store_path)


@pytest.mark.parametrize(
    "name, fn, message",
    [
        ("label", lambda v: np.where(np.arange(len(v)) == 4, 7, v), "label 7 of sequence 4 is outside the 3 classes"),
        ("label", lambda v: np.where(np.arange(len(v)) == 5, -1, v), "label -1 of sequence 5"),
        ("signer", lambda v: np.where(np.arange(len(v)) == 6, -4, v), "signer -4 of sequence 6 is invalid"),
        ("split", lambda v: np.where(np.arange(len(v)) == 8, 5, v), "split code 5 of sequence 8 is invalid"),
        ("seq_id", lambda v: np.where(np.arange(len(v)) == 9, v[3], v), "duplicate sequence ids, e.g. '3'"),
    ],
)
def test_bad_per_sequence_values(store_path, name, fn, message):
    _set(store_path, name, fn)
    with pytest.raises(StoreError, match=message):
        KeypointStore.open(store_path)


def test_missing_array(store_path):
    shutil.rmtree(store_path / "signer")
    with pytest.raises(StoreError, match="array 'signer' is missing"):
        KeypointStore.open(store_path)


def test_wrong_dtype(store_path):
    _replace(store_path, "label", np.zeros(30, np.float64))
    with pytest.raises(StoreError, match="array 'label' has dtype float64, expected int32"):
        KeypointStore.open(store_path)


def test_wrong_length(store_path):
    _replace(store_path, "split", np.zeros(29, np.int8))
    with pytest.raises(StoreError, match="'split' has 29 entries but offsets describe 30 sequences"):
        KeypointStore.open(store_path)


def test_frames_wrong_rank(store_path):
    _replace(store_path, "frames", np.zeros((10, 174), np.float32))
    with pytest.raises(StoreError, match=r"array 'frames' has shape \(10, 174\), expected 3 dimension"):
        KeypointStore.open(store_path)


def test_zarr_v2_group_is_refused(tmp_path):
    zarr.open_group(tmp_path / "v2.zarr", mode="w", zarr_format=2)
    with pytest.raises(StoreError, match=r"v2\.zarr: (zarr format 2|no keypoint store)"):
        KeypointStore.open(tmp_path / "v2.zarr")


def test_corrupt_chunk_is_reported_with_store_and_range(tmp_path):
    path = tmp_path / "c.zarr"
    store = write_store(path, smooth_sequences(20, seed=3), [0] * 20, chunk_frames=64)
    chunk = path / "frames" / "c" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])  # truncated, as after a broken copy
    reopened = KeypointStore.open(path)  # the index is intact, so open succeeds ...
    damaged = r"c\.zarr: frames chunk c/1/0/0 \(frames 64\.\.127, sequences \d+\.\.\d+\) fails its crc32c check"
    with pytest.raises(StoreError, match=damaged):
        reopened.read_frames(64, 70)  # ... and reading the damaged chunk names it
    with pytest.raises(StoreError, match=damaged):
        reopened.verify()
    assert store.read_frames(0, 64).shape == (64, 87, 2)  # other chunks still read


def test_corrupt_index_fails_open(tmp_path):
    path = tmp_path / "c.zarr"
    write_store(path, smooth_sequences(5), [0] * 5)
    (path / "offsets" / "c" / "0").write_bytes(b"garbage")
    with pytest.raises(StoreError, match=r"c\.zarr: 'offsets' chunk c/0 fails its crc32c check"):
        KeypointStore.open(path)


def test_verify_counts_missing_points_and_finds_inf(tmp_path):
    seqs = smooth_sequences(10, seed=4, lengths=[5] * 10)
    seqs[2][1] = np.nan  # one frame with nothing detected
    path = tmp_path / "v.zarr"
    store = write_store(path, seqs, [0] * 10, chunk_frames=8, seq_ids=[f"s{i}" for i in range(10)])
    report = store.verify(block_chunks=1)
    flat = np.concatenate(seqs)
    assert report["frames"] == 50 and report["empty_frames"] == 1
    assert report["nan_fraction"] == pytest.approx(np.isnan(flat).mean())
    assert report["checksums"] and report["frames_chunks"] == report["chunks_checked"] == 7  # ceil(50 / 8)
    # frames 7 chunks + frames_crc32c 1 + one chunk per index array (offsets, label, signer, seq_id, split)
    assert report["chunks"] == 7 + 1 + 5
    in_memory = store.load().verify()
    assert in_memory["chunks_checked"] == 7 and in_memory["nan_fraction"] == report["nan_fraction"]
    # The writer rejects inf, so plant one behind its back to check the deep scan catches it.
    _set(path, "frames", lambda f: np.where(np.arange(len(f))[:, None, None] == 23, np.inf, f))
    with pytest.raises(StoreError, match=r"infinite value in frame 23 \(sequence 4, id 's4'\)"):
        KeypointStore.open(path).verify(block_chunks=1)


def test_index_and_loaded_frames_are_read_only(store_path):
    store = KeypointStore.open(store_path)
    with pytest.raises(ValueError, match="read-only"):
        store.labels[0] = 2
    mem = store.load()
    with pytest.raises(ValueError, match="read-only"):
        mem.get_many([1])[0][0, 0, 0] = 0.0
    disk = store.read_frames(0, 3)  # a fresh copy from disk is the caller's to modify
    disk[0, 0, 0] = -1.0
    assert store.read_frames(0, 3)[0, 0, 0] != -1.0
