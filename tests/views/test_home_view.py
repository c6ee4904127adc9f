"""Home's logic as plain data: why a workspace cannot be reported (kd_core.views.home)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kd_core.checkpoints.errors import CheckpointError
from kd_core.views.home import report_problem
from kd_core.workspace import CheckpointEntry


def _entry(tmp_path: Path, name: str, num_classes: int | None) -> CheckpointEntry:
    path = tmp_path / f"{name}.pt"
    path.write_bytes(b"weights")
    return CheckpointEntry(
        key=f"file:{name}", label=f"{name} · file", path=path, source="file", arch="resnet8",
        num_classes=num_classes,
    )  # fmt: skip


def _never_read(entry: CheckpointEntry) -> int:
    raise AssertionError(f"{entry.key}'s weights were read although its count is recorded")


def test_recorded_counts_that_agree_need_no_weights(tmp_path):
    entries = [_entry(tmp_path, "teacher", 10), _entry(tmp_path, "student", 10)]
    assert report_problem(entries, _never_read) is None


def test_recorded_counts_that_differ_are_named(tmp_path):
    entries = [_entry(tmp_path, "teacher", 10), _entry(tmp_path, "student", 100)]
    problem = report_problem(entries, _never_read)
    assert problem == (
        "The teacher teacher has 10 classes but student has 100: choose students trained on "
        "the teacher's classes."
    )


def test_a_missing_count_reads_every_count_from_the_weights(tmp_path):
    entries = [_entry(tmp_path, "teacher", 10), _entry(tmp_path, "student", None)]
    read = []

    def from_weights(entry: CheckpointEntry) -> int:
        read.append(entry.key)
        return {"file:teacher": 10, "file:student": 100}[entry.key]

    assert "student has 100" in report_problem(entries, from_weights)
    assert read == ["file:teacher", "file:student"]


def test_a_file_that_is_gone_or_unreadable_is_the_answer(tmp_path):
    teacher, student = _entry(tmp_path, "teacher", 10), _entry(tmp_path, "student", None)

    def unreadable(entry: CheckpointEntry) -> int:
        raise CheckpointError(f"{entry.label}: not a checkpoint; choose another one.")

    assert report_problem([teacher, student], unreadable) == (
        "teacher · file: not a checkpoint; choose another one."
    )
    gone = dataclasses.replace(student, path=tmp_path / "deleted.pt")
    assert report_problem([teacher, gone], unreadable) == (
        "student · file: the file is gone; choose another one."
    )
