"""Which teacher stage each student stage resembles: a heatmap of linear CKA.

Input from :func:`kd_core.analysis.similarity.cka_matrix`::

    values, teacher_names, student_names = cka_matrix(teacher.stages, student.stages)
    cka_heatmap_figure(values, teacher_names, student_names)

Rows are the teacher's stages (shallow at the top), columns the student's; each cell prints
its CKA (0: unrelated, 1: the same up to rotation and scale) on a fixed 0..1 Viridis scale, so
figures of different students can be compared by colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import SEQUENTIAL, finish


def cka_heatmap_figure(
    matrix: np.ndarray,
    teacher_names: Sequence[str],
    student_names: Sequence[str],
    *,
    student_label: str = "student",
) -> go.Figure:
    """Heatmap of a ``T x S`` CKA matrix, values printed in the cells (two decimals).

    Args:
        matrix: ``values[i, j]`` = CKA of teacher stage ``i`` with student stage ``j``.
        teacher_names: the ``T`` teacher stage names (rows, top to bottom).
        student_names: the ``S`` student stage names (columns, left to right).
        student_label: how the title and axis name the student (e.g. ``"student (AMD)"``).

    Raises:
        AnalysisError: a matrix that is not ``T x S`` for the names given, or has values that
            are NaN or outside ``[0, 1]``.
    """
    values = np.asarray(matrix, dtype=np.float64)
    expected = (len(teacher_names), len(student_names))
    if values.ndim != 2 or values.shape != expected or values.size == 0:
        raise AnalysisError(
            f"The CKA matrix has shape {values.shape}, expected {expected}: one row per teacher "
            "stage and one column per student stage (pass cka_matrix's output)."
        )
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise AnalysisError("CKA values lie in [0, 1]; the matrix has values outside (or NaN).")
    text = [[f"{value:.2f}" for value in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(student_names),
            y=list(teacher_names),
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            colorbar={"title": {"text": "linear CKA"}},
            text=text,
            texttemplate="%{text}",
            hovertemplate=(
                f"teacher stage %{{y}}<br>{student_label} stage %{{x}}"
                "<br>CKA = %{z:.4f}<extra></extra>"
            ),
        )
    )
    fig.update_xaxes(title_text=f"{student_label} stage (shallow → deep)", side="bottom")
    fig.update_yaxes(title_text="teacher stage (shallow → deep)", autorange="reversed")
    return finish(
        fig,
        f"Linear CKA between teacher and {student_label} stages (0 = unrelated, 1 = identical "
        "up to rotation and scale)",
        height=max(320, 70 * len(teacher_names) + 200),
    )
