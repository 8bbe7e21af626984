"""LoaderConfig: what a KeypointLoader reads, in which order, on which rank, and how far ahead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

IN_MEMORY_CHOICES = ("auto", True, False)
PIN_CHOICES = ("auto", True, False)


@dataclass
class LoaderConfig:
    """Options of a KeypointLoader; defaults suit single-GPU training on a store that fits in memory."""

    batch_size: int = 256  # samples per batch; the last batch is smaller unless drop_last
    shuffle: bool = True  # a new permutation every epoch, drawn from (seed, epoch) — identical on every rank
    drop_last: bool = False  # drop this rank's final incomplete batch (training); keep it for evaluation
    seed: int = 0  # shuffle seed; augmentation randomness comes from the processor's own seed
    split: str | None = None  # "train" | "val" | "test" | None (all sequences, whatever their split)
    classes: Sequence[str | int] | None = None  # subset by names or ids; labels become 0..K-1 in this order
    signers: Sequence[int] | None = None  # keep only these signer ids (None: all)
    rank: int | None = None  # None: torch.distributed's rank when initialized, else 0
    world_size: int | None = None  # None: torch.distributed's world size when initialized, else 1
    # Ranks need equal-length shards or collective ops hang: pad by repeating samples from the start of the epoch
    # order (True, DistributedSampler's default) or drop the tail (False).
    pad_to_equal: bool = True
    # "auto": decode the whole store into memory when its frames fit in memory_budget_gb (fastest: one sequential
    # read, then every batch is pure compute); False: stream by chunk with the chunk-aware shuffle.
    in_memory: Literal["auto"] | bool = "auto"
    memory_budget_gb: float | None = None  # None: a quarter of physical RAM (each DDP rank holds its own copy)
    # Streaming mode. A block is the selected samples starting in one run of `block_frames` frames on disk; blocks
    # are read whole and `shuffle_window` blocks are shuffled together, so larger blocks read faster (a Zarr read
    # call costs milliseconds of overhead on top of decoding) and larger windows mix better, both at more memory:
    # about block_frames x shuffle_window x P x C x 4 bytes (8 x 8192 frames of 87x2 points: ~45 MB).
    block_frames: int | None = None  # None: 8 storage chunks of the store's frames array
    shuffle_window: int = 8  # blocks shuffled together
    readahead: int = 2  # blocks read ahead by the I/O thread beyond those the next batch needs
    prefetch: int = 4  # batches made ahead of the consumer by the background thread
    # Numba threads of the background thread's engine calls. None: every core of this process when CUDA is available
    # (the model runs on the GPU; the cores are free to make batches), else 1: a CPU run's cores belong to torch, and
    # the engine needs ~20 us per sample, under a tenth of one core at CPU training speeds (README, "Threads").
    engine_threads: int | None = None
    pin_memory: Literal["auto"] | bool = "auto"  # "auto": page-locked batches when CUDA is available
    # False: every batch is freshly allocated and owned by the consumer (safe to keep, safe for non_blocking copies
    # from pinned memory: PyTorch's caching host allocator recycles a block only after its copies finished).
    # True: a ring of prefetch + 2 buffer sets is reused; a batch stays valid only until the next one is requested.
    reuse_buffers: bool = False

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.in_memory not in IN_MEMORY_CHOICES or isinstance(self.in_memory, int) and not isinstance(
                self.in_memory, bool):
            raise ValueError(f"in_memory must be one of {IN_MEMORY_CHOICES}, got {self.in_memory!r}")
        if self.pin_memory not in PIN_CHOICES or isinstance(self.pin_memory, int) and not isinstance(
                self.pin_memory, bool):
            raise ValueError(f"pin_memory must be one of {PIN_CHOICES}, got {self.pin_memory!r}")
        for name in ("prefetch", "shuffle_window", "readahead"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "readahead" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'readahead' else 1}, got {value!r}")
        if self.engine_threads is not None and (isinstance(self.engine_threads, bool) or
                                                not isinstance(self.engine_threads, int) or self.engine_threads < 1):
            raise ValueError(f"engine_threads must be a positive integer or None, got {self.engine_threads!r}")
        if self.block_frames is not None and (not isinstance(self.block_frames, int) or self.block_frames < 1):
            raise ValueError(f"block_frames must be a positive integer or None, got {self.block_frames!r}")
        if self.memory_budget_gb is not None and not self.memory_budget_gb > 0:
            raise ValueError(f"memory_budget_gb must be positive or None, got {self.memory_budget_gb!r}")
        if isinstance(self.classes, (str, int)):
            raise ValueError(f"classes must be a sequence of names or ids, got the single value {self.classes!r}")
        if self.classes is not None:
            self.classes = list(self.classes)
        if self.signers is not None:
            self.signers = [int(s) for s in self.signers]

    def to_dict(self) -> dict:
        """Plain-JSON form, saved with runs and checkpoints."""
        return asdict(self)
