"""Single uploaded images: every format and mode case is built here, in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from kd_core.data import ImageError, denormalize, load_image, prepare_image
from kd_core.data.images import MAX_PIXELS


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand (for 16-bit RGB and header-only files)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


RED = (200, 30, 40)


def test_rgb_png_from_bytes_path_and_file_object(tmp_path):
    data = encode(Image.new("RGB", (7, 5), RED))
    path = tmp_path / "red.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), path, str(path), io.BytesIO(data)):
        image = load_image(source)
        assert image.size == (7, 5) and np.all(pixels(image) == RED)


@pytest.mark.parametrize(("fmt", "tolerance"), [("JPEG", 6), ("WEBP", 6), ("BMP", 0), ("TIFF", 0)])
def test_other_formats(fmt, tolerance):
    image = load_image(encode(Image.new("RGB", (16, 16), RED), fmt))
    assert image.size == (16, 16)
    assert np.abs(pixels(image).astype(int) - RED).max() <= tolerance


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 128))
    result = pixels(load_image(encode(rgba)))
    assert result[0, 0].tolist() == [255, 255, 255]
    assert np.abs(result[0, 1].astype(int) - [127, 127, 255]).max() <= 1
    gray_alpha = Image.new("LA", (1, 1), (0, 0))
    assert pixels(load_image(encode(gray_alpha)))[0, 0].tolist() == [255, 255, 255]


def test_palette_images_with_and_without_a_transparent_index():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert pixels(load_image(encode(palette))).tolist() == [[[255, 0, 0], [0, 255, 0]]]
    transparent = pixels(load_image(encode(palette, transparency=0)))
    assert transparent.tolist() == [[[255, 255, 255], [0, 255, 0]]]


def test_grayscale_and_bilevel_are_replicated_to_three_channels():
    gray = pixels(load_image(encode(Image.new("L", (3, 3), 77))))
    assert gray.shape == (3, 3, 3) and np.all(gray == 77)
    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    assert pixels(load_image(encode(bilevel))).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535, 2570]], dtype=np.uint16)
    result = pixels(load_image(encode(Image.fromarray(values))))
    assert result[0, :, 0].tolist() == [0, 128, 255, 10]
    assert np.all(result == result[..., :1])


def test_sixteen_bit_rgb_png():
    row = b"\x00" + struct.pack(">6H", 65535, 32896, 0, 2570, 0, 65535)
    result = pixels(load_image(png_bytes(2, 1, 16, 2, row)))
    assert result.tolist() == [[[255, 128, 0], [10, 0, 255]]]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    assert np.all(pixels(load_image(buffer.getvalue())) == (255, 0, 0))


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(Image.new("RGB", (40, 20), RED), "JPEG", exif=exif.tobytes())
    assert load_image(data).size == (20, 40)


def test_a_pil_image_is_accepted_and_copied():
    original = Image.new("RGBA", (3, 3), (10, 20, 30, 255))
    image = load_image(original)
    assert image.mode == "RGB" and image is not original
    assert pixels(image)[0, 0].tolist() == [10, 20, 30]


def test_one_pixel_image_prepares_to_a_constant_tensor():
    tensor = prepare_image(encode(Image.new("RGB", (1, 1), RED)), "shapes")
    assert tensor.shape == (1, 3, 32, 32)
    restored = denormalize(tensor, "shapes")[0] * 255
    assert torch.allclose(restored, torch.tensor(RED, dtype=torch.float32).view(3, 1, 1), atol=0.5)


@pytest.mark.parametrize(
    ("name", "size"), [("shapes", 32), ("cifar10", 32), ("cifar100", 32), ("imagefolder", 224)]
)
def test_prepare_image_uses_each_datasets_size_and_statistics(name, size):
    tensor = prepare_image(Image.new("RGB", (300, 200), RED), name)
    assert tensor.shape == (1, 3, size, size) and tensor.dtype == torch.float32
    restored = denormalize(tensor, name)[0] * 255
    assert torch.allclose(restored, torch.tensor(RED, dtype=torch.float32).view(3, 1, 1), atol=0.5)


def test_prepare_image_keeps_the_central_square():
    wide = Image.new("RGB", (96, 32), (0, 0, 255))
    wide.paste(Image.new("RGB", (32, 32), (0, 255, 0)), (32, 0))  # green centre, blue sides
    restored = denormalize(prepare_image(wide, "cifar10"), "cifar10")[0]
    assert restored[1].min() > 0.95 and restored[2].max() < 0.05


def test_very_wide_image_is_prepared_without_blowing_up():
    tensor = prepare_image(encode(Image.new("RGB", (20_000, 1), RED)), "imagefolder")
    assert tensor.shape == (1, 3, 224, 224)


def test_prepare_image_rejects_unknown_datasets():
    with pytest.raises(ValueError, match="accepted names: shapes, cifar10"):
        prepare_image(Image.new("RGB", (4, 4)), "mnist")


# --- failures: every one is an ImageError (a ValueError) with a sentence ---------------------


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


def test_corrupt_bytes():
    for junk in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff"):
        with pytest.raises(ImageError, match="not an image in a supported format"):
            load_image(junk)


def test_truncated_png_and_jpeg():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = encode(noisy, fmt)
        with pytest.raises(ImageError, match="damaged or truncated"):
            load_image(data[: len(data) // 2])


def test_truncated_file_on_disk_names_the_file(tmp_path):
    data = encode(Image.new("RGB", (64, 64), RED), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[:60])
    with pytest.raises(ImageError, match=r"cut\.png"):
        load_image(path)


def test_empty_missing_and_folder_sources(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="Expected image bytes, a file path or a file object"):
        load_image(12345)


def test_unsupported_formats_are_refused():
    with pytest.raises(ImageError, match="supported format"):
        load_image(encode(Image.new("RGB", (8, 8)), "ICO"))
    with pytest.raises(ImageError, match="supported format"):
        load_image(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n")


def test_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    data = encode(Image.new("RGB", (100, 60), RED))

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match=r"100 x 60 .* the limit is 0\.005 megapixels"):
        load_image(data, max_pixels=5000)
    with pytest.raises(ImageError, match="megapixels"):
        prepare_image(data, "shapes", max_pixels=5000)


def test_a_huge_header_is_refused_from_the_header_alone():
    assert MAX_PIXELS == 50_000_000
    # 10,000 x 10,000 (over our limit, under Pillow's bomb error) and 20,000 x 20,000 (over
    # Pillow's): both described by a header of a few dozen bytes, never decoded.
    for side in (10_000, 20_000):
        with pytest.raises(ImageError, match="megapixels"):
            load_image(png_bytes(side, side, 8, 2, b""))


def test_file_objects_need_not_seek_but_must_be_binary(tmp_path):
    data = encode(Image.new("RGB", (3, 3), RED))

    class Stream(io.RawIOBase):  # readable, not seekable (a pipe, a network stream)
        def __init__(self):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert np.all(pixels(load_image(io.BufferedReader(Stream()))) == RED)
    (tmp_path / "a.png").write_bytes(data)
    with (
        open(tmp_path / "a.png", encoding="latin-1") as text,
        pytest.raises(ImageError, match="opened as text"),
    ):
        load_image(text)


def test_wide_integer_and_float_images_are_scaled():
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))  # mode I
    assert pixels(load_image(wide))[0, :, 0].tolist() == [0, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))  # mode F in [0, 1]
    assert pixels(load_image(unit))[0, :, 0].tolist() == [0, 128, 255]


def test_unconvertible_modes_and_bad_limits():
    with pytest.raises(ImageError, match="colour mode La, which cannot be converted to RGB"):
        load_image(Image.new("La", (2, 2)))
    with pytest.raises(ValueError, match="max_pixels must be a positive integer, got 0"):
        load_image(Image.new("RGB", (2, 2)), max_pixels=0)
