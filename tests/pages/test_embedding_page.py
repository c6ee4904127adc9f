"""The "Feature embedding" page under AppTest with the bundled teacher and its vanilla and AMD
students: the default PCA map (checked against a numpy PCA of the teacher's features), t-SNE
and its perplexity check, logits in a joint map, colouring, a lasso selection, the CKA heatmaps
and the case without students.

Until the page is registered in ``app_pages._shared.PAGES``, a small entry script in
``tmp_path`` mimics ``app.py`` with this page only. AppTest cannot drive a plotly selection, so
:func:`_select` sends the widget state the browser would send (the chart's id and its selection
JSON) through AppTest's run with explicit widget states.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kd_core.analysis.feature_cache import feature_set_for
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"]
CLASSES = [
    "circle", "square", "triangle", "star", "cross", "ring", "ellipse", "hexagon", "heart",
    "arrow",
]  # fmt: skip


def _open(samples: int) -> AppTest:
    """The page run once on ``samples`` samples (set before the first run)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["ws_samples"] = samples
    _ok(at.run())
    return _ok(at.switch_page("app_pages/embedding.py").run())


@pytest.fixture
def app(app_folders: Path) -> AppTest:
    return _open(250)


@pytest.fixture
def small_app(app_folders: Path) -> AppTest:
    return _open(100)


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _widget(elements, label: str):
    [widget] = [w for w in elements if w.label == label]
    return widget


def _array(values) -> np.ndarray:
    """A trace's data: a list, or plotly's typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(values, dict):
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        shape = [int(side) for side in str(values.get("shape", flat.size)).split(",")]
        return flat.reshape(shape)
    return np.asarray(values)


def _map_chart(at: AppTest):
    charts = [c for c in at.get("plotly_chart") if c.proto.id.endswith("embedding_map")]
    return charts[0] if charts else None


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def _heatmaps(at: AppTest) -> list[dict]:
    specs = [_spec(c) for c in at.get("plotly_chart")]
    return [s for s in specs if s["data"][0]["type"] == "heatmap"]


def _panels(spec: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per panel title: sample indices (sorted), their points, and the trace name of each."""
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    axes = [f"x{k}" if k > 1 else "x" for k in range(1, len(titles) + 1)]
    panels = {}
    for title, axis in zip(titles, axes, strict=True):
        traces = [t for t in spec["data"] if t.get("xaxis", "x") == axis]
        index = np.concatenate([_array(t["customdata"]) for t in traces])
        xy = np.concatenate([np.c_[_array(t["x"]), _array(t["y"])] for t in traces])
        names = np.concatenate([[t["name"]] * len(_array(t["x"])) for t in traces])
        order = np.argsort(index)
        panels[title] = {"index": index[order], "xy": xy[order], "name": names[order]}
    return panels


def _select(at: AppTest, samples: list[int]) -> AppTest:
    """Select the points of ``samples`` on the map, as the browser reports a lasso selection
    (``customdata`` of each point is its sample index)."""
    chart = _map_chart(at)
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    points = [{"curve_number": 0, "point_index": 0, "customdata": s} for s in samples]
    selection = {"points": points, "point_indices": [0] * len(points), "box": [], "lasso": [{}]}
    state.string_value = json.dumps({"selection": selection})
    return _ok(at._run(states))


@pytest.fixture
def teacher_features():
    """The teacher's features on the page's 250 samples, computed here without the page."""
    loaded = load_checkpoint(ROOT / "assets/checkpoints/teacher_resnet20.pt")
    dataset = create_dataset("shapes", split="test", augment=False)
    return feature_set_for(
        loaded.model, dataset, "test/shapes", name="teacher", arch=loaded.arch, samples=250
    )


def test_default_pca_map_one_panel_per_model_and_cka(app, teacher_features):
    assert app.title.values == ["Feature embedding"]
    assert app.main.markdown.values[0].startswith("Each sample becomes a point")  # no stray text
    assert _widget(app.main.selectbox, "Method").value == "pca"
    assert _widget(app.main.selectbox, "Features").value == "pooled"
    layout = _widget(app.main.radio, "Layout")
    assert layout.value == "aligned" and layout.proto.disabled  # pooled: no joint map
    assert any("Joint embedding is off: Pooled features" in c for c in app.caption.values)
    assert _widget(app.main.slider, "Perplexity (t-SNE)").proto.disabled
    spec = _spec(_map_chart(app))
    assert spec["layout"]["title"]["text"].startswith("PCA map of 250 samples")
    assert spec["layout"]["xaxis"]["title"]["text"] == "PC 1 (feature units)"
    panels = _panels(spec)
    assert list(panels) == MODELS
    for panel in panels.values():
        np.testing.assert_array_equal(panel["index"], teacher_features.indices.numpy())
        assert set(panel["name"]) <= set(CLASSES)
    # the teacher's panel is the PCA of its pooled features (each axis up to its sign)
    pooled = teacher_features.pooled.double().numpy()
    centred = pooled - pooled.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    reference = centred @ eigenvectors[:, np.argsort(eigenvalues)[::-1][:2]]
    np.testing.assert_allclose(np.abs(panels[MODELS[0]]["xy"]), np.abs(reference), atol=1e-3)
    names = np.array(CLASSES)[teacher_features.labels.numpy()]
    np.testing.assert_array_equal(panels[MODELS[0]]["name"], names)

    assert any("Drag a lasso around points" in i.value for i in app.info)
    download, projector = app.get("download_button")
    assert download.proto.label == "Coordinates (CSV)"
    assert projector.proto.label == "Features for TensorBoard's projector (zip)"
    assert [t.label for t in app.tabs] == MODELS[1:]  # one CKA tab per student
    heatmaps = _heatmaps(app)
    assert len(heatmaps) == 2
    for heatmap, student in zip(heatmaps, MODELS[1:], strict=True):
        [trace] = heatmap["data"]
        values = _array(trace["z"])
        assert values.shape == (3, 3)
        assert trace["y"] == ["layer1", "layer2", "layer3"]
        assert np.all((values >= 0) & (values <= 1))
        assert student in heatmap["layout"]["title"]["text"]
    cka_caption = "Linear CKA of the raw stage features on 250 samples"
    assert any(cka_caption in c for c in app.caption.values)


def test_tsne_map_and_too_few_samples_for_the_perplexity(small_app):
    _widget(small_app.main.selectbox, "Method").set_value("tsne")
    _ok(small_app.run())  # the perplexity slider is enabled for t-SNE only
    _widget(small_app.main.slider, "Perplexity (t-SNE)").set_value(20)
    _ok(small_app.run())
    spec = _spec(_map_chart(small_app))
    assert spec["layout"]["title"]["text"].startswith("t-SNE map of 100 samples")
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1 (arbitrary units)"
    assert all(len(p["index"]) == 100 for p in _panels(spec).values())
    assert any("10 to 30 s for thousands" in c for c in small_app.caption.values)

    _widget(small_app.main.slider, "Perplexity (t-SNE)").set_value(50)
    small_app.run()
    assert not small_app.exception
    assert [e.value for e in small_app.error] == [
        "t-SNE needs more samples than 3 x perplexity (50), got 100: select at least 151 "
        "samples or lower the perplexity (below 33.3333)."
    ]
    assert _map_chart(small_app) is None
    assert len(_heatmaps(small_app)) == 2  # the CKA section still runs


def test_logits_in_a_joint_map_then_back_to_pooled(app):
    _widget(app.main.selectbox, "Features").set_value("logits")
    _ok(app.run())
    layout = _widget(app.main.radio, "Layout")
    assert not layout.proto.disabled
    layout.set_value("joint")
    _ok(app.run())
    [caption] = [c for c in app.caption.values if "embedded together" in c]
    assert caption.startswith("PC 1 and PC 2 keep ")
    panels = _panels(_spec(_map_chart(app)))
    assert list(panels) == MODELS
    stacked = np.concatenate([p["xy"] for p in panels.values()])
    scale = np.abs(stacked).max()
    # one PCA of all 750 rows: centred together, not panel by panel
    np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-5 * scale)

    _widget(app.main.selectbox, "Features").set_value("pooled")
    _ok(app.run())
    layout = _widget(app.main.radio, "Layout")
    assert layout.value == "aligned" and layout.proto.disabled


def test_colour_by_correct_splits_each_panel(app, teacher_features):
    _widget(app.main.radio, "Colour by").set_value("correct")
    _ok(app.run())
    spec = _spec(_map_chart(app))
    assert "coloured by correct / wrong prediction" in spec["layout"]["title"]["text"]
    assert {t["name"] for t in spec["data"]} == {"correct", "wrong"}
    teacher = _panels(spec)[MODELS[0]]
    np.testing.assert_array_equal(teacher["name"] == "wrong", ~teacher_features.correct.numpy())


def test_a_selection_shows_the_samples_images_and_attention(app):
    panels = _panels(_spec(_map_chart(app)))
    chosen = [int(i) for i in panels[MODELS[0]]["index"][[3, 10, 40]]]
    _select(app, [chosen[1], chosen[0], chosen[2], chosen[0]])  # one sample in two panels
    [table] = app.dataframe
    assert list(table.value["sample"]) == chosen
    assert list(table.value.columns) == ["sample", "class", *MODELS]
    for column in MODELS:
        assert all(value.endswith(("✓", "✗")) for value in table.value[column])
    [gallery] = app.image
    classes = table.value["class"]
    assert gallery.captions == [f"#{s} {c}" for s, c in zip(chosen, classes, strict=True)]
    assert [t.label for t in app.tabs][:3] == [f"#{s}" for s in chosen]
    specs = [_spec(c) for c in app.get("plotly_chart")]
    overlays = [s for s in specs if "deepest stage" in s["layout"]["title"]["text"]]
    assert len(overlays) == 3
    assert overlays[0]["layout"]["title"]["text"].startswith(f"Image #{chosen[0]} (")
    assert not any("Drag a lasso around points" in i.value for i in app.info)

    _select(app, [int(i) for i in panels[MODELS[0]]["index"][:12]])
    assert len(app.dataframe[0].value) == 12
    assert len([t for t in app.tabs if t.label.startswith("#")]) == 8  # attention: first 8


def test_without_students_the_teacher_is_embedded_alone(app):
    app.multiselect(key="ws_students").set_value([])
    _ok(app.run())
    assert any("Only the teacher is shown" in i.value for i in app.info)
    assert any("CKA compares students with the teacher" in i.value for i in app.info)
    assert list(_panels(_spec(_map_chart(app)))) == [MODELS[0]]
    assert _heatmaps(app) == []
    assert _widget(app.main.radio, "Layout").proto.disabled
