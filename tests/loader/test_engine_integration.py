"""The loader with the real BatchProcessor: batches equal a direct call, resume reproduces augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.loader import PROCESS_LOCK, KeypointLoader, LoaderConfig

engine = pytest.importorskip("slr_fast.engine")
preprocess = pytest.importorskip("slr_fast.preprocess.config")

STREAM = {"in_memory": False, "block_frames": 100, "shuffle_window": 3, "readahead": 1}


@pytest.fixture(scope="module")
def processor():
    proc = engine.BatchProcessor(DEFAULT_LAYOUT, preprocess.PreprocessConfig(T=24), augment="default", seed=9)
    proc.warmup()
    return proc


@pytest.mark.parametrize("mode", [{"in_memory": True}, STREAM], ids=["memory", "chunked"])
def test_batches_equal_a_direct_processor_call(store_factory, processor, mode):
    store = store_factory()
    frames, offsets = store.frames_array(), store.offsets
    with KeypointLoader(store, processor, LoaderConfig(batch_size=40, seed=2, **mode)) as loader:
        loader.set_epoch(1)
        for batch in loader:
            idx = batch["index"].numpy()
            # the same samples processed straight from the whole store, ids = global indices, same epoch
            with PROCESS_LOCK:  # the loader's thread is processing ahead: parallel Numba calls must take turns
                want = processor.process(frames, offsets, idx, 1, processor.alloc(len(idx)), sample_ids=idx)
            for k in ("x", "mask", "length", "flags"):
                np.testing.assert_array_equal(batch[k].numpy(), want[k], err_msg=k)


def test_resume_reproduces_augmented_batches(store_factory, processor):
    store = store_factory()
    cfg = LoaderConfig(batch_size=32, seed=4, drop_last=True)
    with KeypointLoader(store, processor, cfg) as loader:
        loader.set_epoch(3)
        full = [{k: v.clone() for k, v in b.items()} for b in loader]
    with KeypointLoader(store, processor, cfg) as loader:
        loader.set_epoch(3)
        it = iter(loader)
        head = [{k: v.clone() for k, v in next(it).items()} for _ in range(2)]
        state = loader.state_dict()
        del it
    with KeypointLoader(store, processor, cfg) as resumed:
        resumed.load_state_dict(state)
        tail = [{k: v.clone() for k, v in b.items()} for b in resumed]
    assert len(head) + len(tail) == len(full) == 203 // 32
    for a, b in zip(head + tail, full, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    # augmentation is active: the same samples in another epoch come out different
    with KeypointLoader(store, processor, LoaderConfig(batch_size=32, shuffle=False)) as plain:
        plain.set_epoch(0)
        e0 = next(iter(plain))["x"].clone()
        plain.set_epoch(1)
        e1 = next(iter(plain))["x"]
    assert not torch.equal(e0, e1)


def test_processor_for_another_layout_is_refused(store_factory):
    from slr_fast.layout import get_layout

    proc = engine.BatchProcessor(get_layout("arm"))  # same point count, other pose points: tables would lie
    with pytest.raises(ValueError, match="processor layout 'arm'"):
        KeypointLoader(store_factory(), proc)
