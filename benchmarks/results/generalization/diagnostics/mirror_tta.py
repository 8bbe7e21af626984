"""Mirror test-time augmentation on finished study runs: the test top-1 of each run's last-stage best.pt, plain,
on the mirrored sequences alone, and with the mean of the two softmaxes (the engine's mirror op at p = 1).

    python benchmarks/results/generalization/diagnostics/mirror_tta.py STUDY_DIR RECIPE [RECIPE ...]

STUDY_DIR is an `slr-fast study --out` folder (its runs and its data-seed<N>.zarr stores); one line per run, then
the whole result as one JSON line.
"""

import json
import sys
from pathlib import Path

import torch

from slr_fast.augment import AugmentPipeline
from slr_fast.engine import BatchProcessor
from slr_fast.layout import Layout
from slr_fast.loader import KeypointLoader, LoaderConfig
from slr_fast.preprocess import PreprocessConfig
from slr_fast.store import KeypointStore
from slr_fast.train.evaluate import predict_loader
from slr_fast.train.inference import load_model
from slr_fast.train.runtime import init_runtime

MIRROR = [{"op": "mirror", "p": 1.0}]


def split_probabilities(model, st: dict, store, rt, augment) -> tuple:
    """(softmax (N, K), labels (N,)) of the model on the store's test split, preprocessed as the run did."""
    proc = BatchProcessor(Layout.from_dict(st["layout"]), PreprocessConfig.from_dict(st["preprocess"]),
                          AugmentPipeline.from_config(augment) if augment else None, seed=0)
    loader = KeypointLoader(store, proc, LoaderConfig(batch_size=256, shuffle=False, drop_last=False, split="test",
                                                      classes=list(st["classes"]), rank=0, world_size=1))
    try:
        z, y, _ = predict_loader(model, loader, rt)
    finally:
        loader.close()
    return torch.softmax(torch.from_numpy(z), 1).numpy(), y


def main(root: Path, recipes: list[str]) -> dict:
    torch.set_num_threads(1)
    rt = init_runtime("cpu", "fp32")
    out: dict[str, list[dict]] = {}
    for recipe in recipes:
        for seed_dir in sorted((root / "runs" / recipe).glob("seed*")):
            seed = int(seed_dir.name[4:])
            model, st = load_model(seed_dir / "3-finetune2" / "best.pt", "cpu")
            store = KeypointStore.open(root / f"data-seed{1 + seed}.zarr")
            plain, y = split_probabilities(model, st, store, rt, None)
            mirrored, _ = split_probabilities(model, st, store, rt, MIRROR)
            row = dict(seed=seed, plain=float((plain.argmax(1) == y).mean()),
                       mirrored=float((mirrored.argmax(1) == y).mean()),
                       tta=float(((plain + mirrored).argmax(1) == y).mean()))
            out.setdefault(recipe, []).append(row)
            print(recipe, seed, f"plain {row['plain']:.3f} mirrored {row['mirrored']:.3f} tta {row['tta']:.3f}",
                  flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
