"""The checkpoint inspector under AppTest: summary, layers, uploads good and bad, evaluation,
and the buttons that change the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kd_core.checkpoints import save_checkpoint
from kd_core.models import create_model

PAGE = "inspector.py"


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _button(at: AppTest, label: str):
    [button] = [b for b in at.button if b.label == label]
    return button


def test_bundled_teacher_is_summarised(open_page) -> None:
    at = open_page(PAGE)
    metrics = _metrics(at)
    assert metrics["Architecture"] == "resnet20"
    assert metrics["Classes"] == "10"
    assert (
        metrics["Parameters"]
        == f"{sum(p.numel() for p in create_model('resnet20', 10).parameters()):,}"
    )
    stages, layers = at.dataframe[0].value, at.dataframe[1].value
    assert list(stages["stage"]) == ["layer1", "layer2", "layer3"]
    assert list(stages["output (B x C x H x W)"]) == [
        "1 x 16 x 32 x 32", "1 x 32 x 16 x 16", "1 x 64 x 8 x 8",
    ]  # fmt: skip
    assert layers["parameters"].sum() == 272_474 and "fc" in set(layers["layer"])


def test_evaluate_shows_accuracy_and_figures(open_page) -> None:
    at = open_page(PAGE)
    _button(at, "Evaluate").click().run()
    assert not at.exception and not at.error
    metrics = _metrics(at)
    assert float(metrics["Top-1"].rstrip("%")) >= 95.0  # the bundled teacher
    assert metrics["Images"] == "10,000"
    titles = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert len(titles) == 2 and "Confusion matrix" in titles[1]


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="inspector_source").set_value("Upload a file").run()
    at.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_of_a_good_checkpoint(open_page, tmp_path: Path) -> None:
    path = tmp_path / "mine.pt"
    save_checkpoint(path, create_model("wrn_16_1", num_classes=10), "wrn_16_1", 10)
    at = _upload(open_page(PAGE), "mine.pt", path.read_bytes())
    assert _metrics(at)["Architecture"] == "wrn_16_1"
    assert "usable checkpoint" in at.success[0].value
    assert len(list((tmp_path / "uploads").glob("*.pt"))) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"this is text, not weights\n" * 4, "text"), (b"\x00" * 100, "mine.pt")],
)
def test_upload_of_a_bad_file_shows_why(open_page, app_folders: Path, data: bytes, message: str):
    at = _upload(open_page(PAGE), "mine.pt", data)
    assert len(at.error) == 1 and message in at.error[0].value
    assert not (app_folders / "uploads").exists() or not list((app_folders / "uploads").iterdir())
    at.radio(key="inspector_source").set_value("From the list").run()  # the app is still up
    assert _metrics(at)["Architecture"] == "resnet20"


def test_use_as_student_adds_it_to_the_workspace(open_page) -> None:
    at = open_page(PAGE)
    at.selectbox(key="inspector_key").set_value("bundled:student_resnet8_kd").run()
    _button(at, "Use as student").click().run()
    assert not at.exception
    assert "bundled:student_resnet8_kd" in at.multiselect(key="ws_students").value
    _button(at, "Use as teacher").click().run()
    assert at.selectbox(key="ws_teacher").value == "bundled:student_resnet8_kd"
    assert "bundled:student_resnet8_kd" not in at.multiselect(key="ws_students").value
