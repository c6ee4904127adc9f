"""Where generated data is kept between runs, and ``.npz`` files written safely.

The cache folder is ``$KD_CORE_CACHE`` when that is set, otherwise ``~/.cache/kd_core``.
Files are written to a temporary name and renamed, so a run that is interrupted never leaves a
half-written file under the final name; a file that cannot be read back anyway (truncated,
corrupt, wrong contents) is reported as missing, and the caller regenerates it.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kd_core.files import atomic_write

CACHE_ENV = "KD_CORE_CACHE"
DATA_ENV = "KD_CORE_DATA"


def cache_dir() -> Path:
    """The cache folder: ``$KD_CORE_CACHE`` if set (and not empty), else ``~/.cache/kd_core``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kd_core"


def default_data_root() -> Path:
    """Where downloadable datasets (CIFAR) are looked for when no ``root`` is given:
    ``$KD_CORE_DATA`` if set, else ``<cache folder>/datasets``."""
    configured = os.environ.get(DATA_ENV, "").strip()
    return Path(configured).expanduser() if configured else cache_dir() / "datasets"


def load_npz(path: Path, expected: Mapping[str, np.dtype]) -> dict[str, np.ndarray] | None:
    """The arrays in ``path`` if the file exists, reads back completely and holds every key of
    ``expected`` with that dtype; ``None`` otherwise (missing or unusable: regenerate)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in expected}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(arrays[key].dtype != np.dtype(dtype) for key, dtype in expected.items()):
        return None
    return arrays


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> bool:
    """Write ``arrays`` to ``path`` (uncompressed, atomically). Returns ``False``, with a
    warning, when the folder is not writable: the data is still usable, just not cached."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mode 0o644: a cache is not secret
        atomic_write(path, lambda file: np.savez(file, **arrays), mode=0o644)
    except OSError as error:
        warnings.warn(
            f"Could not write the cache file {path} ({error}); the data will be generated "
            f"again next time. Set {CACHE_ENV} to a writable folder to keep it.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True
