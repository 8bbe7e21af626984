"""Which sequences a loader reads: split, class subset (labels renumbered 0..K-1) and signers, via the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slr_fast.errors import UserInputError


@dataclass(frozen=True)
class Selection:
    """Selected global indices (ascending), class names in label order, and the store-label -> label table."""

    indices: np.ndarray  # (n,) int64
    class_names: list[str]  # loader label k is class_names[k]
    label_lut: np.ndarray  # (num_store_classes,) int64, -1 for classes outside the subset


def select(store, *, split: str | Sequence[str] | None = None, classes: Sequence[str | int] | None = None,
           signers: Sequence[int] | None = None) -> Selection:
    """The store's sequences matching every given filter; an empty result, or an absent signer, is an error."""
    if classes is None:
        names = list(store.classes)
        lut = np.arange(len(names), dtype=np.int64)
    else:
        subset = store.class_subset(classes)  # names or ids; errors name the unknown entry
        names = list(subset.names)
        lut = subset.remap.astype(np.int64)
    if signers is not None:
        present = set(np.unique(store.signers).tolist())
        absent = sorted(set(signers) - present)
        if absent:
            raise UserInputError(f"{store.where}: signers {absent} do not occur in the store "
                             f"(present: {sorted(present)[:20]})")
    indices = store.select(split=split, signers=signers, classes=None if classes is None else subset.ids)
    if len(indices) == 0:
        what = [f"split {split!r}" if split is not None else "", f"{len(names)} classes" if classes else "",
                f"signers {list(signers)}" if signers is not None else ""]
        raise UserInputError(f"{store.where}: no sequences match {', '.join(w for w in what if w)} "
                         f"(the store has {len(store)} sequences: {store.split_counts()})")
    return Selection(indices=np.asarray(indices, np.int64), class_names=names, label_lut=lut)
