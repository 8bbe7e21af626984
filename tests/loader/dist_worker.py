"""One rank of the 2-process loader test: joins a gloo group, iterates two epochs, saves what it saw."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.distributed as dist
from loader_testing import RecordingProcessor

from slr_fast.loader import KeypointLoader, LoaderConfig
from slr_fast.store import KeypointStore


def main(rank: int, world_size: int, port: int, store_path: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    store = KeypointStore.open(store_path)
    result = {}
    for mode in (True, False):
        # rank and world_size come from the initialized process group, as under torchrun
        cfg = LoaderConfig(batch_size=16, in_memory=mode, seed=3, split="train")
        with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
            assert (loader.rank, loader.world_size) == (rank, world_size)
            for epoch in (0, 1):
                loader.set_epoch(epoch)
                seen = torch.cat([b["index"] for b in loader])
                # the same number of batches on every rank, or collectives in a training loop would hang
                sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size)]
                dist.all_gather(sizes, torch.tensor([len(seen)]))
                assert len({int(s) for s in sizes}) == 1, sizes
                result[f"{'memory' if mode else 'chunked'}_{epoch}"] = seen.numpy()
    np.savez(out_path, **result)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
