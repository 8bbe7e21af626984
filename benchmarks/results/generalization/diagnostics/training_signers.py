"""More training signers against a better recipe: the study's two recipes on one draw of 85 synthetic signers (60
train, 5 validation, 20 test; every signer signs every class once), trained on the first 15, 30 and all 60 of the
training signers (nested subsets, the same validation and test signers, the same 80 epochs).

    python benchmarks/results/generalization/diagnostics/training_signers.py OUT_DIR

OUT_DIR/signers60 is `slr-fast study --out OUT_DIR/signers60 --one-draw --signers 60,5,20 --seeds 1
--ablation-seeds 0` (read back when already run); OUT_DIR/signers15 and signers30 hold a copy of its store in which
the other training signers' sequences have no split, so the runs never see them. One line per run, then the study
figures of each count as one JSON line.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from slr_fast.store import KeypointStore
from slr_fast.store.edit import write_splits
from slr_fast.study import StudySize, run_study, study_store

COUNTS = (15, 30, 60)


def subset_store(full: Path, out: Path, keep: int) -> None:
    """OUT/data.zarr (+ its marker): the full store with only the first `keep` training signers in the train split."""
    if (out / "data.zarr").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(full / "data.zarr", out / "data.zarr")
    shutil.copy(full / "data.json", out / "data.json")
    store = KeypointStore.open(out / "data.zarr")
    train = store.select("train")
    signers = np.unique(store.signers[train])
    kept = np.random.default_rng(0).permutation(signers)[:keep]
    codes = store.splits.copy()
    codes[train[~np.isin(store.signers[train], kept)]] = -1
    write_splits(out / "data.zarr", codes, method={"kind": "explicit", "training_signers": sorted(map(int, kept))})


def main(root: Path) -> dict:
    size = StudySize(signers=(60, 5, 20), vary_data=False)
    full = root / "signers60"
    study_store(full, size)
    figures = {}
    for n in COUNTS:
        out = full if n == 60 else root / f"signers{n}"
        if n != 60:
            subset_store(full, out, n)
        study = run_study(out, size, seeds=1, ablation_seeds=0, jobs=2)
        figures[n] = {name: recipe["runs"][0] for name, recipe in study["recipes"].items()}
    return figures


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
