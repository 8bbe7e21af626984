"""Preprocessing: raw variable-length keypoint sequences to fixed (T, P, C) samples plus a presence mask.

`PreprocessConfig` holds the options; `reference` is the plain NumPy truth per sample; `compiled` (frame selection,
statistics, gather) and `collate` (resampling, mask, output rows) the Numba steps that
`slr_fast.engine.BatchProcessor` runs for a whole batch in one call.
"""

from slr_fast.preprocess.config import (
    DOMINANT_MODES,
    FLAG_EMPTY,
    FLAG_MIRRORED,
    FLAG_NO_HAND,
    FLAG_NO_POINTS,
    MASK_LEVELS,
    MASK_MODES,
    NORMALIZE_MODES,
    RESAMPLE_MODES,
    PreprocessConfig,
)

__all__ = ["PreprocessConfig", "FLAG_EMPTY", "FLAG_NO_HAND", "FLAG_NO_POINTS", "FLAG_MIRRORED", "NORMALIZE_MODES",
           "RESAMPLE_MODES", "MASK_MODES", "MASK_LEVELS", "DOMINANT_MODES"]
