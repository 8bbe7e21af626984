"""slr_fast: sign language recognition from body keypoints.

Zarr keypoint stores -> Numba preprocessing/augmentation -> a hierarchical transformer whose attention, RMSNorm and
SwiGLU run through `kernels.registry` (Triton on capable GPUs, PyTorch elsewhere).
"""

__version__ = "0.1.0"
