"""The results table of the bundled checkpoints (``docs/results.md``, written by ``make
table``) as HTML: the text between the ``<!-- table:start`` and ``<!-- table:end -->`` markers,
Markdown converted with the ``tables`` extension of Python-Markdown.

Example::

    results_html(RESULTS_FILE)   # '<p>Teacher: the shipped resnet20 ...</p>\\n<table>...'
"""

from __future__ import annotations

from pathlib import Path

import markdown

from kd_core.workspace import PROJECT_DIR

RESULTS_FILE = PROJECT_DIR / "docs" / "results.md"
START_MARKER = "<!-- table:start"
END_MARKER = "<!-- table:end -->"


def results_markdown(text: str) -> str | None:
    """The Markdown between the markers of ``text`` (the start marker's line left out), or
    ``None`` when ``text`` has no complete pair of markers."""
    start = text.find(START_MARKER)
    end = text.find(END_MARKER, start + 1)
    if start < 0 or end < 0:
        return None
    after_marker = text.find("\n", start, end)
    return text[after_marker + 1 : end].strip() if after_marker >= 0 else ""


def results_html(path: Path = RESULTS_FILE) -> str | None:
    """The results section of the Markdown file ``path`` as HTML (pipe tables become
    ``<table>`` elements), or ``None`` when the file is missing or has no markers."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    section = results_markdown(text)
    if section is None:
        return None
    return markdown.markdown(section, extensions=["tables"], output_format="html")
