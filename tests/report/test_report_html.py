"""The report as HTML: self-contained (plotly.js once, no URL to fetch), tables formatted,
written all or nothing; each figure on its own, with SVG/PDF only through kaleido."""

from __future__ import annotations

import html
import re
import sys

import plotly.io
import pytest
from plotly.offline import get_plotlyjs

from kd_core.analysis.errors import AnalysisError
from kd_core.checkpoints import CheckpointError
from kd_core.figures.style import FIGURE_CONFIG
from kd_core.report import html as report_html_module
from kd_core.report.build import ReportError, ReportTable
from kd_core.report.html import (
    PLOTLY_FILE,
    figure_div,
    report_file,
    report_html,
    table_html,
    write_figures,
    write_report,
)

MAX_BYTES = 10_000_000


@pytest.fixture(scope="module")
def page(report) -> str:
    return report_html(report)


def test_plotly_js_is_inlined_once_and_nothing_is_fetched(page, report):
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1
    assert page.count("<script") == 1 + len(report.figures)
    rest = page.replace(plotly_js, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", rest)
    assert "<link" not in rest and "@import" not in rest and "url(" not in rest
    assert "mathjax" not in rest.lower() and "cdn." not in rest
    assert "default-src 'none'" in rest  # the Content-Security-Policy forbids connections
    for figure in report.figures:
        assert f'id="figure-{figure.name}"' in rest
    assert rest.count('"format": "svg"') == len(report.figures)  # FIGURE_CONFIG on each
    assert FIGURE_CONFIG["toImageButtonOptions"]["format"] == "svg"


def test_the_report_fits_the_size_bound(page, report):
    size = len(page.encode("utf-8"))
    assert size < MAX_BYTES
    # Only the embedding grows with the sample count (the histograms have fixed bins, the
    # attention grid 8 images, CKA one cell per pair of stages): it keeps 3 MB to grow in
    # (the default workspace's report measures 6.7 MB: benchmarks/bench_report.py).
    [embedding] = [figure for figure in report.figures if figure.name == "embedding"]
    assert size - len(figure_div(embedding)) < MAX_BYTES - 3_000_000


@pytest.mark.parametrize(
    "error",
    [
        ReportError("The teacher has 10 classes but s: choose students of its classes."),
        CheckpointError("teacher.pt: the file is gone; choose another one."),
        FileNotFoundError("The data folder /x is gone; choose another folder."),
        AnalysisError("The test split has no images; choose another folder."),
    ],
)
def test_a_report_file_that_cannot_be_built_says_why_in_itself(error, monkeypatch):
    """Built after a click (the app's button), no message can be shown: the file says it."""

    def refuse(request):
        raise error

    monkeypatch.setattr(report_html_module, "build_report", refuse)
    document = report_file(request=None)
    assert document.startswith("<!DOCTYPE html>") and "could not be built" in document
    assert html.escape(str(error)) in document and "<script" not in document


def test_a_report_file_that_can_be_built_is_the_report(page, report, monkeypatch):
    monkeypatch.setattr(report_html_module, "build_report", lambda request: report)
    assert report_file(request=None) == page


def test_tables_format_numbers_and_escape_text():
    table = ReportTable(
        [{"model": "<b>T</b>", "score": 0.12345, "share (%)": 50.0, "top-1": None, "ok": True}],
        {"score": "%.3f", "share (%)": "%.1f"},
    )
    assert table_html(table) == (
        "<table><thead><tr><th>model</th><th>score</th><th>share (%)</th><th>top-1</th>"
        "<th>ok</th></tr></thead><tbody><tr><td>&lt;b&gt;T&lt;/b&gt;</td>"
        '<td class="number">0.123</td><td class="number">50.0</td><td>–</td><td>True</td>'
        "</tr></tbody></table>"
    )
    shown = table_html(ReportTable([{"a": 1, "b": 2}], columns=["b"]))
    assert "<th>a</th>" not in shown and '<td class="number">2</td>' in shown


def test_write_report_is_atomic_and_refuses_bad_places(report, tmp_path):
    out = write_report(tmp_path / "new" / "report.html", report)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
    blocker = tmp_path / "file.txt"
    blocker.write_text("mine")
    with pytest.raises(ReportError, match="is not a folder you can write to"):
        write_report(blocker / "report.html", report)
    with pytest.raises(ReportError, match="is a folder; give the name of the file"):
        write_report(tmp_path / "new", report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "new"]
    assert blocker.read_text() == "mine"


def test_figures_as_html_beside_one_plotly_file(report, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # not installed, whatever is here
    said = []
    written = write_figures(tmp_path / "figures", report, say=said.append)
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == sorted([PLOTLY_FILE] + [f"{f.name}.html" for f in report.figures])
    assert len(written) == len(names)
    page = (tmp_path / "figures" / "embedding.html").read_text()
    assert f'src="{PLOTLY_FILE}"' in page and get_plotlyjs()[:2000] not in page
    assert said == [
        "SVG and PDF need the static renderer kaleido (pip install kaleido, with a Chrome or "
        "Chromium on this machine); wrote the HTML figures only."
    ]


def test_svg_and_pdf_through_the_static_renderer(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report_html_module, "static_renderer_missing", lambda: None)
    rendered = []

    def fake_to_image(figure, format):
        rendered.append(format)
        return f"<{format} of {figure.layout.title.text}>".encode()

    monkeypatch.setattr(plotly.io, "to_image", fake_to_image)
    said = []
    write_figures(tmp_path, report, say=said.append)
    assert said == [] and rendered == ["svg", "pdf"] * len(report.figures)
    assert (tmp_path / "cka_1.svg").read_bytes().startswith(b"<svg of Linear CKA")

    def failing(figure, format):
        raise RuntimeError("Kaleido requires Chrome")

    monkeypatch.setattr(plotly.io, "to_image", failing)
    write_figures(tmp_path / "again", report, say=said.append)
    assert said == [
        "kaleido could not render SVG (Kaleido requires Chrome); wrote the HTML figures only "
        "from here on."
    ]
    assert not list((tmp_path / "again").glob("*.svg"))
