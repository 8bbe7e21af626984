"""Build a run's data side from its config: store, class subset, engine processors and loaders."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from slr_fast.engine import BatchProcessor
from slr_fast.errors import UserInputError, user_input
from slr_fast.fileio import regular_file_problem
from slr_fast.layout import Layout
from slr_fast.loader import KeypointLoader, LoaderConfig
from slr_fast.preprocess import PreprocessConfig
from slr_fast.store import KeypointStore
from slr_fast.store.location import is_url
from slr_fast.store.schema import CHECKSUMS_KEY
from slr_fast.train.config import ConfigError, DataConfig, TrainConfig
from slr_fast.train.runtime import Runtime


def augment_from_config(spec):
    """A pipeline name ("default", "full", "none"), a JSON file, or a list of op dicts → AugmentPipeline or None."""
    from slr_fast.augment import load_pipeline
    from slr_fast.augment.pipeline import NAMED

    if spec in (None, "", "none", []):
        return None
    if isinstance(spec, str) and spec not in NAMED and not spec.lstrip().startswith(("[", "{")):
        problem = regular_file_problem(spec)  # a FIFO would block the reader; say so instead
        if problem and problem != "file not found":
            raise UserInputError(f"augment config {spec}: {problem}")
    with user_input():  # the pipeline's own checks name the op and the parameter
        return load_pipeline(spec)


def absolute_location(path: str) -> str:
    """A local path made absolute, so a run records where its store is wherever it is resumed from; a URL (and
    "", no path) unchanged."""
    return path if not path or is_url(path) else os.path.abspath(path)


def store_identity(store: KeypointStore) -> dict:
    """What says a store holds the data a run was trained on, saved in its checkpoints: sizes, class names, layout
    and the crc32c checksums the store records of its index arrays and frames chunks (None for a store written
    before checksums)."""
    checksums = store.attrs.get(CHECKSUMS_KEY)
    return {"sequences": len(store), "frames": int(store.num_frames), "classes": len(store.classes),
            "class_names_sha256": hashlib.sha256("\n".join(store.classes).encode()).hexdigest(),
            "layout": store.layout.to_dict(), "checksums": dict(checksums) if isinstance(checksums, dict) else None}


# How identity_difference names a field that differs.
_IDENTITY_WORDS = {"class_names_sha256": "class names", "layout": "keypoint layout",
                   "checksums": "checksums of the index arrays (offsets, labels, signers, splits, ids) or frames"}


@dataclass
class RunData:
    store: KeypointStore
    layout: Layout
    classes: list[str]
    train: KeypointLoader
    val: KeypointLoader | None
    test: KeypointLoader | None
    train_eval: KeypointLoader | None
    train_indices: np.ndarray
    preprocess_dict: dict
    augment_config: list | None
    identity: dict  # store_identity(store)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def identity_difference(self, recorded) -> str | None:
        """How this run's store differs from the one a checkpoint recorded (`recorded`, untrusted), or None. A
        checkpoint from before the record has none: the loader's own state check is what remains then."""
        if recorded is None:
            return None
        if not isinstance(recorded, dict):
            return f"the checkpoint's record of its store is {type(recorded).__name__}, not a mapping"
        for key, now in self.identity.items():
            was = recorded.get(key)
            if key == "checksums" and (was is None or now is None):
                continue  # one of the two stores was written before checksums: the other fields must do
            if was != now:
                if isinstance(now, int):
                    return f"{now} {key} where the run's store had {str(was)[:40]}"
                return f"other {_IDENTITY_WORDS[key]}"
        return None

    def build_model(self, config: TrainConfig) -> torch.nn.Module:
        from kernels.registry import KernelConfig
        from slr_fast.model import ModelConfig, SignModel

        spec = dict(config.model)
        preset = spec.pop("preset", "tiny")
        try:
            mcfg = ModelConfig.preset(preset, num_classes=self.num_classes, layout=self.layout, **spec)
            mcfg.check_size()  # before a single parameter is allocated
        except ValueError as e:
            raise ConfigError(f"config.model with the store's {self.num_classes} classes and layout: {e}") from e
        with user_input(f"--kernels {config.kernels}: "):
            kernels = KernelConfig.parse(config.kernels)
        return SignModel(mcfg, kernels=kernels)

    def close(self):
        for ld in (self.train, self.val, self.test, self.train_eval):
            if ld is not None:
                ld.close()


def build_data(config: TrainConfig, rt: Runtime) -> RunData:
    """Open the store and make the train / val / clean-train / test loaders of a run."""
    dc = config.data
    if not dc.store:
        raise UserInputError("no store given: pass --store PATH (a store made by `slr-fast synth` or "
                             "`slr-fast ingest`)")
    store = KeypointStore.open(dc.store)
    layout = store.layout
    pre = PreprocessConfig.from_dict({"T": dc.frames, **dc.preprocess})
    aug = augment_from_config(dc.augment)
    train_proc = BatchProcessor(layout, pre, aug, seed=config.seed)
    eval_proc = BatchProcessor(layout, pre, None, seed=config.seed)
    counts = store.split_counts()

    def has(split: str) -> bool:
        return counts.get(split, 0) > 0

    defaults = DataConfig()
    for what, split, default in (("val", dc.val_split, defaults.val_split), ("test", dc.test_split,
                                                                              defaults.test_split)):
        # A split the user named must exist; the default names may be absent (the run then has no validation
        # or no final test, and says so when it starts).
        if split and split != default and not has(split):
            raise UserInputError(f"{dc.store}: no sequences in split {split!r} (data.{what}_split); the store's "
                                 f"splits: {dict(sorted(counts.items()))}; pass --set data.{what}_split= for none")
    if not has(dc.train_split):
        raise UserInputError(f"{dc.store}: no sequences in split {dc.train_split!r}; make a split with "
                             "`slr-fast split STORE` or choose one with --set data.train_split=NAME")
    common = dict(classes=dc.classes, in_memory=dc.in_memory, rank=rt.rank, world_size=rt.world_size)
    train = KeypointLoader(store, train_proc, LoaderConfig(batch_size=config.batch_size, shuffle=True,
                                                           drop_last=True, seed=config.seed, split=dc.train_split,
                                                           **common))
    classes = list(train.classes)
    if len(train) == 0:
        # drop_last keeps every step at the configured batch size; a split smaller than one batch has no step,
        # and a run of no steps would still write best.pt and test metrics of an untrained model.
        n, mine = len(train.indices), train.num_samples
        per_rank = f" ({mine} on each of {rt.world_size} processes)" if rt.world_size > 1 else ""
        train.close()
        raise UserInputError(f"--batch-size {config.batch_size} is larger than the {n} training sequences of split "
                             f"{dc.train_split!r}{per_rank} in {dc.store}: no full batch, no training step; use "
                             f"--batch-size {max(1, mine)} or less")

    def eval_loader(split: str, shuffle: bool = False) -> KeypointLoader | None:
        if not has(split):
            return None
        return KeypointLoader(store, eval_proc, LoaderConfig(batch_size=config.eval_batch_size, shuffle=shuffle,
                                                             drop_last=False, seed=config.seed + 1, split=split,
                                                             **common))

    train_eval = eval_loader(dc.train_split, shuffle=True) if config.train_eval_samples > 0 else None
    return RunData(store, layout, classes, train, eval_loader(dc.val_split), eval_loader(dc.test_split),
                   train_eval, store.select(split=dc.train_split, classes=dc.classes), pre.to_dict(),
                   aug.to_config() if aug is not None else None, store_identity(store))
