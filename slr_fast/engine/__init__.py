"""The engine: raw keypoint sequences to fixed training batches, preprocessing and augmentation of a whole batch in
one compiled Numba call (no Python per sample).

- `processor.BatchProcessor`: the public API (alloc, process, warmup, the NumPy reference of the same batch);
- `kernels`: the compiled kernels and what they do per sample;
- `compiling`: the notice a first compile gives, and `warm_cache` (`make setup`) so that no command waits for one.

    from slr_fast.engine import BatchProcessor
    bp = BatchProcessor(store.layout, PreprocessConfig(T=64), "default", seed=0)
    batch = bp.process(frames, offsets, indices, epoch, bp.alloc(256), sample_ids=global_indices)
"""

from slr_fast.engine.compiling import compile_seconds, warm_cache
from slr_fast.engine.kernels import LayoutTables, layout_tables
from slr_fast.engine.processor import (
    PARALLEL_LOCK,
    PARALLEL_MIN_BATCH,
    BatchProcessor,
    augment_preview,
    preview_figure,
)

__all__ = ["BatchProcessor", "LayoutTables", "PARALLEL_LOCK", "PARALLEL_MIN_BATCH", "augment_preview",
           "compile_seconds", "layout_tables", "preview_figure", "warm_cache"]
