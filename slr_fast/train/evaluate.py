"""Evaluation: run a model over a loader (all ranks), gather the logits, compute the classification report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from slr_fast.train.metrics import classification_report, per_signer_accuracy
from slr_fast.train.runtime import Runtime, all_gather_objects


@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader, rt: Runtime, limit: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, K) float32, labels (N,), store indices (N,)) over the loader, gathered from every rank.

    Under DDP the loader pads shards to equal length by repeating samples; duplicates are removed by store index
    so every sample counts once.
    """
    was_training = model.training
    model.eval()
    loader.set_epoch(0)  # a fixed order: the clean-train subset is the same samples every epoch
    logits, labels, index = [], [], []
    seen = 0
    for batch in loader:
        with rt.autocast():
            out = model(batch["x"].to(rt.device), batch["mask"].to(rt.device), batch["length"].to(rt.device))
        logits.append(out.logits.float().cpu().numpy())
        labels.append(batch["label"].numpy())
        index.append(batch["index"].numpy())
        seen += len(labels[-1])
        if limit is not None and seen >= limit:
            break
    model.train(was_training)
    k = model.config.num_classes
    local = (np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
             np.concatenate(labels) if labels else np.zeros(0, np.int64),
             np.concatenate(index) if index else np.zeros(0, np.int64))
    parts = all_gather_objects(rt, local)
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    idx = np.concatenate([p[2] for p in parts])
    _, first = np.unique(idx, return_index=True)
    first.sort()
    return z[first], y[first], idx[first]


def run_eval(model: torch.nn.Module, loader, rt: Runtime, num_classes: int, classes: list[str],
             limit: int | None = None, signers: np.ndarray | None = None) -> dict:
    """Loss (plain cross-entropy), top-1/top-5, per-class accuracy and confused pairs of the model on a loader;
    with `signers` (the store's per-sequence signer ids) also the top-1 of each signer."""
    z, y, idx = predict_loader(model, loader, rt, limit)
    report = classification_report(z, y, list(classes))
    if signers is not None:
        report["per_signer"] = per_signer_accuracy(z.argmax(1) == y, np.asarray(signers)[idx])
    report["loss"] = float(F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y).long()))
    return report
