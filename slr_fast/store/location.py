"""Where a store lives: a local directory or a URL opened through zarr's fsspec support (the `remote` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slr_fast.errors import UserInputError

StorePath = str | os.PathLike


def is_url(path: StorePath) -> bool:
    """True for `scheme://...` locations (s3://, gs://, memory://, file://, ...)."""
    return isinstance(path, str) and "://" in path


def zarr_store(path: StorePath, *, read_only: bool, storage_options: dict[str, Any] | None = None):
    """A zarr store object for a local path or a URL."""
    from zarr.storage import LocalStore

    if not is_url(path):
        if storage_options:
            raise UserInputError(f"storage_options are only for URLs, not the local path {os.fspath(path)!r}")
        return LocalStore(Path(path), read_only=read_only)
    try:
        import fsspec  # noqa: F401
        from zarr.storage import FsspecStore
    except ImportError as e:  # pragma: no cover - fsspec ships with the dev and remote extras
        raise ImportError(f"opening {path!r} needs fsspec: pip install 'slr-fast[remote]'") from e
    options = dict(storage_options or {})
    if path.startswith("file://"):
        # fsspec's local filesystem does not create parent folders of chunk files unless told to.
        options.setdefault("auto_mkdir", True)
    try:
        return FsspecStore.from_url(path, storage_options=options, read_only=read_only)
    except (ImportError, ValueError) as e:
        raise UserInputError(f"cannot open {path!r} through fsspec ({e}); for s3:// or gs:// install "
                             f"'slr-fast[remote]'") from e


def describe(path: StorePath) -> str:
    """The location as shown in messages."""
    return path if is_url(path) else os.fspath(path)
