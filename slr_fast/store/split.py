"""Signer-independent splits and class subsets (e.g. training on 500 of 1001 classes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.store.schema import NO_SPLIT, SPLITS, UNKNOWN_SIGNER, split_code


def _signer_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Signers per split: largest-remainder rounding, at least one per non-zero fraction when there are enough."""
    raw = [f * n for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    for k in sorted(range(len(raw)), key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts)]:
        counts[k] += 1
    wanted = [k for k, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for k in wanted:
            if counts[k] == 0:  # take one signer from the largest split so every requested split is evaluated
                counts[int(np.argmax(counts))] -= 1
                counts[k] = 1
    return counts


def signer_split(signers: np.ndarray | Sequence[int], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                 unknown: str = "error") -> np.ndarray:
    """int8 split codes (0 train, 1 val, 2 test) such that all sequences of a signer share one split.

    Signers (not sequences) are shuffled with `seed` and dealt out by `fractions` of the signer count, so the
    result depends only on the set of signer ids and the seed. Sequences of unknown signer (-1) cannot be kept
    signer-independent, so `unknown` says what happens to them: "error" (default) refuses, "none" gives them
    code -1 (excluded from every split), or a split name puts them all there.
    """
    signers = np.asarray(signers)
    if signers.ndim != 1 or signers.dtype.kind not in "iu":
        raise ValueError(f"signers must be a 1-D integer array, got dtype {signers.dtype} shape {signers.shape}")
    if len(fractions) != len(SPLITS) or not all(f >= 0 for f in fractions) or not abs(sum(fractions) - 1) <= 1e-6:
        raise UserInputError(f"fractions must be {len(SPLITS)} non-negative numbers ({'/'.join(SPLITS)}) summing "
                             f"to 1, got {tuple(fractions)}")
    if unknown not in ("error", "none", *SPLITS):
        raise UserInputError(f"unknown={unknown!r}; valid: 'error', 'none', {', '.join(map(repr, SPLITS))}")
    if (signers < UNKNOWN_SIGNER).any():
        raise UserInputError(f"invalid signer id {int(signers.min())} (ids are >= 0, -1 = unknown)")
    out = np.full(len(signers), NO_SPLIT, np.int8)
    missing = signers == UNKNOWN_SIGNER
    if missing.any():
        if unknown == "error":
            raise UserInputError(f"{int(missing.sum())} of {len(signers)} sequences have an unknown signer (-1); pass "
                                 "--unknown-signers none (unknown='none') to leave them out of every split, or "
                                 "train/val/test to put them all in one")
        out[missing] = NO_SPLIT if unknown == "none" else split_code(unknown)
    ids = np.unique(signers[~missing])
    if ids.size == 0:
        return out
    order = np.random.default_rng(seed).permutation(ids.size)
    counts = _signer_counts(ids.size, fractions)
    code_of = np.empty(ids.size, np.int8)
    start = 0
    for code, count in enumerate(counts):
        code_of[order[start:start + count]] = code
        start += count
    out[~missing] = code_of[np.searchsorted(ids, signers[~missing])]
    return out


@dataclass(frozen=True)
class ClassSubset:
    """A subset of a store's classes renumbered 0..K-1 in the order given."""

    ids: np.ndarray  # (K,) int32 original class ids, position = new id
    names: list[str]  # (K,) class names, position = new id
    remap: np.ndarray  # (num_store_classes,) int32: original id -> new id, -1 if not in the subset

    def __len__(self) -> int:
        return len(self.names)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Original labels -> new ids; a label outside the subset is an error (select the subset first)."""
        labels = np.asarray(labels)
        new = self.remap[labels]
        if (new < 0).any():
            bad = int(labels[np.flatnonzero(new < 0)[0]])
            raise ValueError(f"label {bad} is not in the class subset of {len(self)} classes")
        return new


def class_subset(classes: Sequence[str], subset: Iterable[str | int]) -> ClassSubset:
    """Renumber a subset of `classes` (given by names or ids) to 0..K-1 in the order given."""
    lookup = {c: i for i, c in enumerate(classes)}
    ids = []
    for c in subset:
        if isinstance(c, str):
            if c not in lookup:
                raise UserInputError(f"unknown class {c!r}; there are {len(classes)} classes, e.g. {list(classes[:5])}")
            ids.append(lookup[c])
        else:
            if not 0 <= int(c) < len(classes):
                raise UserInputError(f"class id {c} outside 0..{len(classes) - 1}")
            ids.append(int(c))
    if not ids:
        raise UserInputError("class subset is empty")
    if len(set(ids)) != len(ids):
        raise UserInputError("class subset names a class twice")
    remap = np.full(len(classes), -1, np.int32)
    remap[ids] = np.arange(len(ids), dtype=np.int32)
    return ClassSubset(ids=np.asarray(ids, np.int32), names=[classes[i] for i in ids], remap=remap)
