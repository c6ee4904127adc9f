"""The logic behind the Home page, as plain data (no Streamlit): the workspace at a glance.

Example::

    workspace_records(teacher_entry, [vanilla_entry, amd_entry])
    # [{"role": "teacher", "checkpoint": "resnet20 teacher", "architecture": "resnet20", ...}, ...]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kd_core.checkpoints.errors import CheckpointError
from kd_core.workspace import CheckpointEntry

WORKSPACE_FORMATS = {"top-1 (%)": "%.2f"}
"""Column -> printf format of the numbers in :func:`workspace_records`."""


def checkpoint_name(entry: CheckpointEntry) -> str:
    """The short name of a checkpoint: its label without the source and accuracy
    (``"resnet20 teacher · bundled · 96.01%"`` -> ``"resnet20 teacher"``)."""
    return entry.label.split(" · ")[0]


def workspace_records(
    teacher: CheckpointEntry | None, students: Sequence[CheckpointEntry]
) -> list[dict[str, object]]:
    """One table record per checkpoint of the workspace, the teacher first: ``role``,
    ``checkpoint`` (:func:`checkpoint_name`), ``architecture``, ``trained on`` (the dataset,
    ``"unknown"`` when the file does not say), ``top-1 (%)`` (as recorded with the file,
    ``None`` when unknown) and ``source`` (bundled, run, upload or file)."""
    roles = [("teacher", teacher)] if teacher else []
    roles += [("student", entry) for entry in students]
    return [
        {
            "role": role,
            "checkpoint": checkpoint_name(entry),
            "architecture": entry.arch,
            "trained on": entry.dataset or "unknown",
            "top-1 (%)": entry.top1,
            "source": entry.source,
        }
        for role, entry in roles
    ]


def class_count_problem(class_counts: Mapping[str, int]) -> str | None:
    """Why these models cannot be compared (``None`` when they can): every model must
    classify the same number of classes as the first one (the teacher).

    >>> class_count_problem({"resnet20": 10, "resnet8": 100})
    "The teacher resnet20 has 10 classes but resnet8 has 100: choose students trained on the
    teacher's classes."
    """
    (teacher, expected), *students = class_counts.items()
    differing = [f"{name} has {count}" for name, count in students if count != expected]
    if not differing:
        return None
    return (
        f"The teacher {teacher} has {expected} classes but {', '.join(differing)}: choose "
        "students trained on the teacher's classes."
    )


def report_problem(
    entries: Sequence[CheckpointEntry], read_class_count: Callable[[CheckpointEntry], int]
) -> str | None:
    """Why the checkpoints ``entries`` (the teacher first) cannot be reported together, or
    ``None``: a file that is gone, or class counts that differ (:func:`class_count_problem`).
    Counts are those recorded beside the files; when one records none, ``read_class_count``
    reads every count from the weights (a :class:`CheckpointError` it raises is the answer)."""
    gone = [entry for entry in entries if not entry.path.exists()]
    if gone:
        return f"{gone[0].label}: the file is gone; choose another one."
    counts = {checkpoint_name(entry): entry.num_classes for entry in entries}
    if None in counts.values():
        try:
            counts = {checkpoint_name(entry): read_class_count(entry) for entry in entries}
        except CheckpointError as exc:
            return str(exc)
    return class_count_problem(counts)
