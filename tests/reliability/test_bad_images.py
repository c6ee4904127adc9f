"""Bad and odd images, through ``kd_core.data.images`` and the attention page's upload: broken
ones are refused with a sentence (the oversized one from its header, before decoding), valid
odd ones load as RGB and become the models' 3 x H x W input, and the page keeps working."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kd_core.data import ImageError, load_image, prepare_image
from tests.reliability.corpus import (
    BadInput,
    OddImage,
    assert_sentence,
    bad_image_cases,
    image_bytes,
    noise_image,
    odd_image_cases,
)

BAD = bad_image_cases()
ODD = odd_image_cases()
GOOD = image_bytes(noise_image(), "PNG")


# ---------------------------------------------------------------- kd_core


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_bad_image_is_refused_with_a_reason(case: BadInput, tmp_path: Path) -> None:
    file = tmp_path / case.name
    file.write_bytes(case.data)
    for source in (case.data, file):
        with pytest.raises(ImageError) as refused:
            prepare_image(source, "shapes")
        assert_sentence(str(refused.value), case.phrase)
    assert str(file) in str(refused.value)  # a path is named in the message


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    """A header claiming 10,000 x 10,000 pixels over one row of data: decoding would report a
    truncated file; the refusal names the size, so the pixels were never decoded."""
    [huge] = [c for c in BAD if c.id == "ten_thousand_squared"]
    with pytest.raises(ImageError, match="megapixels") as refused:
        load_image(huge.data)
    assert "truncated" not in str(refused.value)
    with pytest.raises(ImageError, match=r"40 x 30 = 0\.0 megapixels; the limit is 0\.001"):
        load_image(GOOD, max_pixels=1000)


@pytest.mark.parametrize("case", ODD, ids=[c.id for c in ODD])
def test_an_odd_valid_image_loads_as_rgb_and_becomes_a_model_input(case: OddImage) -> None:
    image = load_image(case.data)
    assert image.mode == "RGB" and image.size == case.size
    assert image.getpixel((0, 0)) == case.pixel
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert pixels.shape == (3, case.size[1], case.size[0])
    for dataset, side in (("shapes", 32), ("imagefolder", 224)):
        tensor = prepare_image(case.data, dataset)[0]
        assert tensor.shape == (3, side, side) and tensor.dtype == torch.float32
        assert bool(torch.isfinite(tensor).all())


# ---------------------------------------------------------------- the attention page


@pytest.fixture(scope="module")
def attention(app_opener):
    """The attention page on the upload source (no dataset features needed), with the teacher
    and one student (each model costs a few maps per image)."""
    return app_opener(
        "attention.py", attention_source="An upload", ws_students=["bundled:student_resnet8_amd"]
    )


def _upload(at, name: str, data: bytes):
    at.file_uploader(key="attention_upload").set_value((name, data, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shows_maps(at, name: str) -> None:
    """The page's main output: the predictions table and the attention overlay figures."""
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2  # maps of every model, and the stage overlay
    assert any(f"{name}: central square resized to 32 x 32" in c.value for c in at.caption)
    assert len(at.dataframe) == 2  # predictions and agreement


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_the_attention_page_shows_why_an_image_is_refused(attention, module_project_env, case):
    before = module_project_env.snapshot()
    at = _upload(attention, case.name, case.data)
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, case.phrase)
    assert case.name in at.error[0].value
    assert not at.get("plotly_chart")
    assert module_project_env.snapshot() == before
    _shows_maps(_upload(at, "good.png", GOOD), "good.png")  # the page still works


@pytest.mark.parametrize("case", ODD, ids=[c.id for c in ODD])
def test_the_attention_page_explains_an_odd_valid_image(attention, case: OddImage) -> None:
    name = f"{case.id}.png"
    _shows_maps(_upload(attention, name, case.data), name)
