"""The original recipe on the study's draws 1-3 (seeds 0-2) with every synthetic signer's personal place offsets
(where each signer makes each location) set to zero; everything else as `slr-fast study`.

    python benchmarks/results/generalization/diagnostics/no_place_offsets.py OUT_DIR
"""

import dataclasses
import importlib
import sys

import numpy as np

from slr_fast.study import ORIGINAL, StudySize, run_study, scaled_recipe

generate = importlib.import_module("slr_fast.synth.generate")  # the module: the package exports a function so named
_make_signers = generate.make_signers


def _without_place_offsets(config):
    return [dataclasses.replace(s, place_offsets=np.zeros_like(s.place_offsets)) for s in _make_signers(config)]


if __name__ == "__main__":
    generate.make_signers = _without_place_offsets  # data are made in this process (one worker)
    size = StudySize.default()
    run_study(sys.argv[1], size, seeds=3, ablation_seeds=0, jobs=2, recipes={ORIGINAL: scaled_recipe(ORIGINAL, size)})
