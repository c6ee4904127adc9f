"""A :class:`~kd_core.report.build.Report` as HTML: one self-contained file, or one file per
figure.

:func:`report_html` inlines plotly.js once (:func:`plotly.offline.get_plotlyjs`) in the head
and each figure as ``fig.to_html(full_html=False, include_plotlyjs=False)``: the figures'
data and images travel inside the file (plotly draws ``go.Image`` panels from data URIs), the
page names no font, stylesheet or MathJax URL, and a Content-Security-Policy forbids any
connection, so nothing leaves the file when it is opened. Every figure gets the app's
:data:`~kd_core.figures.style.FIGURE_CONFIG` (the camera button saves an SVG).

:func:`write_figures` writes each figure as a standalone HTML file beside one shared
``plotly.min.js``, plus SVG and PDF files when the static renderer kaleido is installed (it
drives a Chrome or Chromium already on the machine; nothing is downloaded).

Example::

    write_report(Path("report.html"), report)
    write_figures(Path("figures"), report, say=print)
"""

from __future__ import annotations

import html
import importlib.util
import numbers
import os
import re
from collections.abc import Callable
from pathlib import Path

import plotly.io
from plotly.offline import get_plotlyjs

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import FIGURE_CONFIG
from kd_core.files import atomic_write
from kd_core.report.build import (
    Heading,
    Markup,
    Paragraph,
    Report,
    ReportError,
    ReportFigure,
    ReportRequest,
    ReportTable,
    Section,
    build_report,
)

PLOTLY_FILE = "plotly.min.js"
"""The plotly.js file the standalone figure pages share."""
STATIC_FORMATS = ("svg", "pdf")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)
"""Inline scripts and styles, images from data and blob URLs only: no connection at all."""
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1a1a1a; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem; }
h1 { margin-bottom: 0.2rem; }
.summary { color: #555; }
section { margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: left; }
th { background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.figure { margin: 1rem 0; }
"""
_MISSING = "–"


def _slug(name: str) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``_``, ``-`` and ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "figure"


def _cell(value: object, number_format: str | None) -> str:
    if value is None:
        return f"<td>{_MISSING}</td>"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        text = number_format % value if number_format else f"{value:g}"
        return f'<td class="number">{text}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(table: ReportTable) -> str:
    """An HTML ``<table>`` of the records: a header row, then one row per record; numbers in
    their column's printf format, ``None`` as a dash, text escaped."""
    columns = list(table.columns or dict.fromkeys(k for r in table.records for k in r))
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(_cell(r.get(c), table.formats.get(c)) for c in columns) + "</tr>"
        for r in table.records
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def figure_div(figure: ReportFigure) -> str:
    """The figure as a ``<div>`` and the script that draws it (plotly.js not included)."""
    drawn = figure.figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        config=FIGURE_CONFIG,
        div_id=f"figure-{_slug(figure.name)}",
    )
    return f'<div class="figure">{drawn}</div>'


def _item_html(item: object) -> str:
    if isinstance(item, Heading):
        return f"<h3>{html.escape(item.text)}</h3>"
    if isinstance(item, Paragraph):
        return f"<p>{html.escape(item.text)}</p>"
    if isinstance(item, Markup):
        return item.html
    if isinstance(item, ReportTable):
        return table_html(item)
    if isinstance(item, ReportFigure):
        return figure_div(item)
    raise TypeError(f"A report section cannot hold a {type(item).__name__}.")


def _section_html(number: int, section: Section) -> str:
    body = "\n".join(_item_html(item) for item in section.items)
    return f'<section id="section-{number}"><h2>{html.escape(section.title)}</h2>\n{body}</section>'


def report_html(report: Report) -> str:
    """The whole report as one HTML document (plotly.js inlined once, in the head)."""
    contents = "".join(
        f'<li><a href="#section-{n}">{html.escape(s.title)}</a></li>'
        for n, s in enumerate(report.sections, start=1)
    )
    sections = "\n".join(_section_html(n, s) for n, s in enumerate(report.sections, start=1))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>{STYLE}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body><main>\n'
        f"<h1>{html.escape(report.title)}</h1>\n"
        f'<p class="summary">{html.escape(report.summary)}</p>\n'
        f"<nav><ol>{contents}</ol></nav>\n{sections}\n</main></body>\n</html>\n"
    )


def report_error_html(sentence: str) -> str:
    """An HTML document that says why the report could not be built (what the app's report
    button gives when the build fails after the click, where no message can be shown)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        f"<title>No report</title>\n<style>{STYLE}</style>\n</head>\n<body><main>\n"
        "<h1>The report could not be built</h1>\n"
        f'<p class="summary">{html.escape(sentence)}</p>\n</main></body>\n</html>\n'
    )


def report_file(request: ReportRequest) -> str:
    """The HTML report of ``request``, or, when it cannot be built (a :class:`ReportError`, a
    checkpoint or data folder that cannot be read, an analysis that fails), the document of
    :func:`report_error_html` saying why: for a file built after a click, such as the app's
    report button, where no message can be shown any more."""
    try:
        return report_html(build_report(request))
    except (ValueError, OSError, AnalysisError) as exc:  # ReportError, CheckpointError among them
        return report_error_html(str(exc))


# ---------------------------------------------------------------- writing


def check_writable(path: Path) -> None:
    """Raise :class:`ReportError` unless a file ``path`` can be written: not a folder, and its
    nearest existing folder writable (missing folders are made when writing)."""
    path = Path(path)
    if path.is_dir():
        raise ReportError(f"{path} is a folder; give the name of the file to write.")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ReportError(
            f"Cannot write {path}: {existing} is not a folder you can write to; choose another "
            "place."
        )


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: file.write(data), mode=0o644)
    except OSError as error:
        raise ReportError(
            f"Cannot write {path} ({error.strerror or error}); choose a place you can write to."
        ) from None


def write_report(path: Path, report: Report) -> Path:
    """Write :func:`report_html` to ``path``, atomically (a reader never sees a part; on any
    error nothing is left).

    Raises:
        ReportError: ``path`` cannot be written (the message says why).
    """
    path = Path(path)
    check_writable(path)
    _write_bytes(path, report_html(report).encode("utf-8"))
    return path


def static_renderer_missing() -> str | None:
    """Why SVG and PDF files cannot be written here, or ``None`` when kaleido is installed."""
    if importlib.util.find_spec("kaleido") is None:
        return (
            "SVG and PDF need the static renderer kaleido (pip install kaleido, with a Chrome "
            "or Chromium on this machine); wrote the HTML figures only."
        )
    return None


def write_figures(
    folder: Path, report: Report, *, say: Callable[[str], None] = lambda _line: None
) -> list[Path]:
    """Write every figure of ``report`` into ``folder`` (made if missing): ``<name>.html``
    pages that load one shared :data:`PLOTLY_FILE` beside them, and ``<name>.svg`` and
    ``<name>.pdf`` when kaleido renders them. ``say`` receives one sentence when the static
    files are skipped (kaleido missing, or failing: the reason). Returns the files written.

    Raises:
        ReportError: ``folder`` cannot be written.
    """
    folder = Path(folder)
    check_writable(folder / PLOTLY_FILE)
    written = [folder / PLOTLY_FILE]
    _write_bytes(written[0], get_plotlyjs().encode("utf-8"))
    static_problem = static_renderer_missing()
    for figure in report.figures:
        stem = folder / _slug(figure.name)
        page = figure.figure.to_html(
            full_html=True, include_plotlyjs="directory", config=FIGURE_CONFIG
        )
        _write_bytes(stem.with_suffix(".html"), page.encode("utf-8"))
        written.append(stem.with_suffix(".html"))
        for static_format in () if static_problem else STATIC_FORMATS:
            try:
                data = plotly.io.to_image(figure.figure, format=static_format)
            except Exception as error:  # kaleido without a browser, or a browser that fails
                static_problem = (
                    f"kaleido could not render {static_format.upper()} ({error}); wrote the "
                    "HTML figures only from here on."
                )
                break
            _write_bytes(stem.with_suffix(f".{static_format}"), data)
            written.append(stem.with_suffix(f".{static_format}"))
    if static_problem:
        say(static_problem)
    return written
