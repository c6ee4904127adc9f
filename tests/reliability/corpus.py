"""The bad-input corpus: builders of the odd and broken files people feed the app.

Every builder returns bytes (or fills a folder) and is deterministic. A :class:`BadInput`
pairs the bytes with the phrase the refusal must contain: the phrase is what tells the user
what was wrong, so asserting it checks that the message is the right sentence, not just any
exception.

Example::

    for case in checkpoint_cases():
        with pytest.raises(CheckpointError, match=case.phrase):
            load_checkpoint(case.data, name=case.name)
"""

from __future__ import annotations

import builtins
import io
import pickle
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from kd_core.models import create_model


@dataclass(frozen=True)
class BadInput:
    """One bad input: an id for the test report, the bytes, the file name it arrives under and
    a phrase (regular expression) the message must contain."""

    id: str
    data: bytes
    name: str
    phrase: str


def assert_sentence(message: str, phrase: str) -> None:
    """``message`` is what a user should read: one line, a sentence (ends with ``.``), no
    traceback, and it contains ``phrase`` (a regular expression)."""
    assert "\n" not in message, message
    assert message.rstrip().endswith("."), message
    assert "Traceback" not in message and not message.startswith(("Error", "Exception")), message
    assert re.search(phrase, message), f"{phrase!r} not in {message!r}"


# ---------------------------------------------------------------- checkpoints


def torch_bytes(obj: object, *, zip_format: bool = True) -> bytes:
    """``torch.save(obj)`` into bytes (the zip format, or the legacy pickle format)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def state_dict_bytes(arch: str = "resnet8", num_classes: int = 10) -> bytes:
    """A valid checkpoint: the bare ``state_dict`` of registry network ``arch``."""
    torch.manual_seed(0)
    return torch_bytes(create_model(arch, num_classes=num_classes).state_dict())


class FileCreatingPayload:
    """Unpickling this object calls ``open(sentinel, "w")``: it creates the sentinel file.

    The classic code-running pickle (``__reduce__`` returns a callable and its arguments); a
    loader that executes pickled code leaves the sentinel behind, one that refuses does not.
    """

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (builtins.open, (str(self.sentinel), "w"))


def code_running_cases(sentinel: Path) -> list[BadInput]:
    """The payload as a torch zip checkpoint, a legacy torch file and a plain pickle, each under
    a ``model`` key next to real-looking weights."""
    payload = {"extra": FileCreatingPayload(sentinel), "model": {"fc.weight": torch.zeros(2, 2)}}
    phrase = "not allowed when loading weights only"
    return [
        BadInput("torch_zip", torch_bytes(payload), "evil.pt", phrase),
        BadInput("torch_legacy", torch_bytes(payload, zip_format=False), "evil.pth", phrase),
        BadInput("plain_pickle", pickle.dumps(payload, protocol=2), "evil_pickle.pt", phrase),
    ]


def unrelated_network_bytes() -> bytes:
    """Weights of a small ``nn.Sequential`` MLP: a network no registry entry describes."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return torch_bytes(mlp.state_dict())


def zip_without_torch_data() -> bytes:
    """A ZIP archive (the container torch.save uses) that holds a text file, not data.pkl."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "not a checkpoint")
    return buffer.getvalue()


def checkpoint_cases() -> list[BadInput]:
    """Files that are not usable checkpoints, with the phrase of each refusal."""
    valid = state_dict_bytes()
    return [
        BadInput("truncated", valid[: len(valid) // 2], "cut.pt", "truncated or corrupted"),
        BadInput(
            "random_bytes",
            np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "noise.pt",
            "not a checkpoint: its first bytes match no known format",
        ),
        BadInput("empty", b"", "empty.pt", r"is empty \(0 bytes\)"),
        BadInput("text", b"epoch,loss\n1,0.5\n2,0.4\n", "log.pt", "is a text file"),
        BadInput(
            "html_page",
            b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
            "download.pt",
            "HTML page",
        ),
        BadInput(
            "git_lfs_pointer",
            b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1234\n",
            "lfs.pt",
            "Git LFS pointer",
        ),
        BadInput("zip_not_torch", zip_without_torch_data(), "archive.pt", "not a PyTorch"),
        BadInput("single_tensor", torch_bytes(torch.zeros(3, 3)), "tensor.pt", "single tensor"),
        BadInput("empty_dict", torch_bytes({}), "nothing.pt", "empty dict"),
        BadInput(
            "dict_without_weights",
            torch_bytes({"epoch": 3, "note": "no weights"}),
            "meta.pt",
            "but no weights",
        ),
        BadInput(
            "unrelated_network",
            unrelated_network_bytes(),
            "mlp.pt",
            "match no registered architecture",
        ),
    ]


# ---------------------------------------------------------------- images


def image_bytes(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    """``image`` encoded as ``format``."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise_image(width: int = 40, height: int = 30) -> Image.Image:
    """A deterministic RGB noise image."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width x height`` pixels but whose pixel data is one
    row: decoding it would fail, so a size refusal proves the header was read first."""
    png = bytearray(image_bytes(Image.new("L", (1, 1))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    png[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[ihdr - 4 : ihdr + 13]))  # type + 13 data bytes
    png[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(png)


def animated_gif(colours: list[int]) -> bytes:
    """A GIF with one 16 x 16 frame per grey level in ``colours``."""
    frames = [Image.new("L", (16, 16), colour) for colour in colours]
    return image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


@dataclass(frozen=True)
class OddImage:
    """A valid but unusual image, its size and the RGB value of its pixel (0, 0) once loaded."""

    id: str
    data: bytes
    size: tuple[int, int]
    pixel: tuple[int, int, int]


def bad_image_cases() -> list[BadInput]:
    """Images that must be refused, with the phrase of each refusal."""
    png = image_bytes(noise_image())
    jpeg = image_bytes(noise_image(), "JPEG")
    return [
        BadInput("truncated_png", png[: len(png) // 2], "cut.png", "damaged or truncated"),
        BadInput(
            "png_garbage_after_signature",
            png[:8] + b"\x00" * 64,
            "garbage.png",
            "not an image in a supported format",
        ),
        BadInput("truncated_jpeg", jpeg[: len(jpeg) // 2], "cut.jpg", "damaged or truncated"),
        BadInput(
            "jpeg_garbage_after_marker",
            jpeg[:2] + b"\x00" * 64,
            "garbage.jpg",
            "not an image in a supported format",
        ),
        BadInput(
            "ten_thousand_squared",
            png_claiming_size(10_000, 10_000),
            "huge.png",
            r"10000 x 10000 = 100\.0 megapixels; the limit is 50 megapixels",
        ),
        BadInput("text", b"this is a caption, not a picture\n", "caption.png", "not an image"),
    ]


def odd_image_cases() -> list[OddImage]:
    """Valid images of unusual kinds, with what :func:`kd_core.data.load_image` must give."""
    sixteen_bit = Image.fromarray(np.full((12, 10), 257 * 100, dtype=np.uint16))
    return [
        OddImage(
            "one_pixel", image_bytes(Image.new("RGB", (1, 1), (10, 20, 30))), (1, 1), (10, 20, 30)
        ),
        OddImage(
            "grayscale", image_bytes(Image.new("L", (20, 30), 128)), (20, 30), (128, 128, 128)
        ),
        OddImage(
            "rgba_transparent",  # fully transparent red: shown on white
            image_bytes(Image.new("RGBA", (20, 30), (255, 0, 0, 0))),
            (20, 30),
            (255, 255, 255),
        ),
        OddImage("sixteen_bit", image_bytes(sixteen_bit), (10, 12), (100, 100, 100)),
        OddImage("animated_gif", animated_gif([40, 200, 90]), (16, 16), (40, 40, 40)),
        OddImage(
            "cmyk_jpeg",
            image_bytes(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"),
            (8, 8),
            (255, 255, 255),
        ),
    ]


# ---------------------------------------------------------------- datasets

CIFAR10_FILES = (
    "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
    "test_batch", "batches.meta",
)  # fmt: skip
"""What ``cifar-10-python.tar.gz`` extracts into ``cifar-10-batches-py``."""


def cifar10_folder(root: Path, kind: str) -> Path:
    """Fill ``root`` with a CIFAR-10 layout of ``kind`` and return ``root``:

    - ``good``: every file, 4 images per batch (the format of the real archive);
    - ``missing``: nothing (``root`` is not even created);
    - ``empty``: an empty ``root``;
    - ``wrong_structure``: the files directly in ``root``, not in ``cifar-10-batches-py``;
    - ``file_is_folder``: ``test_batch`` is a folder (unreadable as a file);
    - ``corrupt``: every file holds garbage bytes;
    - ``truncated``: every batch cut in half;
    - ``wrong_shape``: batches of 10 x 10 images;
    - ``wrong_classes``: a meta file naming 5 classes.
    """
    if kind == "missing":
        return root
    root.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        return root
    folder = root if kind == "wrong_structure" else root / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    width = 100 if kind == "wrong_shape" else 3072
    batch = pickle.dumps({"data": np.zeros((4, width), np.uint8), "labels": [0, 1, 2, 3]})
    names = [f"class{i}" for i in range(5 if kind == "wrong_classes" else 10)]
    meta = pickle.dumps({"label_names": names})
    for name in CIFAR10_FILES:
        content = meta if name == "batches.meta" else batch
        if kind == "corrupt":
            content = b"\x00garbage, not a pickle"
        elif kind == "truncated" and name != "batches.meta":
            content = content[: len(content) // 2]
        if kind == "file_is_folder" and name == "test_batch":
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(content)
    return root


def image_folder(root: Path, kind: str) -> Path:
    """Fill ``root`` with an image-folder layout of ``kind`` and return ``root``:

    - ``good``: ``cat/0.png`` (red) and ``dog/0.png`` (blue);
    - ``missing``: nothing; ``empty``: an empty folder; ``is_a_file``: ``root`` is a PNG file;
    - ``no_class_folders``: images directly in ``root``;
    - ``class_without_images``: ``cat/`` with an image, ``dog/`` with a text file only;
    - ``train_without_test``: ``train/cat/0.png`` and no ``test/`` or ``val/``;
    - ``corrupt_image``: ``good`` plus ``dog/1.png``, a truncated PNG.
    """
    red = image_bytes(Image.new("RGB", (8, 8), (255, 0, 0)))
    blue = image_bytes(Image.new("RGB", (8, 8), (0, 0, 255)))
    if kind == "missing":
        return root
    if kind == "is_a_file":
        root.parent.mkdir(parents=True, exist_ok=True)
        root.write_bytes(red)
        return root
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "good": {"cat/0.png": red, "dog/0.png": blue},
        "empty": {},
        "no_class_folders": {"0.png": red, "1.png": blue},
        "class_without_images": {"cat/0.png": red, "dog/notes.txt": b"no pictures here"},
        "train_without_test": {"train/cat/0.png": red},
        "corrupt_image": {"cat/0.png": red, "dog/0.png": blue, "dog/1.png": red[: len(red) // 2]},
    }[kind]
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root
