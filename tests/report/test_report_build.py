"""The report's content on a tiny workspace (three random resnet8, 12 images): every section in
order, figures from the pages' builders, numbers checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd_core.analysis.extraction import select_indices
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.report.build import (
    REPORT_IMAGES,
    ReportError,
    ReportFigure,
    ReportRequest,
    ReportTable,
    build_report,
    image_positions,
)
from kd_core.report.results import results_html, results_markdown
from kd_core.views.home import class_count_problem
from tests.report.tiny import NAMES, SAMPLES, tiny_entry, tiny_request


def _sample_labels() -> list[int]:
    """The true classes of the workspace's images (the report's fixed selection)."""
    dataset = create_dataset("shapes", split="test", augment=False)
    return [dataset[int(i)][1] for i in select_indices(len(dataset), samples=SAMPLES)]


def _tables(section) -> list[ReportTable]:
    return [item for item in section.items if isinstance(item, ReportTable)]


def test_sections_and_figures_in_order(report):
    titles = [section.title for section in report.sections]
    assert titles == [
        "Workspace",
        "Angular distributions",
        "Attention maps",
        "Feature embedding",
        "Which teacher stage each student stage resembles (linear CKA)",
    ]  # no results table: the teacher is not the bundled one
    names = [figure.name for figure in report.figures]
    stages = ["layer1", "layer2", "layer3"]
    attention = [f"attention_{n}" for n in range(1, REPORT_IMAGES + 1)]
    assert names == [f"theta_{s}" for s in stages] + attention + ["embedding", "cka_1", "cka_2"]
    assert all(len(figure.figure.data) > 0 for figure in report.figures)
    assert NAMES[0] in report.summary and f"{SAMPLES} images" in report.summary


def test_workspace_table_measures_top1_on_the_images(report, tiny_folder):
    [table] = _tables(report.sections[0])
    assert [r["checkpoint"] for r in table.records] == list(NAMES)
    assert [r["role"] for r in table.records] == ["teacher", "student", "student"]
    # independently: each model's argmax on the same images
    request = tiny_request(tiny_folder)
    dataset = create_dataset("shapes", split="test", augment=False)
    indices = select_indices(len(dataset), samples=SAMPLES)
    images = torch.stack([dataset[int(i)][0] for i in indices])
    labels = torch.tensor(_sample_labels())
    column = f"top-1 on these {SAMPLES} images (%)"
    for record, entry in zip(table.records, [request.teacher, *request.students], strict=True):
        model = load_checkpoint(entry.path).model.eval()
        with torch.no_grad():
            expected = 100.0 * float((model(images).argmax(1) == labels).float().mean())
        assert record[column] == pytest.approx(expected)


def test_angular_summary_per_stage_compares_with_the_teacher(report):
    tables = _tables(report.sections[1])
    assert len(tables) == 3
    for table, stage in zip(tables, ["layer1", "layer2", "layer3"], strict=True):
        assert [r["model"] for r in table.records] == list(NAMES)
        assert {r["stage"] for r in table.records} == {stage}
        teacher = table.records[0]
        assert teacher["Wasserstein (°)"] == 0.0 and teacher["cosine"] == pytest.approx(1.0)
        assert all(0.0 <= r["overlap"] <= 1.0 for r in table.records)
    theta = report.figures[0].figure
    assert theta.layout.yaxis.type == "log"  # as the page opens


def test_attention_grid_and_agreement_table(report):
    section = report.sections[2]
    [agreement] = _tables(section)
    assert len(agreement.records) == REPORT_IMAGES * len(NAMES)
    teacher_rows = agreement.records[:: len(NAMES)]
    assert all(r["model"] == NAMES[0] and r["cosine vs teacher"] is None for r in teacher_rows)
    student_rows = [r for r in agreement.records if r["model"] != NAMES[0]]
    assert all(-1.0 <= r["cosine vs teacher"] <= 1.0 for r in student_rows)
    assert agreement.formats["attention inside object (%)"] == "%.1f"
    grids = [item for item in section.items if isinstance(item, ReportFigure)]
    images = list(dict.fromkeys(r["image"] for r in agreement.records))
    assert len(grids) == len(images) == REPORT_IMAGES
    titles = [grid.figure.layout.title.text for grid in grids]
    for title, image in zip(titles, images, strict=True):
        assert title.startswith("Activation (AMD attention q) · layer3 · ") and f"{image}," in title
    classes = {title.rsplit("true class ", 1)[1] for title in titles}
    # one image per class first: as many classes as the samples hold
    assert len(classes) == min(REPORT_IMAGES, len(set(_sample_labels())))


def test_cka_heatmaps_hold_values_in_the_unit_interval(report):
    for figure in report.figures[-2:]:
        [trace] = figure.figure.data
        values = np.asarray(trace.z, dtype=float)
        assert values.shape == (3, 3) and np.all((values >= 0) & (values <= 1))


def test_image_positions_take_one_per_class_first():
    labels = torch.tensor([3, 3, 0, 1, 0, 2, 1])
    assert image_positions(labels, 3) == [2, 3, 5]
    assert image_positions(labels, 5) == [2, 3, 5, 0, 1]
    assert image_positions(labels, 20) == [2, 3, 5, 0, 1, 4, 6]


def test_class_counts_must_match_the_teacher():
    assert class_count_problem({"T": 10, "S": 10}) is None
    problem = class_count_problem({"T": 10, "S": 10, "wide": 100})
    assert problem == (
        "The teacher T has 10 classes but wide has 100: choose students trained on the "
        "teacher's classes."
    )


def test_bad_requests_are_sentences(tmp_path):
    teacher = tiny_entry(tmp_path, "teacher", 0)
    with pytest.raises(ReportError, match="choose at least one student"):
        build_report(ReportRequest(teacher, ()))
    wide = tiny_entry(tmp_path, "wide", 1, num_classes=5)
    with pytest.raises(ReportError, match="teacher has 10 classes but wide has 5"):
        build_report(ReportRequest(teacher, (wide,)))


def test_results_section_between_the_markers():
    text = (
        "# Results\nbefore\n<!-- table:start (written by make table) -->\nTeacher: **96%**.\n\n"
        "| method | top-1 |\n| --- | --- |\n| AMD | 70.4 |\n<!-- table:end -->\nafter\n"
    )
    section = results_markdown(text)
    assert section == "Teacher: **96%**.\n\n| method | top-1 |\n| --- | --- |\n| AMD | 70.4 |"
    assert results_markdown("no markers here") is None


def test_results_html_converts_the_pipe_table(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(
        "x\n<!-- table:start -->\n| a | b |\n| --- | --- |\n| 1 | 2 |\n<!-- table:end -->\n"
    )
    html = results_html(path)
    assert "<table>" in html and "<th>a</th>" in html and "<td>2</td>" in html
    assert results_html(tmp_path / "missing.md") is None
