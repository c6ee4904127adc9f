"""The Distill page under AppTest: defaults from the preset, the CPU time estimate, errors that
start nothing, and a tiny run launched, followed until it finishes and added to the workspace."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

RUN_TIMEOUT_S = 120


@pytest.fixture
def app(open_page) -> AppTest:
    """The page, with runs, uploads and caches in temporary folders (``app_folders``)."""
    return open_page("distill.py")


def _widget(elements, label: str):
    """The widget of the page (not the sidebar's) labelled ``label``."""
    [widget] = [w for w in elements if w.label == label]
    return widget


def _number(at: AppTest, label: str):
    return _widget(at.main.number_input, label)


def _click(at: AppTest, label: str) -> AppTest:
    _widget(at.main.button, label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _estimate(at: AppTest) -> str:
    [text] = [i.value for i in at.info if i.value.startswith("Estimated time")]
    return text


def test_defaults_come_from_the_workspace_and_the_shapes_preset(app):
    assert _widget(app.main.selectbox, "Teacher").value == "bundled:teacher_resnet20"
    assert _widget(app.main.selectbox, "Student architecture").value == "resnet8"
    assert _widget(app.main.selectbox, "Preset").value == "shapes-short"
    assert _number(app, "Epochs").value == 3
    assert _number(app, "Batch size").value == 128
    assert _number(app, "Learning rate").value == pytest.approx(0.1)
    assert _number(app, "ce weight").value == 1.0
    assert _number(app, "amd weight").value == 1000.0
    assert _number(app, "kd weight").value == 0.0
    assert _number(app, "AMD margin m").value == pytest.approx(1.35)
    assert any("No GPU here" in c or "GPU here:" in c for c in app.caption.values)
    # 3 epochs x (50,000 x (1/1280 + 1/(3 x 500)) + 10,000 / (3 x 1280)) s = 225 s
    assert "~3 min 45 s" in _estimate(app)
    assert "resnet20 teacher" in _estimate(app)


def test_estimate_follows_epochs_limits_and_teacher(app):
    _widget(app.main.selectbox, "Teacher").set_value("none")
    _number(app, "Limit training images").set_value(6400)
    _number(app, "Epochs").set_value(3).run()
    assert not app.exception
    # 3 x (6,400 / 1280 + 10,000 / (3 x 1280)) s = 22.8 s
    text = _estimate(app)
    assert "~23 s" in text and "6,400 training images x 3 epochs" in text
    assert "teacher" not in text


def test_preset_fills_the_schedule(app):
    _widget(app.main.selectbox, "Preset").set_value("cifar100").run()
    assert not app.exception
    assert _number(app, "Epochs").value == 240
    assert _number(app, "Batch size").value == 64


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Teacher": "none"}, "no teacher is chosen"),
        ({"Learning rate": 0.0}, "lr must be a finite number > 0"),
    ],
)
def test_a_bad_configuration_shows_a_sentence_and_starts_nothing(app, tmp_path, changes, message):
    for label, value in changes.items():
        elements = app.main.selectbox if label == "Teacher" else app.main.number_input
        _widget(elements, label).set_value(value)
    _click(app.run(), "Launch run")
    assert any(message in e.value for e in app.error), app.error.values
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


def test_a_tiny_run_is_followed_until_it_finishes_and_joins_the_workspace(app, tmp_path):
    _widget(app.main.selectbox, "Teacher").set_value("none")
    _number(app, "amd weight").set_value(0.0)
    _number(app, "Epochs").set_value(1)
    _number(app, "Batch size").set_value(32)
    _number(app, "Limit training images").set_value(64)
    _number(app, "Limit test images").set_value(64)
    _widget(app.text_input, "Run name").set_value("tiny")
    _click(app.run(), "Launch run")
    assert not app.error, app.error.values
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.name.endswith("-tiny")]
    assert any(h.value == f"Run {run_dir.name}" for h in app.subheader)

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not [s for s in app.success if s.value.startswith("Finished")]:
        assert time.monotonic() < deadline, (run_dir / "train.log").read_text()[-2000:]
        assert not app.error, [app.error.values, (run_dir / "train.log").read_text()[-2000:]]
        time.sleep(1)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
    [finished] = [s.value for s in app.success if s.value.startswith("Finished")]
    assert "after 1 epochs" in finished
    assert "Trains on cpu · fp32 · data through the loader." in app.caption.values
    [chart] = app.get("plotly_chart")
    assert '"test top-1"' in chart.proto.spec

    _click(app, "Open in the other pages")
    assert f"run:{run_dir.name}" in app.session_state["ws_students"]
    _click(app, "Use as teacher")
    assert app.session_state["ws_teacher"] == f"run:{run_dir.name}"


def test_compare_mode_starts_with_the_classroom_budget_and_each_mode_keeps_its_preset(app):
    _widget(app.main.radio, "Mode").set_value("Compare methods").run()
    assert _widget(app.main.selectbox, "Preset").value == "shapes-classroom"
    assert _number(app, "Epochs").value == 1
    assert _number(app, "Limit training images").value == 30_000
    _widget(app.main.radio, "Mode").set_value("One run").run()
    assert not app.exception
    assert _widget(app.main.selectbox, "Preset").value == "shapes-short"
    assert _number(app, "Epochs").value == 3
    assert _number(app, "Limit training images").value == 0


def test_compare_mode_trains_the_classroom_set_side_by_side_and_fills_the_workspace(app, tmp_path):
    _widget(app.main.radio, "Mode").set_value("Compare methods").run()
    assert not app.exception
    assert _widget(app.main.multiselect, "Methods").value == ["vanilla", "kd", "at", "amd"]
    assert not [h for h in app.header if h.value == "Objective"]  # the methods set their own
    _number(app, "Epochs").set_value(1)
    _number(app, "Batch size").set_value(32)
    _number(app, "Limit training images").set_value(64)
    _number(app, "Limit test images").set_value(64)
    _widget(app.text_input, "Run name").set_value("class")
    _click(app.run(), "Launch the group")
    assert not app.error, app.error.values
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert [name.split("-", 2)[2] for name in runs] == [
        "class-amd", "class-at", "class-kd", "class-vanilla",
    ]  # fmt: skip
    put = "Put the group's students in the workspace"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not [b for b in app.main.button if b.label == put]:
        assert time.monotonic() < deadline, [d.value for d in app.dataframe]
        assert not app.error, app.error.values
        time.sleep(1)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
    [table] = [d.value for d in app.main.dataframe]
    assert list(table["method"]) == ["vanilla", "KD", "AT", "AMD"]
    assert set(table["state"]) == {"finished"}
    assert table["attention cosine"].between(0, 1).all()  # the group's teacher probes them all
    charts = [chart.proto.spec for chart in app.get("plotly_chart")]
    assert len(charts) == 2 and "attention cosine" in charts[1]
    _click(app, put)
    assert {f"run:{name}" for name in runs} <= set(app.session_state["ws_students"])


def test_compare_mode_without_methods_or_teacher_starts_nothing(app, tmp_path):
    _widget(app.main.radio, "Mode").set_value("Compare methods").run()
    _widget(app.main.multiselect, "Methods").set_value([]).run()
    _click(app, "Launch the group")
    assert any("at least one method" in e.value for e in app.error)
    _widget(app.main.multiselect, "Methods").set_value(["vanilla", "amd"])
    _widget(app.main.selectbox, "Teacher").set_value("none").run()
    _click(app, "Launch the group")
    assert any("AMD distil from a teacher" in e.value for e in app.error)
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]
