"""Classification metrics: top-k accuracy, per-class and per-signer accuracy, the most confused class pairs."""

from __future__ import annotations

import numpy as np


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the label is among the k highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def classification_report(logits: np.ndarray, labels: np.ndarray, classes: list[str], top_pairs: int = 10) -> dict:
    """Top-1/top-5, per-class accuracy and the most confused (true, predicted) pairs."""
    n, k = logits.shape
    if n == 0:
        raise ValueError("no samples to evaluate")
    pred = logits.argmax(1)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (labels, pred), 1)
    support = conf.sum(1)
    per_class = {classes[c]: {"accuracy": float(conf[c, c] / support[c]), "support": int(support[c])}
                 for c in range(k) if support[c] > 0}
    off = conf.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None)[:top_pairs]
    pairs = []
    for f in flat:
        t, p = divmod(int(f), k)
        if off[t, p] == 0:
            break
        pairs.append({"true": classes[t], "predicted": classes[p], "count": int(off[t, p]),
                      "rate": float(off[t, p] / support[t])})
    return {
        "samples": int(n),
        "top1": float((pred == labels).mean()),
        "top5": float(topk_correct(logits, labels, 5).mean()),
        "per_class": per_class,
        "confused_pairs": pairs,
    }


def per_signer_accuracy(correct: np.ndarray, signer: np.ndarray) -> dict:
    """{signer id (str): {"accuracy", "support"}} in signer order; sequences of no known signer (-1) under "unknown".
    On unseen signers this is where a train/test gap lives: one signer far below the others (another hand, framing,
    tempo) is a different remedy from an even shortfall."""
    if correct.shape != signer.shape:
        raise ValueError(f"{correct.shape[0]} predictions but {signer.shape[0]} signer ids")
    out = {}
    for s in np.unique(signer):
        hit = correct[signer == s]
        out["unknown" if s < 0 else str(int(s))] = {"accuracy": float(hit.mean()), "support": int(hit.size)}
    return out


def signer_summary(per_signer: dict, lowest: int = 3) -> str:
    """`per signer (5): lowest 12 0.85 (n 20), 6 0.95 (n 20), 17 0.95 (n 20); highest 9 1.00` — one line of a
    `per_signer_accuracy` mapping for eval's output and a run's report ("" when there is none)."""
    if not per_signer:
        return ""
    acc = sorted(per_signer.items(), key=lambda kv: kv[1]["accuracy"])
    shown = ", ".join(f"{s} {v['accuracy']:.2f} (n {v['support']})" for s, v in acc[:lowest])
    return f"per signer ({len(acc)}): lowest {shown}; highest {acc[-1][0]} {acc[-1][1]['accuracy']:.2f}"
