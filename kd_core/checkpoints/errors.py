"""The bottom of the package: :class:`CheckpointError`, the size limit, the version of kd_core's
own format, and the one message helper several modules share. Imports nothing of the package."""

from __future__ import annotations

MAX_CHECKPOINT_BYTES = 2 * 1024**3
"""Default size limit for :func:`load_checkpoint` (2 GiB); files are checked before reading."""

FORMAT_VERSION = 1
"""The version of kd_core's own checkpoint format written now (and the newest one read)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the problem and what to do."""


def _describe_keys(keys: list[str]) -> str:
    """The first keys of a dict, for a message: ``['a', 'b', ...]``."""
    shown = ", ".join(repr(k) for k in keys[:6])
    return f"[{shown}{', ...' if len(keys) > 6 else ''}]"
