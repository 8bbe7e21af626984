"""Run reports: train-vs-validation curves (the overfitting gap at a glance) and a short Markdown summary.

Train metrics here are measured like validation ones — the clean (un-augmented, no MixUp) training samples through
the model in eval mode — so the gap compares like with like rather than augmented-train vs clean-val numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from slr_fast.errors import UserInputError
from slr_fast.train.metrics import signer_summary
from slr_fast.train.records import read_lr


def read_metrics(path: str | Path) -> list[dict]:
    """Epoch records of a run's metrics.jsonl."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics file")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserInputError(f"{path}:{i}: not a JSON line ({e})") from e
    return [r for r in out if r.get("kind", "epoch") == "epoch"]


def overfit_epoch(train_loss: list[float], val_loss: list[float], patience: int = 3, rise: float = 0.05
                  ) -> int | None:
    """The index of the epoch after which train and validation loss diverge for good, or None.

    That epoch m is the one with the run's lowest validation loss (the first, when tied). The curves diverge after
    it when at least `patience` epochs follow it, the validation loss of the last `patience` epochs averages more
    than `rise` (relative) above val_loss[m], and their train loss averages below train_loss[m]. As m is the lowest
    point of the whole run, a bump the curve recovers from — MixUp, a cyclic rate's peak, a stage's warm-up — is no
    onset, and neither is a plateau: the 5 % default is above the epoch-to-epoch wobble of the validation loss on a
    100-sequence split near convergence (±4 % in the generalization study's runs), and the averages keep one lucky
    or unlucky epoch from deciding. None also when a loss is missing or not finite."""
    n = len(val_loss)
    if len(train_loss) != n:
        raise ValueError(f"train and validation curves differ in length ({len(train_loss)} vs {n})")
    if n == 0 or any(v is None or not math.isfinite(v) for v in (*train_loss, *val_loss)):
        return None
    m = min(range(n), key=lambda i: val_loss[i])
    if n - 1 - m < patience:
        return None
    tail = slice(n - patience, n)
    val_end = sum(val_loss[tail]) / patience
    train_end = sum(train_loss[tail]) / patience
    return m if val_end > val_loss[m] * (1 + rise) and train_end < train_loss[m] else None


def overfit_analysis(history: list[dict], key: str = "val_loss") -> dict:
    """Best epoch, final gaps, and the epoch after which validation loss rose for good while train loss fell
    (`overfit_epoch`)."""
    if not history:
        return {}
    epochs = [h["epoch"] for h in history]
    acc_key = "val_acc" if "val_acc" in history[0] else None
    out: dict = {}
    if acc_key:
        best_i = max(range(len(history)), key=lambda i: history[i][acc_key])
        out["best_epoch"], out["best_val_acc"] = epochs[best_i], history[best_i][acc_key]
    last = history[-1]
    if "train_acc" in last and "val_acc" in last:
        out["final_acc_gap"] = last["train_acc"] - last["val_acc"]
    if last.get("train_loss") is not None and last.get(key) is not None:
        out["final_loss_gap"] = last[key] - last["train_loss"]
    onset = overfit_epoch([h.get("train_loss") for h in history], [h.get(key) for h in history])
    if onset is not None:
        out["overfit_from_epoch"] = epochs[onset]
    return out


def plot_run(history: list[dict], out_dir: str | Path) -> list[Path]:
    """Write loss.png, accuracy.png and lr.png (the rate of every step from lr.csv when the run has one, else
    each epoch's first); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    ep = [h["epoch"] for h in history]
    paths = []
    lr_steps = read_lr(out_dir)
    for name, keys, ylabel in (
        ("loss.png", ("train_loss", "val_loss", "ema_val_loss"), "loss"),
        ("accuracy.png", ("train_acc", "val_acc", "ema_val_acc"), "top-1 accuracy"),
        ("lr.png", ("lr",), "learning rate"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        if name == "lr.png" and lr_steps and lr_steps[0]:
            ax.plot(*lr_steps, lw=1)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            _save(fig, out_dir / name, paths)
            continue
        for k in keys:
            ys = [h.get(k) for h in history]
            if any(y is not None for y in ys):
                ax.plot(ep, [float("nan") if y is None else y for y in ys], marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if name != "lr.png":
            ax.legend()
            info = overfit_analysis(history)
            if "overfit_from_epoch" in info:
                ax.axvline(info["overfit_from_epoch"], color="grey", ls="--", lw=1)
        _save(fig, out_dir / name, paths)
    return paths


def _save(fig, path: Path, paths: list[Path]) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)


def _component_table(history: list[dict], f) -> list[str]:
    """The training loss by component per epoch (slr_fast.train.remedies), with the focal γ of a curriculum."""
    keys = sorted({k for h in history for k in h if k.startswith("loss_")})
    keys += ["focal_gamma"] if any("focal_gamma" in h for h in history) else []
    if not keys:
        return []
    lines = ["", "## Loss components", "", "Training loss terms averaged over each epoch's batches (unweighted).", "",
             "| epoch | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for h in history:
        lines.append(f"| {h['epoch']} | " + " | ".join(f(h.get(k), '.4f') for k in keys) + " |")
    return lines


def write_report(history: list[dict], out_dir: str | Path, config: dict, final_eval: dict | None = None) -> Path:
    """report.md: what was trained, the best epoch, the train/validation gap and where overfitting began."""
    out_dir = Path(out_dir)
    info = overfit_analysis(history)
    lines = ["# Training report", ""]
    lines.append(f"- model: `{config.get('model', {}).get('preset', '?')}`, kernels: `{config.get('kernels', '?')}`, "
                 f"epochs run: {len(history)}")
    if "best_epoch" in info:
        lines.append(f"- best epoch: {info['best_epoch']} (validation top-1 {info['best_val_acc']:.4f})")
    if "final_acc_gap" in info:
        lines.append(f"- final train − validation top-1 gap: {info['final_acc_gap']:+.4f}")
    if "final_loss_gap" in info:
        lines.append(f"- final validation − train loss gap: {info['final_loss_gap']:+.4f}")
    if "overfit_from_epoch" in info:
        lines.append(f"- overfitting from epoch {info['overfit_from_epoch']}: validation loss rose afterwards for good "
                     "while train loss kept falling — consider stronger augmentation, MixUp, dropout/drop-path, "
                     "fewer epochs (early stopping) or a lower peak rate for this stage")
    else:
        lines.append("- no overfitting onset detected (validation loss did not end more than 5 % above its minimum "
                     "while train loss fell)")
    if final_eval:
        lines += ["", "## Held-out evaluation", ""]
        if final_eval.get("checkpoint"):
            lines.append(f"- weights: {final_eval['checkpoint']} (`slr-fast eval --checkpoint` on the run folder "
                         "evaluates the same file)")
        lines.append(f"- split `{final_eval.get('split')}`: top-1 {final_eval['top1']:.4f}, top-5 "
                     f"{final_eval['top5']:.4f}, loss {final_eval.get('loss', float('nan')):.4f}, "
                     f"{final_eval['samples']} samples")
        if final_eval.get("per_signer"):
            lines.append("- " + signer_summary(final_eval["per_signer"], lowest=5))
        pairs = final_eval.get("confused_pairs", [])[:5]
        if pairs:
            lines.append("- most confused: " + "; ".join(
                f"{p['true']} → {p['predicted']} ({p['count']})" for p in pairs))
    lines += ["", "## Epochs", "", "| epoch | lr | train loss | train acc | val loss | val acc | samples/s |",
              "|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    for h in history:
        lines.append(f"| {h['epoch']} | {f(h.get('lr'), '.2e')} | {f(h.get('train_loss'), '.4f')} | "
                     f"{f(h.get('train_acc'), '.4f')} | {f(h.get('val_loss'), '.4f')} | {f(h.get('val_acc'), '.4f')} | "
                     f"{f(h.get('samples_per_s'), '.0f')} |")
    lines += _component_table(history, f)
    lines += ["", "Plots: `loss.png`, `accuracy.png`, `lr.png`.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
