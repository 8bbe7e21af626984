"""A damaged store is always found: by `open` or by `verify`, as one StoreError line naming the store and the part.

Each case damages a copy of one small store written here (seeded data, ~30 frames chunks of 32 frames) the way a
broken copy, a full disk, a bad sector or a careless edit would. Whatever `open` lets through, the data it reads is
the data written or an error, and `verify` then fails: never a silent OK, never wrong data.
"""

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from store_testing import smooth_sequences

from slr_fast.layout import get_layout
from slr_fast.store import KeypointStore, StoreError, write_store

N = 40
CHUNK = 32


@dataclass
class Base:
    path: str
    seqs: list
    store: KeypointStore


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    path = tmp_path_factory.mktemp("damage") / "base.zarr"
    seqs = smooth_sequences(N, seed=21, max_len=45)
    store = write_store(path, seqs, [i % 3 for i in range(N)], signers=[i % 7 for i in range(N)],
                        classes=["a", "b", "c"], seq_ids=[f"clip-{i:02d}" for i in range(N)],
                        splits=[["train", "val", "test", None][i % 4] for i in range(N)], chunk_frames=CHUNK)
    return Base(str(path), seqs, store)


# ---------------------------------------------------------------- ways to damage a store
def _file(path, *parts):
    return os.path.join(path, *parts)


def delete(*parts):
    return lambda p: os.remove(_file(p, *parts))


def flip(*parts, at: float | int = 0.5):
    def damage(p):
        f = _file(p, *parts)
        raw = bytearray(open(f, "rb").read())
        i = at if isinstance(at, int) else int(len(raw) * at)
        raw[i] ^= 0x10
        open(f, "wb").write(bytes(raw))
    return damage


def truncate(*parts, keep: int = 20):
    def damage(p):
        f = _file(p, *parts)
        raw = open(f, "rb").read()
        open(f, "wb").write(raw[:keep])
    return damage


def swap(a: tuple, b: tuple):
    def damage(p):
        fa, fb = _file(p, *a), _file(p, *b)
        tmp = fa + ".tmp"
        os.rename(fa, tmp)
        os.rename(fb, fa)
        os.rename(tmp, fb)
    return damage


def copy_over(src: tuple, dst: tuple):
    return lambda p: shutil.copyfile(_file(p, *src), _file(p, *dst))


def write(*parts, data: bytes):
    return lambda p: open(_file(p, *parts), "wb").write(data)


def edit_json(*parts, fn: Callable[[dict], dict | list]):
    def damage(p):
        f = _file(p, *parts, "zarr.json")
        meta = fn(json.loads(open(f).read()))
        open(f, "w").write(json.dumps(meta))
    return damage


def edit_attrs(fn: Callable[[dict], None]):
    def change(meta):
        fn(meta["attributes"]["slr_fast"])
        return meta
    return edit_json(fn=change)


def remove_folder(name):
    return lambda p: shutil.rmtree(_file(p, name))


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _del(key):
    return lambda m: m.pop(key)


def _frames_meta(**changes):
    return edit_json("frames", fn=lambda m: {**m, **changes})


F = ("frames", "c")
SEQ = r"\(frames \d+\.\.\d+, sequences? \d+(\.\.\d+)?\)"
CRC = "fails its crc32c check"
# (id, damage, the error must match this, random reads may return wrong data (only whole-chunk reads can tell))
CASES = [
    ("frames chunk deleted", delete(*F, "3", "0", "0"), r"frames chunk c/3/0/0 \(frames 96\.\.127, .*\) is missing",
     False),
    ("last frames chunk deleted", "LAST", r"frames chunk c/\d+/0/0 " + SEQ + " is missing", False),
    ("frames byte flipped", flip(*F, "2", "0", "0"), rf"frames chunk c/2/0/0 {SEQ} {CRC}", False),
    ("frames crc trailer flipped", flip(*F, "5", "0", "0", at=-1), rf"frames chunk c/5/0/0 {SEQ} {CRC}", False),
    ("frames chunks swapped", swap((*F, "1", "0", "0"), (*F, "4", "0", "0")),
     rf"frames chunk c/1/0/0 {SEQ} does not match the checksum recorded", True),
    ("frames chunk copied over", copy_over((*F, "2", "0", "0"), (*F, "6", "0", "0")),
     rf"frames chunk c/6/0/0 {SEQ} does not match the checksum recorded", True),
    ("frames chunk truncated", truncate(*F, "7", "0", "0"), rf"frames chunk c/7/0/0 {SEQ} {CRC}", False),
    ("frames chunk emptied", write(*F, "8", "0", "0", data=b""), rf"frames chunk c/8/0/0 {SEQ} {CRC}", False),
    ("frames chunk garbage", write(*F, "9", "0", "0", data=os.urandom(300)), rf"frames chunk c/9/0/0 {SEQ} {CRC}",
     False),
    ("frames folder gone", remove_folder("frames"), "array 'frames' is missing", False),
    ("frames chunk checksums deleted", delete("frames_crc32c", "c", "0"), "'frames_crc32c'.* c/0 is missing", False),
    ("frames chunk checksums flipped", flip("frames_crc32c", "c", "0"), f"'frames_crc32c' chunk c/0 {CRC}", False),
    ("frames chunk checksums folder gone", remove_folder("frames_crc32c"), "array 'frames_crc32c' .* is missing",
     False),
    *[(f"{name} chunk deleted", delete(name, "c", "0"), f"'{name}' chunk c/0 is missing", False)
      for name in ("offsets", "label", "signer", "split", "seq_id")],
    ("label byte flipped", flip("label", "c", "0"), f"'label' chunk c/0 {CRC}", False),
    ("seq_id byte flipped", flip("seq_id", "c", "0", at=0.3), f"'seq_id' chunk c/0 {CRC}", False),
    ("offsets crc trailer flipped", flip("offsets", "c", "0", at=-2), f"'offsets' chunk c/0 {CRC}", False),
    ("split chunk truncated", truncate("split", "c", "0", keep=3), f"'split' chunk c/0 {CRC}", False),
    ("label and signer chunks swapped", swap(("label", "c", "0"), ("signer", "c", "0")),
     "array 'label' does not match the checksum recorded", False),
    ("signer folder gone", remove_folder("signer"), "array 'signer' is missing", False),
    ("group zarr.json garbage", write("zarr.json", data=b"\x00\xffgarbage{"), r"group's metadata \(zarr\.json\)",
     False),
    ("group zarr.json truncated", "TRUNCATE_GROUP", r"group's metadata \(zarr\.json\)", False),
    ("group zarr.json empty", write("zarr.json", data=b""), r"group's metadata \(zarr\.json\)", False),
    ("group zarr.json a list", write("zarr.json", data=b"[1, 2]"), r"group's metadata \(zarr\.json\)", False),
    ("group zarr.json wrong node type", edit_json(fn=lambda m: {**m, "node_type": "banana"}), "no keypoint store",
     False),
    ("label zarr.json garbage", write("label", "zarr.json", data=b"{not json"),
     r"cannot read array 'label' \(its metadata label/zarr\.json\)", False),
    ("frames zarr.json truncated", "TRUNCATE_FRAMES", r"cannot read array 'frames'", False),
    ("label zarr.json wrong schema", write("label", "zarr.json", data=b'{"zarr_format": 3, "node_type": "array"}'),
     "array 'label' is missing", False),
    ("frames zarr.json unknown codec", edit_json("frames", fn=lambda m: {**m, "codecs": [
        *m["codecs"][:-1], {"name": "nosuchcodec"}]}), "cannot read array 'frames'", False),
    ("frames zarr.json shape shortened", _frames_meta(shape=[100, 87, 2]), "offsets end at \\d+ but frames holds 100",
     False),
    ("frames zarr.json chunk shape changed", _frames_meta(chunk_grid={"name": "regular", "configuration": {
        "chunk_shape": [16, 87, 2]}}), "attributes record 32 frames per chunk but the arrays hold 16", False),
    ("attrs negative sequence count", edit_attrs(_set("num_sequences", -3)), "attributes record -3 sequences",
     False),
    ("attrs negative frame count", edit_attrs(_set("num_frames", -1)), "attributes record -1 frames", False),
    ("attrs wrong layout", edit_attrs(_set("layout", get_layout("arm_z").to_dict())), "layout 'arm_z' says", False),
    ("attrs layout garbage", edit_attrs(_set("layout", "wide")), "invalid layout attribute", False),
    ("attrs checksums algorithm", edit_attrs(lambda m: m["checksums"].__setitem__("algorithm", "md5")),
     "attribute 'checksums' is damaged", False),
    ("attrs label checksum changed", edit_attrs(lambda m: m["checksums"].__setitem__("label", 12345)),
     "array 'label' does not match the checksum recorded", False),
    ("attrs checksums removed", edit_attrs(_del("checksums")), "'checksums' attribute that records them is gone",
     False),
    ("attrs complete false", edit_attrs(_set("complete", False)), "incomplete", False),
]


def _special(damage, base_path, path):
    """Damages that need to know the store: the last chunk's name, truncating a metadata file."""
    if damage == "LAST":
        last = (len(np.concatenate(_special.seqs)) - 1) // CHUNK
        return delete(*F, str(last), "0", "0")(path)
    name = {"TRUNCATE_GROUP": "zarr.json", "TRUNCATE_FRAMES": os.path.join("frames", "zarr.json")}[damage]
    size = os.path.getsize(_file(path, name))
    return truncate(name, keep=size // 2)(path)


def _same(got: list, want: list) -> bool:
    return all(np.array_equal(g, w, equal_nan=True) for g, w in zip(got, want, strict=True))


def _found(path, base: Base, random_reads_unchecked: bool) -> str:
    """The StoreError that `open` or, failing that, `verify` raises; checks what is read meanwhile is true."""
    try:
        store = KeypointStore.open(path)
    except StoreError as e:
        return str(e)
    # open let it through: the index it read is the one written ...
    for got, want in ((store.offsets, base.store.offsets), (store.labels, base.store.labels),
                      (store.signers, base.store.signers), (store.splits, base.store.splits),
                      (store.seq_ids, base.store.seq_ids)):
        assert np.array_equal(got, want)
    # ... and frames come back as written or not at all.
    for read in (lambda: store.load().get_many(range(N)), lambda: store.get_many(range(N))):
        try:
            got = read()
        except StoreError:
            continue
        assert _same(got, base.seqs) or random_reads_unchecked, "wrong frames returned without an error"
    with pytest.raises(StoreError) as err:
        store.verify()
    return str(err.value)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_damage_is_found(base, tmp_path, case):
    name, damage, expected, random_reads_unchecked = case
    path = str(tmp_path / "s.zarr")
    shutil.copytree(base.path, path)
    if isinstance(damage, str):
        _special.seqs = base.seqs
        _special(damage, base.path, path)
    else:
        damage(path)
    message = _found(path, base, random_reads_unchecked)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert __import__("re").search(expected, message), f"{name}: {message}"


def test_healthy_copy_verifies(base, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(base.path, path)
    report = KeypointStore.open(path).verify(block_chunks=3)  # blocks not aligned to the store's end
    chunks = -(-sum(map(len, base.seqs)) // CHUNK)
    assert report["checksums"] and report["chunks_checked"] == report["frames_chunks"] == chunks
    assert report["chunks"] == chunks + 1 + 5  # + frames_crc32c + the five index arrays, one chunk each
    assert _same(KeypointStore.open(path).load().get_many(range(N)), base.seqs)
