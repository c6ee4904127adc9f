"""One image from a user (an upload, a path) turned into what a dataset's models expect.

:func:`load_image` reads PNG, JPEG, WebP, GIF, BMP or TIFF from bytes, a path or a file object
(also PPM) into an 8-bit RGB ``PIL.Image``:

- transparency (RGBA, LA, palette or RGB with a transparent colour) is composited **on white**,
  as a browser shows it on a white page, so transparent areas never turn black;
- grayscale and bilevel images are replicated to three channels; palette, CMYK and YCbCr
  images are converted; 16-bit images are scaled to 8 bits (``value / 257``);
- animated images (GIF, WebP, APNG) give their first frame;
- the EXIF orientation of photos is applied;
- images over :data:`MAX_PIXELS` (50 megapixels) are refused from their header, before the
  pixels are decoded.

Uploads and other file objects are read whole into memory first (they need not be seekable).

:func:`prepare_image` applies the test-time geometry of a dataset (centre square crop, resize
to 32 x 32 for ``shapes``/CIFAR, or resize 256 + centre crop 224 for ``imagefolder``) and its
normalisation, giving a 1 x 3 x H x W float tensor; with ``model=``, a timm model on
``imagefolder`` gets the image prepared by its own recipe (:mod:`~kd_core.data.model_inputs`).

Every failure (no such file, empty, corrupt, truncated, unsupported, too large) is an
:class:`ImageError`, a ``ValueError`` whose message is a sentence for the user.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn

from kd_core.data.model_inputs import input_recipe
from kd_core.data.registry import dataset_info
from kd_core.data.transforms import normalize
from kd_core.models.timm_models import input_transform

MAX_PIXELS = 50_000_000
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP, TIFF or PPM"
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_TRANSPARENT = ("RGBA", "RGBa", "LA", "La", "PA")

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Image.Image


class ImageError(ValueError):
    """An image that cannot be used, with a message that says why and what to do."""


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"The file {os.fspath(source)}"
    name = getattr(source, "name", None)
    return f"The image {name!r}" if isinstance(name, str) and name else "The image"


def _open(source: object):
    """A binary file object for ``source`` (the caller closes what it opened)."""
    what = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"{what} is empty (0 bytes).")
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageError(f"{what} does not exist.")
        if not path.is_file():
            raise ImageError(f"{what} is not a file (it is a folder or a device).")
        if path.stat().st_size == 0:
            raise ImageError(f"{what} is empty (0 bytes).")
        try:
            return path.open("rb"), True
        except OSError as error:
            raise ImageError(f"{what} cannot be opened ({error.strerror or error}).") from error
    if hasattr(source, "read"):  # an upload or an open file: read it whole (it may not seek)
        try:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)
            data = source.read()
        except (OSError, ValueError) as error:
            raise ImageError(f"{what} cannot be read ({error}).") from error
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{what} was opened as text; open it in binary mode ('rb').")
        if not data:
            raise ImageError(f"{what} is empty (0 bytes).")
        return io.BytesIO(data), True
    raise ImageError(
        f"Expected image bytes, a file path or a file object, got {type(source).__name__}."
    )


def _scale_to_uint8(values: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    values = values.astype(np.float64)
    if sixteen_bit:
        values = values / 257.0
    elif values.size and values.max() > 255:  # 32-bit integer or float images
        values = values / 257.0 if values.max() <= 65535 else values * (255.0 / values.max())
    elif values.size and values.dtype.kind == "f" and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: transparency composited on white, gray replicated, 16-bit
    scaled (the rules of the module docstring)."""
    mode = image.mode
    if mode in (*_SIXTEEN_BIT, "I", "F"):
        gray = _scale_to_uint8(np.asarray(image), sixteen_bit=mode in _SIXTEEN_BIT)
        return Image.fromarray(gray).convert("RGB")
    if mode in _TRANSPARENT or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # a copy, also for RGB: independent of the source file


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read ``source`` (bytes, a path, a binary file object or a ``PIL.Image``) into an 8-bit
    RGB ``PIL.Image`` (first frame, EXIF orientation applied). Images with more than
    ``max_pixels`` pixels are refused before decoding. Raises :class:`ImageError`."""
    what = _describe(source)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}.")
    if isinstance(source, Image.Image):
        _check_size(what, source.size, max_pixels)
        return _convert(what, source)
    file, owned = _open(source)
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(file, formats=FORMATS)
        except Image.DecompressionBombError as error:
            raise ImageError(
                f"{what} is too large to open safely ({error}); the limit is "
                f"{max_pixels / 1e6:g} megapixels: make it smaller first."
            ) from error
        except UnidentifiedImageError as error:
            raise ImageError(
                f"{what} is not an image in a supported format ({FORMAT_NAMES}), or it is corrupt."
            ) from error
        except OSError as error:
            raise ImageError(f"{what} cannot be read ({error}).") from error
        with image:
            _check_size(what, image.size, max_pixels)
            try:
                image.seek(0)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
            except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as error:
                raise ImageError(
                    f"{what} is damaged or truncated and cannot be decoded ({error})."
                ) from error
            return _convert(what, image)
    finally:
        if owned:
            file.close()


def _convert(what: str, image: Image.Image) -> Image.Image:
    try:
        return to_rgb(image)
    except (OSError, ValueError) as error:
        raise ImageError(
            f"{what} uses the colour mode {image.mode}, which cannot be converted to RGB ({error})."
        ) from error


def _check_size(what: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{what} has no pixels ({width} x {height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"{what} is {width} x {height} = {width * height / 1e6:.1f} megapixels; the limit "
            f"is {max_pixels / 1e6:g} megapixels: make it smaller first."
        )


def prepare_image(
    image: ImageSource,
    dataset: str = "shapes",
    *,
    model: nn.Module | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Tensor:
    """``image`` (anything :func:`load_image` accepts) as the 1 x 3 x S x S float tensor that
    models of ``dataset`` expect: the central square (a ``crop_fraction`` of the shorter side,
    as the dataset's test transform keeps) resized to ``image_size`` and normalised; or, for a
    ``model`` with its own input recipe on such a dataset, as that recipe prepares it
    (:mod:`~kd_core.data.model_inputs`)."""
    info = dataset_info(dataset)
    rgb = load_image(image, max_pixels=max_pixels)
    recipe = input_recipe(info, model) if model is not None else None
    if recipe is not None:
        return input_transform(recipe)(rgb).unsqueeze(0)
    width, height = rgb.size
    side = min(width, height) * info.crop_fraction
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    size = (info.image_size, info.image_size)
    resized = rgb.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
    return normalize(pixels.float().div_(255.0), info.mean, info.std).unsqueeze(0)
