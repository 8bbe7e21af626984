"""Kernels for slr_fast's transformer: a PyTorch reference, Triton implementations and one registry.

Importing the package does no work: ``KernelConfig`` and ``get_op`` load :mod:`kernels.registry` on first access,
and Triton is imported only when a ``triton`` backend op is first called.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["KernelConfig", "get_op"]


def __getattr__(name: str) -> Any:
    """Lazily expose the registry's public names at package level."""
    if name in __all__:
        return getattr(importlib.import_module("kernels.registry"), name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
