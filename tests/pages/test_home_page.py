"""The home page under Streamlit's AppTest (no browser): it runs, shows the formula, the metrics
and the margin figure, and the margin slider drives the boundary metric."""

from __future__ import annotations

import ast
import base64
import dataclasses
from pathlib import Path

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

import kd_core
from app_pages._shared import plotly_chunk
from kd_core.figures.margin import boundary_angle, margin_figure

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figure_svg(at: AppTest) -> str:
    """The margin figure: Home's one image, an SVG sent as a data URI."""
    [image] = at.get("image")
    [img] = image.proto.imgs
    prefix = "data:image/svg+xml;base64,"
    assert img.url.startswith(prefix)
    return base64.b64decode(img.url[len(prefix) :]).decode()


def _metric(at: AppTest, label: str):
    [metric] = [m for m in at.metric if m.label == label]
    return metric


def test_home_renders(app):
    assert app.title.values == ["Angular margin-based distillation (AMD)"]
    latex = " ".join(app.latex.values)
    for piece in (r"\arccos q", r"s\cos(m\theta)", r"\operatorname{softplus}", r"L_{\mathrm{G+L}}"):
        assert piece in latex
    assert not app.get("plotly_chart")  # Home loads no plotly.js (see _figure_svg)
    assert "<polyline" in _figure_svg(app)
    chosen = _metric(app, "Boundary angle, chosen margin")
    assert chosen.value == f"{boundary_angle(1.35):.1f}°"
    assert chosen.proto.delta.endswith("° vs m = 1")
    assert chosen.proto.delta.startswith("-")
    assert _metric(app, "Boundary angle, no margin (m = 1)").value == "60.0°"


def test_sidebar_shows_versions_and_device(app):
    import app_pages._models  # noqa: F401  (what serve.py imports after the first page: names it)

    app.run()
    sidebar = " ".join(app.sidebar.markdown.values)
    assert f"kd_core `{kd_core.__version__}`" in sidebar
    assert "torch `" in sidebar
    assert any(f"compute device: `{d}" in sidebar for d in ("cuda", "mps", "cpu"))


def test_margin_slider_moves_the_boundary(app):
    [slider] = [s for s in app.slider if s.label == "Angular margin m"]
    assert slider.value == pytest.approx(1.35)
    slider.set_value(1.0).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == "60.0°"

    slider.set_value(2.5).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == f"{boundary_angle(2.5):.1f}°"


def test_scale_slider_changes_the_chart_not_the_boundary(app):
    [scale] = [s for s in app.select_slider if s.label == "Scale s"]
    scale.set_value(4.0).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == f"{boundary_angle(1.35):.1f}°"
    assert "scale s = 4<" in _figure_svg(app)


def test_home_preloads_plotly_for_the_next_page(app):
    """Home draws no plotly figure, so it asks the browser to load Streamlit's plotly chunk
    when idle. The chunk must exist in the installed Streamlit: an upgrade that renames it
    fails here rather than silently dropping the preload."""
    chunk = plotly_chunk()
    assert chunk is not None and chunk.startswith("PlotlyChart.") and chunk.endswith(".js")
    [html] = app.get("html")
    assert html.proto.unsafe_allow_javascript
    assert f'"{chunk}"' in html.proto.body and "requestIdleCallback" in html.proto.body


def _recorded(monkeypatch, method: str) -> dict[str, tuple[object, str]]:
    """What ``MediaFileManager.<method>`` (``add``, or ``add_deferred`` for a file built on
    click) is given from now on, by file name: (the data or its callable, the mimetype)."""
    saved = {}
    original = getattr(MediaFileManager, method)

    def remember(self, data, mimetype, coordinates, file_name=None, **options):
        saved[file_name] = (data, mimetype)
        return original(self, data, mimetype, coordinates, file_name, **options)

    monkeypatch.setattr(MediaFileManager, method, remember)
    return saved


def test_figure_follows_the_sliders_and_downloads_as_svg(app, monkeypatch):
    saved = _recorded(monkeypatch, "add")
    [slider] = [s for s in app.slider if s.label == "Angular margin m"]
    slider.set_value(2.0).run()
    assert not app.exception
    svg = _figure_svg(app)
    assert svg == margin_figure(2.0, 64.0)
    assert f"boundary m = 2: {boundary_angle(2.0):.1f}°" in svg
    assert [b.proto.label for b in app.get("download_button")].count("Figure (SVG)") == 1
    data, mimetype = saved["amd_margin_m2_s64.svg"]
    assert mimetype == "image/svg+xml"
    assert (data.decode() if isinstance(data, bytes) else data) == svg


def test_workspace_at_a_glance(open_page):
    at = open_page()
    table, bundled = at.dataframe
    rows = table.value
    assert list(rows["role"]) == ["teacher", "student", "student"]
    assert list(rows["architecture"]) == ["resnet20", "resnet8", "resnet8"]
    assert list(rows["checkpoint"]) == ["resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"]
    teacher, students = rows["top-1 (%)"][0], rows["top-1 (%)"][1:]
    assert teacher >= 95.0 and students.between(40, teacher - 8).all()
    every = bundled.value
    assert list(every["checkpoint"]) == [
        "resnet20 teacher", "resnet8 vanilla", "resnet8 KD", "resnet8 AT", "resnet8 AMD",
        "resnet8 AMD global+local", "resnet8 AMD+KD",
    ]  # fmt: skip
    assert every["top-1 (%)"].notna().all()


def test_every_figure_of_every_page_gets_the_shared_plotly_config():
    """Every ``st.plotly_chart`` call in app_pages passes ``config=FIGURE_CONFIG``."""
    calls = []
    for path in sorted((APP.parent / "app_pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "plotly_chart":
                config = [k.value for k in node.keywords if k.arg == "config"]
                calls.append((path.name, node.lineno, [ast.unparse(c) for c in config]))
    assert len(calls) >= 15
    assert all(config == ["FIGURE_CONFIG"] for _, _, config in calls), calls


def test_every_table_of_every_page_has_a_csv_download():
    """Pages draw tables only through ``data_table`` (a table and its CSV download): the one
    ``st.dataframe`` call in app_pages is the one inside it."""
    calls = []
    for path in sorted((APP.parent / "app_pages").glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in [None, *ast.walk(tree)]:
            if function is not None and not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function or tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                    "dataframe", "table", "data_editor",
                ):  # fmt: skip
                    calls.append((path.name, function.name if function else None, node.lineno))
    inside = {(name, line) for name, owner, line in calls if owner == "data_table"}
    assert len(inside) == 1 and {(n, line) for n, _, line in calls} == inside, calls


def test_report_download_writes_the_workspace_report(open_page, monkeypatch):
    """The button's file is built on click (a deferred download): the callable it registers
    returns the report of the sidebar's workspace."""
    registered = _recorded(monkeypatch, "add_deferred")
    at = open_page()
    [samples] = [s for s in at.sidebar.select_slider if s.label == "Samples"]
    samples.set_value(100).run()
    assert not at.exception
    [button] = [b for b in at.get("download_button") if b.proto.label.startswith("Report")]
    assert button.proto.label == "Report of this workspace (HTML)"
    build, mimetype = registered["amd_report.html"]
    assert mimetype == "text/html"
    page = build()
    assert page.startswith("<!DOCTYPE html>") and "100 images of the test split" in page
    assert "<h2>Attention maps</h2>" in page and "<th>method</th>" in page
    for name in ("resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"):
        assert f"<td>{name}</td>" in page


def test_no_report_without_students(open_page):
    at = open_page()
    [students] = [m for m in at.sidebar.multiselect if m.label == "Students"]
    students.set_value([]).run()
    assert not at.exception
    assert not [b for b in at.get("download_button") if b.proto.label.startswith("Report")]
    assert any("Choose at least one student" in c for c in at.caption.values)


def test_a_report_that_fails_after_the_click_says_why_in_its_file(open_page, monkeypatch):
    """After the click no message can be shown on the page: a build that fails (here, the
    data folder is emptied meanwhile) gives a file that says what was wrong instead."""
    import kd_core.report.html as html_module
    from kd_core.report.build import ReportError

    def refuse(request):
        raise ReportError("The test split has no images; choose another folder.")

    registered = _recorded(monkeypatch, "add_deferred")
    monkeypatch.setattr(html_module, "build_report", refuse)
    open_page()
    build, _ = registered["amd_report.html"]
    page = build()
    assert page.startswith("<!DOCTYPE html>") and "could not be built" in page
    assert "The test split has no images; choose another folder." in page


def test_the_report_check_reads_the_weights_of_a_file_that_records_no_class_count(
    open_page, monkeypatch
):
    """Bundled files record their class count beside them; for students that do not (None),
    the check loads the weights and finds the teacher's count (without reading them, the
    students' None would differ from the teacher's 10)."""
    import kd_core.workspace as workspace_module

    real = workspace_module.bundled_checkpoints

    def unrecorded(*args, **kwargs):
        return [
            e if e.role == "teacher" else dataclasses.replace(e, num_classes=None)
            for e in real(*args, **kwargs)
        ]

    monkeypatch.setattr(workspace_module, "bundled_checkpoints", unrecorded)
    at = open_page()
    assert [b for b in at.get("download_button") if b.proto.label.startswith("Report")]
    assert not [c for c in at.caption.values if "classes" in c]
