"""The "Angular distributions" page under AppTest on 250 shapes test images with the bundled
teacher and its vanilla and AMD students: what each tab shows, and which controls change what
(the margin moves the boundary and the pos map, never θ)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import kd_core.analysis.angular
from kd_core.analysis.errors import AnalysisError
from kd_core.figures.margin import boundary_angle

APP = Path(__file__).resolve().parents[2] / "app.py"
SAMPLES = 250
MODELS = ["resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"]


@pytest.fixture
def app(app_folders: Path) -> AppTest:
    """The page on 250 samples (set before the first run, so 1,000 are never extracted)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["ws_samples"] = SAMPLES
    _ok(at.run())
    return _ok(at.switch_page("app_pages/angular.py").run())


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _open(at: AppTest, tab: str) -> AppTest:
    at.session_state["angular_tab"] = tab
    return _ok(at.run())


def _widget(elements, label: str):
    [widget] = [w for w in elements if w.label == label]
    return widget


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _array(values) -> np.ndarray:
    """A trace's data: a list, or plotly's typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(values, dict):
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        shape = [int(side) for side in str(values.get("shape", flat.size)).split(",")]
        return flat.reshape(shape)
    return np.asarray(values)


def _names(chart: dict) -> list[str]:
    return [trace.get("name") for trace in chart["data"]]


def _annotations(chart: dict) -> list[str]:
    return [a.get("text", "") for a in chart["layout"].get("annotations", [])]


def _title(chart: dict) -> str:
    return chart["layout"]["title"]["text"]


def test_default_render_shows_the_histograms_at_the_deepest_stage_with_masks(app):
    assert app.title.values == ["Angular distributions"]
    assert "arccos(1/32) = 88.2°" in " ".join(app.caption.values)
    assert _widget(app.main.selectbox, "Stage").value == "layer3"
    assert _widget(app.main.selectbox, "Stage").options == ["layer1", "layer2", "layer3"]
    assert _widget(app.main.selectbox, "Positive positions").value == "mask"
    assert _widget(app.main.slider, "Positive fraction").proto.disabled  # the mask decides
    assert [t.label for t in app.tabs] == [
        "θ histograms", "Summary", "One sample", "Classes", "Hypersphere",
    ]  # fmt: skip
    [histogram] = _charts(app)
    sides = ("positive", "negative")
    assert _names(histogram) == [f"{model}: {side}" for model in MODELS for side in sides]
    assert "θ at layer3" in _title(histogram)
    assert _annotations(histogram) == [
        f"pos = neg at {boundary_angle(1.35):.1f}° (m = 1.35)",
        "pos = neg at 60.0° (m = 1)",
    ]
    for trace in histogram["data"]:  # shares of positions per bin, in percent
        assert _array(trace["y"]).sum() == pytest.approx(100.0)


def test_summary_table_has_the_teacher_and_both_students(app):
    _open(app, "Summary")
    [table] = app.dataframe
    rows = table.value
    assert list(rows["model"]) == MODELS
    assert set(rows["stage"]) == {"layer3"}
    assert list(rows["samples"]) == [SAMPLES] * 3
    teacher, vanilla, amd = rows.to_dict("records")
    assert teacher["Wasserstein (°)"] == 0.0
    assert teacher["cosine"] == pytest.approx(1.0)
    for student in (vanilla, amd):
        assert 0.0 < student["Wasserstein (°)"] < 10.0
        assert 0.5 < student["cosine"] < 1.0
    for record in (teacher, vanilla, amd):  # θ near 90°, positives clearly below negatives
        assert 60.0 < record["mean θ pos (°)"] < record["mean θ neg (°)"] < 90.0
        assert record["separation"] > 0.5
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels.count("Summary, every stage (CSV)") == 1  # beside the table of one stage
    [separation] = _charts(app)
    assert _names(separation) == [m for m in MODELS for _ in range(2)]
    assert separation["data"][0]["x"] == ["layer1", "layer2", "layer3"]


def test_margin_moves_the_boundary_and_the_pos_map_but_not_theta(app):
    [before] = _charts(app)
    _widget(app.main.slider, "Angular margin m").set_value(2.0)
    [after] = _charts(_ok(app.run()))
    assert _annotations(after)[0] == f"pos = neg at {boundary_angle(2.0):.1f}° (m = 2)"
    for moved, still in zip(after["data"], before["data"], strict=True):
        np.testing.assert_array_equal(_array(moved["y"]), _array(still["y"]))

    maps = {}
    for margin in (2.0, 1.0):
        _widget(app.main.slider, "Angular margin m").set_value(margin)
        [figure] = _charts(_open(app, "One sample"))
        maps[margin] = {trace["name"]: _array(trace["z"]) for trace in figure["data"]}
    for model in MODELS:
        np.testing.assert_array_equal(maps[2.0][f"{model}: q"], maps[1.0][f"{model}: q"])
        np.testing.assert_array_equal(maps[2.0][f"{model}: neg"], maps[1.0][f"{model}: neg"])
        assert not np.allclose(maps[2.0][f"{model}: pos"], maps[1.0][f"{model}: pos"])
        # pos = s cos(m θ) with θ = arccos q: s q at m = 1, s (2 q² − 1) at m = 2
        q = maps[1.0][f"{model}: q"]
        np.testing.assert_allclose(maps[1.0][f"{model}: pos"], 64.0 * q, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(maps[2.0][f"{model}: pos"], 64.0 * (2 * q**2 - 1), atol=1e-5)


def test_teacher_topk_split_counts_a_fifth_of_each_map(app):
    [mask_histogram] = _charts(app)
    _widget(app.main.selectbox, "Positive positions").set_value("teacher_topk")
    _ok(app.run())
    assert not _widget(app.main.slider, "Positive fraction").proto.disabled
    [topk_histogram] = _charts(app)
    assert _names(topk_histogram) == _names(mask_histogram)
    teacher_positive = [_array(h["data"][0]["y"]) for h in (topk_histogram, mask_histogram)]
    assert not np.array_equal(*teacher_positive)
    _open(app, "Summary")
    rows = app.dataframe[0].value  # the counts are hidden on the page, but in the frame
    # the teacher's top round(0.2 x 8 x 8) = 13 of 64 positions, for every model
    assert list(rows["positives"]) == [13 * SAMPLES] * 3
    assert list(rows["negatives"]) == [51 * SAMPLES] * 3


def test_stage_change_redraws_the_histograms(app):
    _widget(app.main.selectbox, "Stage").set_value("layer1")
    [histogram] = _charts(_ok(app.run()))
    assert "θ at layer1" in _title(histogram)
    # on 32 x 32 maps nearly every angle lies between 70° and 90°
    for trace in histogram["data"]:
        centres = _array(trace["x"])
        assert _array(trace["y"])[centres < 70].sum() < 1.0  # percent of the positions
    assert histogram["layout"]["yaxis"]["type"] == "log"  # by default: the 90° bins dominate
    app.toggle(key="angular_log_axis").set_value(False)
    [linear] = _charts(_ok(app.run()))
    assert linear["layout"]["yaxis"].get("type") in (None, "linear")
    assert _names(linear) == _names(histogram)


def test_choosing_a_sample_shows_its_image_class_and_maps(app):
    _open(app, "One sample")
    [figure] = _charts(app)
    assert "AMD maps of sample 0 at layer3" in _title(figure)
    assert len(figure["data"]) == 3 * 4  # models x (q, pos, neg, attentive)
    _widget(app.main.number_input, "Sample").set_value(7)
    [figure] = _charts(_ok(app.run()))
    assert "AMD maps of sample 7 at layer3" in _title(figure)
    [caption] = [m for m in app.markdown.values if m.startswith("Image #")]
    assert "Predictions: resnet20 teacher:" in caption
    class_name = caption.split("class ")[1].split(".")[0]
    assert f"(class {class_name})" in _title(figure)
    [image] = app.image
    _widget(app.main.number_input, "Sample").set_value(8)
    assert _ok(app.run()).image[0].value != image.value


def test_classes_tab_shows_one_class_and_the_pivot(app):
    _open(app, "Classes")
    class_box = _widget(app.main.selectbox, "Class")
    assert class_box.options[:3] == ["circle", "square", "triangle"]
    class_box.set_value("star")
    _ok(app.run())
    chosen, pivot = app.dataframe
    assert list(chosen.value["model"]) == MODELS
    assert set(chosen.value["class"]) == {"star"}
    stars = chosen.value["samples"]
    assert stars.nunique() == 1 and 0 < stars.iloc[0] < SAMPLES  # the stars among the samples
    assert list(pivot.value.columns) == ["class", *MODELS]
    assert len(pivot.value) == 10
    [boxes] = _charts(app)
    assert _names(boxes) == MODELS


def test_hypersphere_switches_model_and_colouring(app):
    _open(app, "Hypersphere")
    [table] = app.dataframe
    assert list(table.value["model"]) == MODELS
    inter, intra = (table.value[f"{k}-class angle (°)"] for k in ("inter", "intra"))
    assert (inter > intra).all()
    [sphere] = _charts(app)
    assert MODELS[0] in _title(sphere)
    assert _names(sphere)[:3] == ["unit sphere", "circle", "square"]
    _widget(app.main.selectbox, "Model").set_value(MODELS[2])
    _widget(app.main.radio, "Colour by").set_value("prediction")
    [sphere] = _charts(_ok(app.run()))
    assert _title(sphere).startswith(f"{MODELS[2]}: ")
    assert _names(sphere) == ["unit sphere", "correct", "wrong"]
    points = sum(len(_array(trace["x"])) for trace in sphere["data"][1:])
    assert points == SAMPLES


def test_no_students_asks_for_one(app):
    app.multiselect(key="ws_students").set_value([])
    app.run()
    assert not app.exception
    assert any("at least one student" in i.value for i in app.info)
    assert not app.get("plotly_chart")


def test_an_analysis_error_is_a_message_not_a_traceback(app, monkeypatch):
    def fail(*args, **kwargs):
        raise AnalysisError("Something about the samples was wrong; select more samples.")

    monkeypatch.setattr(kd_core.analysis.angular, "angular_report", fail)
    app.session_state["angular_tab"] = "Summary"
    app.run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "Something about the samples was wrong; select more samples."
    ]
