"""Writing then reading a store gives back exactly what was written, with the contract's layout and attributes."""

import json

import numpy as np
import pytest
import zarr
from store_testing import smooth_sequences

from slr_fast.layout import DEFAULT_LAYOUT, get_layout
from slr_fast.store import SCHEMA_VERSION, KeypointStore, StoreWriter, compression_presets, write_store


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("chunk_frames", [7, 64, 1024])
def test_roundtrip_sequences_and_index(tmp_path, chunk_frames):
    seqs = smooth_sequences(50, lengths=[0, 1, 37] + list(range(2, 49)))
    labels = [i % 4 for i in range(50)]
    signers = [i % 6 - 1 for i in range(50)]  # includes -1 (unknown)
    splits = [[None, "train", "val", "test"][i % 4] for i in range(50)]
    ids = [f"clip-{i:03d}" for i in range(50)]
    store = write_store(tmp_path / "s.zarr", seqs, labels, signers=signers, classes=["a", "b", "c", "d"],
                        seq_ids=ids, splits=splits, chunk_frames=chunk_frames,
                        provenance={"source_format": "numpy"})
    assert len(store) == 50
    np.testing.assert_array_equal(store.lengths, [len(s) for s in seqs])
    np.testing.assert_array_equal(store.labels, labels)
    np.testing.assert_array_equal(store.signers, signers)
    np.testing.assert_array_equal(store.splits, [[-1, 0, 1, 2][i % 4] for i in range(50)])
    assert list(store.seq_ids) == ids
    assert store.classes == ["a", "b", "c", "d"]
    assert store.layout == DEFAULT_LAYOUT
    assert store.provenance["source_format"] == "numpy"
    for i in (0, 1, 2, 17, 49, -1):
        frames, label = store[i]
        assert frames.dtype == np.float32
        assert _equal(frames, seqs[i])
        assert label == labels[i]
    flat = store.frames_array()
    assert _equal(flat, np.concatenate(seqs))
    assert _equal(store.read_frames(5, 90), flat[5:90])
    # NaN (undetected) survives compression bit-for-bit as NaN.
    assert np.isnan(flat).any() and np.isnan(flat).sum() == sum(np.isnan(s).sum() for s in seqs)


def test_on_disk_layout_matches_contract(tmp_path):
    seqs = smooth_sequences(5)
    write_store(tmp_path / "s.zarr", seqs, [0, 1, 0, 1, 0], classes=["x", "y"])
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g.metadata.zarr_format == 3
    expected = {"frames": ("float32", 3), "offsets": ("int64", 1), "label": ("int32", 1), "signer": ("int32", 1),
                "split": ("int8", 1)}
    for name, (dtype, ndim) in expected.items():
        assert str(g[name].dtype) == dtype and g[name].ndim == ndim, name
    assert g["frames"].shape == (sum(map(len, seqs)), 87, 2)
    meta = g.attrs["slr_fast"]
    assert meta["schema_version"] == SCHEMA_VERSION and meta["complete"] is True
    assert meta["classes"] == ["x", "y"] and meta["num_sequences"] == 5
    assert meta["layout"] == DEFAULT_LAYOUT.to_dict()
    assert {"source_format", "tool_version", "created"} <= set(meta["provenance"])
    # No pickle/object codecs anywhere: ids use zarr's native vlen-utf8 string type.
    seq_meta = json.loads((tmp_path / "s.zarr" / "seq_id" / "zarr.json").read_text())
    assert seq_meta["data_type"] == "string"
    codecs = [c["name"] for name in expected | {"seq_id": 0}
              for c in json.loads((tmp_path / "s.zarr" / name / "zarr.json").read_text())["codecs"]]
    assert not any("pickle" in c or "object" in c for c in codecs)


def test_writer_streams_in_chunks(tmp_path):
    """The writer never buffers more than flush_frames (+ one sequence) and writes whole chunks only."""
    seqs = smooth_sequences(40, max_len=30, seed=3)
    with StoreWriter(tmp_path / "s.zarr", layout=DEFAULT_LAYOUT, classes=["a"], chunk_frames=16,
                     flush_frames=32, progress=False) as w:
        for s in seqs:
            w.append(s, 0)
            assert w._pending_frames < 32 + 30
            assert w._written % 16 == 0
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert _equal(store.frames_array(), np.concatenate(seqs))


def test_other_layout_with_z(tmp_path):
    layout = get_layout("arm_z")
    seqs = smooth_sequences(6, layout=layout)
    store = write_store(tmp_path / "z.zarr", seqs, [0] * 6, layout=layout)
    assert store.layout == layout and store.layout.num_channels == 3
    assert _equal(store[3][0], seqs[3])


def test_get_many_matches_single_reads_and_load(tmp_path):
    seqs = smooth_sequences(120, max_len=40, seed=1)
    store = write_store(tmp_path / "s.zarr", seqs, [0] * 120, chunk_frames=50)
    rng = np.random.default_rng(0)
    idx = list(rng.integers(0, 120, 64)) + [5, 5, 119, 0]  # repeats and both ends
    mem = store.load()
    assert mem.in_memory and not store.in_memory
    for got_disk, got_mem, i in zip(store.get_many(idx), mem.get_many(idx), idx, strict=True):
        assert _equal(got_disk, seqs[i]) and _equal(got_mem, seqs[i])
    assert store.get_many([]) == []
    with pytest.raises(IndexError, match="out of range"):
        store.get_many([120])


@pytest.mark.parametrize("compression", list(compression_presets()))
def test_every_compression_preset_is_lossless(tmp_path, compression):
    seqs = smooth_sequences(6, max_len=40, seed=11)
    seqs[0][0, :3] = [[np.float32(1e-38), -0.0], [np.float32(3.4e38), 1.5], [np.nan, 0.25]]  # awkward floats
    store = write_store(tmp_path / "s.zarr", seqs, [0] * 6, compression=compression, chunk_frames=32)
    flat = np.concatenate(seqs)
    got = store.frames_array()
    assert np.array_equal(got.view(np.uint32), flat.view(np.uint32))  # bit-exact, NaN payloads and -0.0 included
    assert store.attrs["compression"] == compression


def test_unknown_compression_lists_valid(tmp_path):
    with pytest.raises(ValueError, match="unknown compression 'lzma'; valid: none, none\\+time"):
        StoreWriter(tmp_path / "s.zarr", classes=["a"], compression="lzma")


def test_provenance_can_be_completed_before_close(tmp_path):
    with StoreWriter(tmp_path / "s.zarr", classes=["a"], provenance={"source_format": "gislr"}, progress=False) as w:
        w.append(smooth_sequences(1)[0], 0)
        w.provenance["skipped"] = [["bad.parquet", "no frames"]]
    prov = KeypointStore.open(tmp_path / "s.zarr").provenance
    assert prov["skipped"] == [["bad.parquet", "no frames"]] and prov["source_format"] == "gislr"


def test_zero_length_sequences_and_index_errors(tmp_path):
    seqs = [np.zeros((0, 87, 2), np.float32), *smooth_sequences(2, lengths=[3, 5]), np.zeros((0, 87, 2), np.float32)]
    store = write_store(tmp_path / "s.zarr", seqs, [0] * 4, chunk_frames=4)
    assert store.lengths.tolist() == [0, 3, 5, 0]
    for source in (store, store.load()):
        got = source.get_many([3, 0, 2, 0])
        assert [g.shape[0] for g in got] == [0, 0, 5, 0]
        assert _equal(got[2], seqs[2])
        assert source[0][0].shape == (0, 87, 2)
        with pytest.raises(IndexError, match="sequence index 4 out of range for 4 sequences"):
            source[4]
        with pytest.raises(IndexError, match=r"frame range \[2, 9\) outside 0..8"):
            source.read_frames(2, 9)
    assert "4 sequences, 8 frames, 1 classes" in repr(store) and "on disk" in repr(store)
    assert "in memory" in repr(store.load())
