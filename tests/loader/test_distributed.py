"""Two real processes in a gloo group: shards are disjoint, equal, cover the epoch, and agree on the order."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slr_fast.loader.sampler import block_ids, chunk_aware_order, epoch_order

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_ranks_shard_an_epoch(store_factory, tmp_path):
    store = store_factory()
    world, port = 2, free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(HERE / "dist_worker.py"), str(r), str(world), str(port),
                               str(store.where), str(tmp_path / f"rank{r}.npz")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
    outputs = [p.communicate(timeout=110)[0] for p in procs]
    for r, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {r} failed:\n{out}"
    seen = [np.load(tmp_path / f"rank{r}.npz") for r in range(world)]
    train = np.flatnonzero(store.splits == 0)
    for key in seen[0].files:
        mode, epoch = key.split("_")
        shards = [s[key] for s in seen]
        assert len(shards[0]) == len(shards[1]) == -(-len(train) // world)  # padded to equal length
        flat = np.concatenate(shards)
        assert set(flat.tolist()) == set(train.tolist())  # together they cover the epoch...
        assert len(flat) - len(set(flat.tolist())) == len(flat) - len(train)  # ...overlapping only by the padding
        # both ranks drew the same permutation: this process computes it alone and finds each rank's slice in it
        if mode == "memory":  # DistributedSampler layout: strided
            full = epoch_order(train, seed=3, epoch=int(epoch), shuffle=True, world_size=1)
        else:  # chunk-aware order: contiguous slices, so each rank reads only its own blocks
            blocks = block_ids(store.offsets, train, 8 * store.chunk_frames)
            full = chunk_aware_order(train, blocks, seed=3, epoch=int(epoch), shuffle=True, window=8, world_size=1)
        padded = np.concatenate([full, full[:len(flat) - len(full)]])
        n = len(shards[0])
        for r in range(world):
            want = padded[r::world] if mode == "memory" else padded[r * n:(r + 1) * n]
            np.testing.assert_array_equal(shards[r], want)
    assert not np.array_equal(seen[0]["memory_0"], seen[0]["memory_1"])  # a new order each epoch
