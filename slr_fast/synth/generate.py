"""Streaming generation: sequences one at a time, straight into a store, deterministic for a config."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from slr_fast.layout import Layout
from slr_fast.synth.config import SynthConfig
from slr_fast.synth.render import render_sequence, source_rows
from slr_fast.synth.signer import Signer, make_signers
from slr_fast.synth.vocab import Sign, make_vocabulary

GENERATOR_VERSION = 1  # bump when the same config would produce different data


class SynthSample(NamedTuple):
    """One generated sequence (unpacks as frames, label, signer, seq_id, split)."""

    frames: np.ndarray  # (T, P, C) float32, NaN = not detected
    label: int
    signer: int
    seq_id: str
    split: int  # 0 train, 1 val, 2 test


def class_names(config: SynthConfig) -> list[str]:
    """The dataset's class names: sign_000, sign_001, ..."""
    return [s.name for s in make_vocabulary(config.classes, config.seed, config.family_size)]


def sequence_length(config: SynthConfig, signer: Signer, rng: np.random.Generator) -> int:
    """A sequence's frame count: log-normal around the median, times the signer's tempo, clipped to the range."""
    t = config.length_median * signer.tempo * float(np.exp(rng.normal(0.0, config.length_sigma)))
    return int(np.clip(round(t), config.min_length, config.max_length))


def render_one(config: SynthConfig, sign: Sign, label: int, signer: Signer, index: int,
               layout: Layout | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """The `index`-th sequence of class `label`: depends only on (seed, label, index), not on generation order."""
    layout = config.get_layout() if layout is None else layout
    rows = source_rows(layout) if rows is None else rows
    rng = np.random.default_rng([config.seed, 2, label, index])
    return render_sequence(
        sign, signer, sequence_length(config, signer, rng), rng, rows, layout.num_channels,
        hand_miss=config.hand_miss_rate, rest_miss=config.rest_miss_rate, face_miss=config.face_miss_rate,
        frame_miss=config.frame_miss_rate, jitter=config.jitter,
    )


def generate(config: SynthConfig, *, start: int = 0, stop: int | None = None) -> Iterator[SynthSample]:
    """Yield the dataset's sequences in store order (round-robin over classes); `start`/`stop` slice that order.

    Sequence i of class c is performed by signer (c + i) mod signers, so every signer performs every class
    equally often and each class's sequences cover all signers.
    """
    vocab = make_vocabulary(config.classes, config.seed, config.family_size)
    signers = make_signers(config)
    layout = config.get_layout()
    rows = source_rows(layout)
    total = config.classes * config.per_class
    stop = total if stop is None else min(stop, total)
    for n in range(max(start, 0), stop):
        index, label = divmod(n, config.classes)
        signer = signers[(label + index) % config.signers]
        frames = render_one(config, vocab[label], label, signer, index, layout, rows)
        yield SynthSample(frames, label, signer.id, f"{vocab[label].name}/s{signer.id:03d}/{index:04d}", signer.split)


def _render_block(config: SynthConfig, start: int, stop: int) -> list[SynthSample]:
    return list(generate(config, start=start, stop=stop))


def _parallel(config: SynthConfig, workers: int, block: int = 256) -> Iterator[SynthSample]:
    """generate(config) rendered by `workers` processes in blocks, yielded in order with a bounded backlog."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    total = config.classes * config.per_class
    starts = list(range(0, total, block))
    # spawn: the parent may hold threads (zarr, tqdm) that fork would copy in a locked state.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: deque = deque()
        for s in starts:
            pending.append(pool.submit(_render_block, config, s, min(s + block, total)))
            if len(pending) > 2 * workers:  # keep memory bounded: wait for the oldest block before submitting more
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def synth_store(out: str | Path, config: SynthConfig | None = None, *, overwrite: bool = False,
                progress: bool = True, workers: int = 1):
    """Generate `config` (default SynthConfig()) into a keypoint store at `out`, streaming; returns the store.

    `workers` > 1 renders in that many processes; the data are identical to a single-process run.
    """
    from slr_fast.store import KeypointStore, StoreWriter  # the store is optional for array-only use

    config = SynthConfig() if config is None else config
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    provenance = {"source_format": "synthetic", "source": "synthetic", "generator": "slr_fast.synth",
                  "generator_version": GENERATOR_VERSION, "config": config.to_dict()}
    with StoreWriter(out, layout=config.get_layout(), classes=class_names(config), provenance=provenance,
                     overwrite=overwrite, total=config.classes * config.per_class, progress=progress) as writer:
        for sample in (generate(config) if workers == 1 else _parallel(config, workers)):
            writer.append(sample.frames, sample.label, signer=sample.signer, seq_id=sample.seq_id, split=sample.split)
    return KeypointStore.open(out)
