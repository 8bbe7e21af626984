"""KeypointLoader over real on-disk stores: batch contents, selection, resume, both read modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loader_testing import RecordingProcessor

from slr_fast.loader import KeypointLoader, LoaderConfig

# Streaming with small blocks that straddle the store's 64-frame chunks and several windows per epoch.
STREAM = {"in_memory": False, "block_frames": 100, "shuffle_window": 3, "readahead": 1}
MODES = [pytest.param({"in_memory": True}, id="memory"), pytest.param(STREAM, id="chunked")]


def collect(loader):
    return [{k: v.clone() for k, v in b.items()} for b in loader]


@pytest.mark.parametrize("mode", MODES)
def test_batches_hold_the_right_samples(store_factory, mode):
    store = store_factory()
    proc = RecordingProcessor(seed=3)
    with KeypointLoader(store, proc, LoaderConfig(batch_size=32, seed=1, **mode)) as loader:
        assert loader.in_memory is mode["in_memory"]
        batches = collect(loader)
    assert len(batches) == len(loader) == 7  # ceil(203 / 32)
    index = torch.cat([b["index"] for b in batches]).numpy()
    np.testing.assert_array_equal(np.sort(index), np.arange(len(store)))  # every sample exactly once
    assert not np.array_equal(index, np.arange(len(store)))  # shuffled
    b = batches[0]
    assert b["x"].shape == (32, 16, 87, 2) and b["x"].dtype == torch.float32
    assert b["mask"].shape == (32, 16, 87) and b["mask"].dtype == torch.float32
    assert b["length"].dtype == torch.int32 and b["label"].dtype == torch.int64 and b["index"].dtype == torch.int64
    assert batches[-1]["x"].shape[0] == 203 - 6 * 32
    for b in batches:
        for row in range(len(b["index"])):
            i = int(b["index"][row])
            frames, label = store[i]
            n = min(len(frames), 16)
            assert int(b["length"][row]) == n
            assert int(b["label"][row]) == label
            # channel 1 carries the sequence number; the loader must have fed this sample's own frames
            np.testing.assert_array_equal(b["x"][row, :n, 3:, 1].numpy(), np.full((n, 84), i, np.float32))
            assert b["mask"][row, :n, :3].sum() == 0 and b["mask"][row, :n, 3:].all()


@pytest.mark.parametrize("mode", MODES)
def test_resume_continues_with_identical_batches(store_factory, mode):
    store = store_factory()
    cfg = LoaderConfig(batch_size=24, seed=7, drop_last=True, **mode)
    with KeypointLoader(store, RecordingProcessor(seed=5), cfg) as ref_loader:
        ref_loader.set_epoch(2)
        reference = collect(ref_loader) + collect(ref_loader)  # epochs 2 and 3

    with KeypointLoader(store, RecordingProcessor(seed=5), cfg) as loader:
        loader.set_epoch(2)
        head = []
        for b in loader:
            head.append({k: v.clone() for k, v in b.items()})
            if len(head) == 3:
                break
        state = loader.state_dict()
    assert state["epoch"] == 2 and state["position"] == 3

    with KeypointLoader(store, RecordingProcessor(seed=5), cfg) as resumed:
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # the usual `for epoch in range(start, E): set_epoch(epoch)` keeps the position
        rest = collect(resumed) + collect(resumed)
    got = head + rest
    assert len(got) == len(reference) == 2 * (203 // 24)
    for a, b in zip(got, reference, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k  # including the (seed, epoch, id) noise of the processor


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [True, False])
def test_rank_arguments_shard_without_a_process_group(store_factory, mode, pad):
    store = store_factory()  # 203 samples over 3 ranks: pad by 1 or drop 2
    shards = []
    for rank in range(3):
        cfg = LoaderConfig(batch_size=16, rank=rank, world_size=3, pad_to_equal=pad, seed=4, **mode)
        with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
            shards.append(torch.cat([b["index"] for b in loader]).numpy())
            assert len(loader) == -(-len(shards[-1]) // 16)
    assert {len(s) for s in shards} == {68 if pad else 67}
    flat = np.concatenate(shards)
    if pad:
        assert set(flat.tolist()) == set(range(203)) and len(flat) == 204
    else:
        assert len(set(flat.tolist())) == len(flat) == 201


def test_epochs_reshuffle_and_repeat_from_seed(store_factory):
    store = store_factory()
    with KeypointLoader(store, RecordingProcessor(), LoaderConfig(batch_size=50)) as loader:
        e0 = torch.cat([b["index"] for b in loader])
        e1 = torch.cat([b["index"] for b in loader])  # a finished epoch advances to the next
        assert loader.epoch == 2
        loader.set_epoch(0)
        again = torch.cat([b["index"] for b in loader])
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, again)
    with KeypointLoader(store, RecordingProcessor(), LoaderConfig(batch_size=50, shuffle=False)) as plain:
        assert torch.equal(torch.cat([b["index"] for b in plain]), torch.arange(len(store)))


def test_set_epoch_restarts_unless_resuming(store_factory):
    store = store_factory()
    with KeypointLoader(store, RecordingProcessor(), LoaderConfig(batch_size=20)) as loader:
        loader.set_epoch(0)
        first = next(iter(loader))["index"].clone()
        assert loader.position == 1
        loader.set_epoch(0)  # e.g. an evaluation that stopped early (a limit) and runs again: same samples
        assert loader.position == 0
        assert torch.equal(next(iter(loader))["index"], first)
        it = iter(loader)  # a new iteration without set_epoch continues the epoch where the last one stopped
        second = next(it)["index"].clone()
        del it
        assert not torch.equal(second, first) and loader.position == 2
        state = {**loader.state_dict(), "position": 1}
        loader.load_state_dict(state)
        loader.set_epoch(0)  # right after a restore, the same epoch keeps the restored position...
        assert loader.position == 1
        assert torch.equal(next(iter(loader))["index"], second)
        loader.set_epoch(0)  # ...but only until iteration starts
        assert loader.position == 0


def test_loaders_of_one_store_share_the_decoded_frames(store_factory):
    import gc

    from slr_fast.loader.sources import _DECODED

    store = store_factory()
    a = KeypointLoader(store, RecordingProcessor(), LoaderConfig(split="train"))
    b = KeypointLoader(store, RecordingProcessor(), LoaderConfig(split="val", shuffle=False))
    assert a._source.frames is b._source.frames  # one decoded copy for both
    a.close()
    b.close()
    gc.collect()
    ref = _DECODED.get(store)
    assert ref is None or ref() is None  # freed once no loader holds it


def test_class_subset_split_and_signers(store_factory):
    store = store_factory()
    cfg = LoaderConfig(batch_size=16, split="train", classes=["sign5", 2, "sign0"], signers=[0, 1, 3])
    with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
        assert loader.classes == ["sign5", "sign2", "sign0"]
        batches = collect(loader)
    index = torch.cat([b["index"] for b in batches]).numpy()
    label = torch.cat([b["label"] for b in batches]).numpy()
    expected = [i for i in range(len(store)) if store.splits[i] == 0 and store.labels[i] in (5, 2, 0)
                and store.signers[i] in (0, 1, 3)]
    assert sorted(index.tolist()) == expected
    remap = {5: 0, 2: 1, 0: 2}
    assert [remap[int(store.labels[i])] for i in index] == label.tolist()


def test_drop_last_and_auto_memory_budget(store_factory):
    store = store_factory()
    cfg = LoaderConfig(batch_size=50, drop_last=True, memory_budget_gb=1e-6)  # far below the store's size
    with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
        assert not loader.in_memory
        sizes = [len(b["index"]) for b in loader]
    assert sizes == [50] * 4
    with KeypointLoader(store, RecordingProcessor(), LoaderConfig(memory_budget_gb=1.0)) as loader:
        assert loader.in_memory


@pytest.mark.parametrize("mode", MODES)
def test_reused_buffers_stay_valid_until_the_next_batch(store_factory, mode):
    store = store_factory()
    cfg = LoaderConfig(batch_size=8, prefetch=2, reuse_buffers=True, shuffle=False, **mode)
    ptrs = []
    with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
        it = iter(loader)
        for step, b in enumerate(it):
            ptrs.append(b["x"].data_ptr())
            snapshot = b["x"].clone()
            if step > 20:
                break
            import time

            time.sleep(0.005)  # let the thread run ahead as far as it may
            assert torch.equal(b["x"], snapshot)  # not overwritten while the consumer still holds it
            assert int(b["x"][0, 0, 5, 1]) == int(b["index"][0])
    assert len(set(ptrs)) == cfg.prefetch + 2  # the ring is reused, not reallocated
    fresh = LoaderConfig(batch_size=8, shuffle=False)
    with KeypointLoader(store, RecordingProcessor(), fresh) as loader:
        held = collect(loader)
        kept = [b["x"] for b in KeypointLoader(store, RecordingProcessor(), fresh)]
    for a, b in zip(held, kept, strict=True):
        assert torch.equal(a["x"], b)  # without reuse, every batch the consumer kept is still intact


def test_bad_selection_and_state_are_named(store_factory):
    store = store_factory()
    proc = RecordingProcessor()
    with pytest.raises(ValueError, match="nope"):
        KeypointLoader(store, proc, LoaderConfig(classes=["sign1", "nope"]))
    with pytest.raises(ValueError, match="twice"):
        KeypointLoader(store, proc, LoaderConfig(classes=["sign1", 1]))
    with pytest.raises(ValueError, match=r"signers \[42\]"):
        KeypointLoader(store, proc, LoaderConfig(signers=[42]))
    with pytest.raises(ValueError, match="split"):
        KeypointLoader(store, proc, LoaderConfig(split="dev"))
    with pytest.raises(ValueError, match="batch_size"):
        LoaderConfig(batch_size=0)
    with pytest.raises(ValueError, match="in_memory"):
        LoaderConfig(in_memory="yes")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="pin_memory=True needs CUDA"):
            KeypointLoader(store, proc, LoaderConfig(pin_memory=True))
    with pytest.raises(ValueError, match="rank 2"):
        KeypointLoader(store, proc, LoaderConfig(rank=2, world_size=2))
    with KeypointLoader(store, proc, LoaderConfig(batch_size=32)) as loader:
        state = loader.state_dict()
    with KeypointLoader(store, proc, LoaderConfig(batch_size=16)) as other:
        with pytest.raises(ValueError, match="batch_size: saved 32, now 16"):
            other.load_state_dict(state)
        with pytest.raises(ValueError, match="position 99"):
            other.load_state_dict({**other.state_dict(), "position": 99})
    with pytest.raises(RuntimeError, match="closed"):
        iter(other)
