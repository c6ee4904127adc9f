"""Where a checkpoint's bytes come from: a path or the bytes of an upload (:class:`_Source`),
checked for size and kind before anything is read, and the messages for a text file given in
place of a checkpoint (Git LFS pointers, HTML pages of failed downloads)."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kd_core.checkpoints.errors import CheckpointError


@dataclass
class _Source:
    """An opened input: its name for messages, its path or bytes, its size and first bytes."""

    name: str
    path: Path | None
    data: bytes | None
    size: int
    head: bytes

    def read_all(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def read_range(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start : start + length]
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(length)

    def torch_target(self) -> str | BinaryIO:
        return str(self.path) if self.path is not None else io.BytesIO(self.data or b"")


def _format_size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _open_source(source: object, name: str | None, max_bytes: int) -> _Source:
    """Check ``source`` (a path or bytes) and read its first bytes; a :class:`CheckpointError`
    for a missing, unreadable, too large or non-regular file, a directory or another type."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "uploaded file"
        if len(data) > max_bytes:
            raise CheckpointError(
                f"{label} is {_format_size(len(data))}, over the {_format_size(max_bytes)} "
                "limit; pass a larger max_bytes if you expect a checkpoint this big."
            )
        return _Source(label, None, data, len(data), data[:64])
    if not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(
            f"A checkpoint source must be a path (str or pathlib.Path) or bytes, "
            f"got {type(source).__name__}."
        )
    path = Path(source).expanduser()
    label = name or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{label}: no such file; check the path.") from None
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(info.st_mode):
        found: list[str] = []
        with contextlib.suppress(OSError):
            suffixes = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}
            found = sorted(p.name for p in path.iterdir() if p.suffix in suffixes)[:5]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise CheckpointError(f"{label} is a directory; pass a checkpoint file inside it{hint}.")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{label} is not a regular file; pass a checkpoint file.")
    if info.st_size > max_bytes:
        raise CheckpointError(
            f"{label} is {_format_size(info.st_size)}, over the {_format_size(max_bytes)} "
            "limit; pass a larger max_bytes if you expect a checkpoint this big."
        )
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    return _Source(label, path, None, info.st_size, head)


def _looks_like_text(sample: bytes) -> bool:
    """Whether ``sample`` (a file's first bytes) reads as text rather than binary data."""
    if not sample or b"\x00" in sample:
        return False
    printable = sum(b in b"\t\n\r\f" or 32 <= b < 127 or b >= 128 for b in sample)
    if printable / len(sample) < 0.95:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 3  # a character cut at the end of the sample
    return True


def _text_problem(src: _Source) -> str:
    """The message for a text file passed as a checkpoint."""
    text = src.read_range(0, 512).decode("utf-8", errors="replace")
    lowered = text.lstrip().lower()
    if lowered.startswith("version https://git-lfs"):
        return (
            f"{src.name} is a Git LFS pointer, not the weights; fetch the real file "
            "(git lfs pull) and load that."
        )
    if lowered.startswith(("<!doctype html", "<html")):
        return (
            f"{src.name} is an HTML page (a failed download?), not a checkpoint; download the "
            "file itself."
        )
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return (
        f"{src.name} is a text file (starts with {first!r}), not a checkpoint; kd_core reads "
        "PyTorch files (.pth/.pt) and .safetensors files."
    )
