"""Augmentation: ops declared as data (`ops`), pipelines of them (`pipeline`), Numba kernels (`compiled`), NumPy
references (`reference`) and counter-based randomness (`rng`)."""

from slr_fast.augment.ops import OPS, Op
from slr_fast.augment.pipeline import AugmentPipeline, default_pipeline, load_pipeline, named_pipeline

__all__ = ["OPS", "Op", "AugmentPipeline", "default_pipeline", "load_pipeline", "named_pipeline"]
