"""The "Attention maps" page under AppTest: the default view and its maps, methods, browsing
the dataset, a chosen target class, and uploads good and bad."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from kd_core.analysis.attribution import attribution_maps
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.data.shapes import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[2]
PAGE = "attention.py"
MODELS = ["resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"]  # the default workspace


@pytest.fixture
def page(open_page: Callable[[str], AppTest]) -> AppTest:
    """The app on the attention page."""
    return open_page(PAGE)


def _check(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _traces(chart: dict, kind: str) -> list[dict]:
    return [trace for trace in chart["data"] if trace["type"] == kind]


def _outlines(chart: dict) -> list[dict]:
    return [t for t in _traces(chart, "scatter") if t.get("name") == "object mask"]


def _array(value: list | dict) -> np.ndarray:
    """A plotly array from a chart's JSON: a nested list or a base64 typed array."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape([int(d) for d in str(value["shape"]).split(",")])
    return np.asarray(value)


def _widget(widgets, label: str):
    [widget] = [w for w in widgets if w.label == label]
    return widget


def _method(at: AppTest, name: str) -> AppTest:
    return _check(at.selectbox(key="attention_method").set_value(name).run())


def _captions(at: AppTest) -> list[str]:
    [thumbs] = at.get("image")
    return thumbs.captions


def _png(size: tuple[int, int] = (60, 40)) -> bytes:
    image = Image.new("RGB", size, "navy")
    ImageDraw.Draw(image).ellipse((15, 5, 45, 35), fill="yellow")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_default_view_shows_activation_maps_and_agreement(page: AppTest) -> None:
    main, stages = _charts(page)
    heatmaps = _traces(main, "heatmap")
    assert [h["name"] for h in heatmaps] == [
        *MODELS,
        f"{MODELS[1]} − {MODELS[0]}",
        f"{MODELS[2]} − {MODELS[0]}",
    ]
    assert len(_outlines(main)) == 6  # the object outlined on every panel (shapes)
    assert len(_traces(stages, "heatmap")) == 3 * 5  # one row per stage

    # The teacher's panel is the AMD attention of its deepest stage on the chosen sample.
    index = int(_widget(page.selectbox, "Image").value)
    assert f"#{index}" in main["layout"]["title"]["text"]
    dataset = create_dataset("shapes", split="test", augment=False)
    teacher = load_checkpoint(ROOT / "assets/checkpoints/teacher_resnet20.pt").model
    expected = attribution_maps(teacher, dataset[index][0][None], method="activation")[0]
    np.testing.assert_allclose(_array(heatmaps[0]["z"]), expected.numpy(), atol=1e-5)

    predictions, agreement = (table.value for table in page.dataframe)
    assert list(predictions["model"]) == MODELS
    assert set(predictions["predicted class"]) <= set(CLASS_NAMES)
    assert predictions["confidence (%)"].between(10, 100).all()
    assert list(agreement["model"]) == MODELS
    assert np.isnan(agreement["cosine vs teacher"][0])
    assert agreement["cosine vs teacher"][1:].between(0, 1).all()
    assert agreement["attention inside object (%)"].between(0, 100).all()
    assert page.get("download_button")


def test_figures_come_from_the_cache_only_for_their_own_image(page: AppTest) -> None:
    """The overlay figures are cached per image, method and models: going to another image and
    back shows each image's own maps, equal to those first drawn."""

    def maps(at: AppTest) -> list[np.ndarray]:
        return [_array(h["z"]) for chart in _charts(_check(at)) for h in _traces(chart, "heatmap")]

    image = _widget(page.selectbox, "Image")
    first, other = image.value, image.options[-1]
    before = maps(page)
    image.set_value(int(other.split(" ")[0].lstrip("#"))).run()
    elsewhere = maps(page)
    _widget(page.selectbox, "Image").set_value(first).run()
    again = maps(page)
    assert len(before) == len(elsewhere) == len(again) == 5 + 3 * 5
    assert not all(np.array_equal(a, b) for a, b in zip(before, elsewhere, strict=True))
    for a, b in zip(before, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_rerun_builds_no_figure(page: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are shared from a resource cache: a rerun of the same view neither builds a
    plotly figure nor copies one through plotly's validators (as unpickling a ``go.Figure``
    from ``st.cache_data`` did, 0.2 s of every warm visit), and draws the same charts."""
    before = _charts(page)
    built = []
    init = go.Figure.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(go.Figure, "__init__", counted)
    assert _charts(_check(page.run())) == before
    assert built == []


def test_methods_gradcam_saliency_and_the_cost_warning(page: AppTest) -> None:
    _method(page, "gradcam")
    _check(page)
    [main] = _charts(page)  # no all-stages view beyond activation
    assert "Grad-CAM · layer3" in main["layout"]["title"]["text"]
    assert len(_traces(main, "heatmap")) == 5
    assert not page.radio(key="attention_target").disabled
    page.selectbox(key="attention_stage").set_value(0).run()
    assert "Grad-CAM · layer1" in _charts(_check(page))[0]["layout"]["title"]["text"]

    _method(page, "saliency")
    _check(page)
    [main] = _charts(page)
    assert main["layout"]["title"]["text"].startswith("Saliency")
    assert not [s for s in page.selectbox if s.label == "Stage"]
    assert not page.warning

    _method(page, "occlusion")
    _check(page)
    assert "50 forward passes" in page.warning[0].value
    assert "150 for the 3 models" in page.warning[0].value


def test_browse_by_class_and_filter_then_explain_a_chosen_class(page: AppTest) -> None:
    first = _captions(page)
    _widget(page.number_input, "Page").set_value(2).run()
    second = _captions(_check(page))
    assert len(first) == len(second) == 24 and not set(first) & set(second)
    assert any("page 2 of 42" in c for c in page.caption.values)  # 1,000 samples, 24 a page

    page.selectbox(key="attention_class").set_value(2).run()  # triangles
    captions = _captions(_check(page))
    assert captions and all(c.split(" ")[1] == "triangle" for c in captions)

    page.selectbox(key="attention_filter").set_value("teacher wrong").run()
    captions = _captions(_check(page))
    assert captions and all(c.endswith("✗") for c in captions)
    image = _widget(page.selectbox, "Image")
    second = int(image.options[-1].split(" ")[0].lstrip("#"))  # another image of the page
    image.set_value(second).run()
    _check(page)
    assert f"#{second}, true class triangle" in _charts(page)[0]["layout"]["title"]["text"]
    _method(page, "gradcam")
    _check(page)
    assert "Grad-CAM" in _charts(page)[0]["layout"]["title"]["text"]

    page.radio(key="attention_target").set_value("chosen").run()
    page.selectbox(key="attention_chosen_class").set_value(7).run()
    _check(page)
    predictions = page.dataframe[0].value
    assert list(predictions["map explains"]) == ["hexagon"] * 3
    _method(page, "activation")  # class-agnostic: the chosen class no longer applies
    assert not page.error and page.radio(key="attention_target").disabled
    assert list(page.dataframe[0].value["map explains"]) == ["same for every class"] * 3


def test_upload_good_and_corrupt_images(page: AppTest) -> None:
    page.radio(key="attention_source").set_value("An upload").run()
    _check(page)
    assert "Upload an image" in page.info[0].value

    page.file_uploader[0].set_value(("moon.png", _png(), "image/png")).run()
    _check(page)
    [main, _] = _charts(page)
    assert not _outlines(main)  # no object mask for an upload
    photo = _traces(main, "image")[0]["source"].split(",", 1)[1]
    assert Image.open(io.BytesIO(base64.b64decode(photo))).size == (32, 32)
    assert any("moon.png: central square resized to 32 x 32" in c for c in page.caption.values)
    assert "object" not in " ".join(page.dataframe[1].value.columns)

    page.file_uploader[0].set_value(("broken.png", b"\x89PNG not really", "image/png")).run()
    _check(page)
    assert len(page.error) == 1 and "broken.png" in page.error[0].value
    assert not page.get("plotly_chart")

    page.radio(key="attention_source").set_value("The dataset").run()  # the page still works
    _check(page)
    assert len(_charts(page)) == 2 and not page.error
