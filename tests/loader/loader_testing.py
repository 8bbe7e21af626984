"""Sequences and a NumPy processor that follows the BatchProcessor contract, for loader tests.

The processor encodes each sample's global index and (seed, epoch, id)-dependent noise into its output, so tests
can tell from a batch which sequence it came from and whether its "augmentation" is reproducible.
"""

from __future__ import annotations

import numpy as np

from slr_fast.layout import DEFAULT_LAYOUT

T = 16


class RecordingProcessor:
    """Crop/pad to T frames; x[..., 0] += noise(seed, epoch, sample id); records the thread of every call."""

    def __init__(self, seed: int = 0, T: int = T, fail_at: int | None = None):
        self.seed, self.T, self.fail_at = seed, T, fail_at
        self.calls = 0
        self.threads: set[int] = set()
        self.thread_names: set[str] = set()
        P, C = DEFAULT_LAYOUT.num_points, DEFAULT_LAYOUT.num_channels
        self.P, self.C = P, C

    def alloc(self, B: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((B, self.T, self.P, self.C), np.float32),
                "mask": np.zeros((B, self.T, self.P), np.float32),
                "length": np.zeros(B, np.int32)}

    def process(self, frames, offsets, indices, epoch, out, sample_ids=None):
        import threading

        self.threads.add(threading.get_ident())
        self.thread_names.add(threading.current_thread().name)
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise ValueError(f"bad sequence in batch {self.calls}")
        ids = indices if sample_ids is None else sample_ids
        for b, (i, sid) in enumerate(zip(indices, ids, strict=True)):
            seq = frames[offsets[i]:offsets[i + 1]][:self.T]
            n = len(seq)
            out["x"][b] = 0
            out["mask"][b] = 0
            out["x"][b, :n] = np.nan_to_num(seq)
            out["mask"][b, :n] = ~np.isnan(seq).any(-1)
            out["length"][b] = n
            rng = np.random.default_rng([self.seed, epoch, int(sid)])
            out["x"][b, :n, :, 0] += rng.normal(size=(n, self.P)).astype(np.float32)


def make_sequences(n: int, seed: int = 0, lo: int = 1, hi: int = 40) -> list[np.ndarray]:
    """Sequences whose every frame carries its sequence number in channel 1 (so batches are traceable)."""
    rng = np.random.default_rng(seed)
    P, C = DEFAULT_LAYOUT.num_points, DEFAULT_LAYOUT.num_channels
    out = []
    for i in range(n):
        t = int(rng.integers(lo, hi + 1))
        seq = rng.random((t, P, C), dtype=np.float32)
        seq[..., 1] = i
        seq[:, :3, 0] = np.nan  # some undetected points
        out.append(seq)
    return out
