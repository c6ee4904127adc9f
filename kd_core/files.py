"""Atomic file writes: the one way kd_core writes a file that a reader, a crash or a second
process may meet half-written (checkpoints, run status, data and feature caches)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, mode: int | None = None) -> None:
    """Write through ``write`` into a temporary file ``.<name>.<random>.tmp`` beside ``path``,
    flush it to disk, then rename it over ``path``: a reader sees the old file or the new one,
    never a part. The temporary file is removed on any error (the error propagates); ``mode``
    sets the permissions (``mkstemp`` makes the file private)."""
    directory = path.parent
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where directories can be synced
        directory_handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_handle)
        finally:
            os.close(directory_handle)
