"""``python -m kd_core report``: the default workspace's report (bundled teacher and students,
fewer images), its figures on their own, and bad input refused with one sentence, exit status
2 and no file."""

from __future__ import annotations

import sys

import pytest

from kd_core import cli
from kd_core.report.html import PLOTLY_FILE
from tests.report.tiny import tiny_entry


def test_report_of_the_default_workspace_with_its_figures(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # as without kaleido
    out, figures = tmp_path / "report.html", tmp_path / "figures"
    status = cli.main(["report", str(out), "--samples", "16", "--figures", str(figures)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    page = out.read_text(encoding="utf-8")
    for heading in (
        "Workspace",
        "Angular distributions",
        "Attention maps",
        "Feature embedding",
        "Results of the bundled checkpoints (docs/results.md)",  # the teacher is the bundled one
    ):
        assert f"<h2>{heading}</h2>" in page
    for name in ("resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"):  # the app's defaults
        assert f"<td>{name}</td>" in page
    assert "<th>method</th>" in page  # the results table, converted
    assert "16 images of the test split" in page
    assert f"wrote {out} (" in captured.out and "14 figures" in captured.out
    assert "wrote the HTML figures only" in captured.out
    written = sorted(p.name for p in figures.iterdir())
    assert PLOTLY_FILE in written and "embedding.html" in written and len(written) == 15
    assert "Attention maps" in captured.err  # progress on stderr


def test_a_student_with_other_classes_is_refused(tmp_path, capsys):
    wide = tiny_entry(tmp_path, "wide", 0, num_classes=5)
    out = tmp_path / "report.html"
    status = cli.main(["report", str(out), "--students", str(wide.path), "--samples", "16"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == (
        "python -m kd_core: error: The teacher resnet20 teacher has 10 classes but resnet8 "
        "wide has 5: choose students trained on the teacher's classes."
    )
    assert not out.exists()


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, where):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    out = blocker / "report.html" if where == "under_a_file" else tmp_path
    before = sorted(p.name for p in tmp_path.iterdir())
    status = cli.main(["report", str(out), "--teacher", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "is not a folder you can write to" in err or "is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
