"""The logic behind the "Angular distributions" page, as plain data (no Streamlit): which
splits and stages its controls offer, a content key for caching results, and its tables.

* :func:`content_key` identifies what the angular views read from feature sets (two sets with
  the same content get the same key, whatever objects hold them), so a page can cache results
  of :mod:`kd_core.analysis.angular` and :mod:`kd_core.analysis.hypersphere` by it;
* :func:`split_options` and :func:`stage_choices` list the positive splits the data allows and
  the teacher stages every comparison can use;
* :func:`summary_records`, :func:`class_pivot` and :func:`hypersphere_records` turn summary
  rows into table records with readable column names and units (:data:`SUMMARY_SHOWN`: the
  columns shown, :data:`NUMBER_FORMATS`: how their numbers print);
* :func:`sample_caption` and :func:`sphere_groups` describe one sample and group the points
  of the 3-D hypersphere view.

Example::

    key = content_key([teacher, *students])
    stages = stage_choices(teacher, students)           # {"layer3": "layer3", ...}
    rows = angular_report(teacher, students, split=split_options(teacher)[0])
    pandas.DataFrame(summary_records(rows)).to_csv(index=False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from kd_core.analysis.angular import ALL_CLASSES, SPLITS, AngularSummary
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet, paired_stages
from kd_core.analysis.hypersphere import HypersphereSummary

SPLIT_LABELS = {
    "mask": "object mask",
    "teacher_topk": "teacher top-k%",
    "teacher_quantile": "teacher quantile",
}
"""How the page names each split of :data:`~kd_core.analysis.angular.SPLITS`."""

SUMMARY_COLUMNS = {
    "model": "model",
    "stage": "stage",
    "teacher_stage": "teacher stage",
    "class_name": "class",
    "samples": "samples",
    "positives": "positives",
    "negatives": "negatives",
    "mean_theta_pos": "mean θ pos (°)",
    "mean_theta_neg": "mean θ neg (°)",
    "separation": "separation",
    "overlap": "overlap",
    "pos_counted_positive": "pos > neg (%)",
    "wasserstein_deg": "Wasserstein (°)",
    "wasserstein_pos_deg": "Wasserstein pos (°)",
    "wasserstein_neg_deg": "Wasserstein neg (°)",
    "mean_cosine": "cosine",
}
"""Field of :class:`~kd_core.analysis.angular.AngularSummary` -> column of
:func:`summary_records`, in table order. Short, so that a table fits a laptop's width: the
distances and the cosine compare the model with the teacher, ``pos > neg`` is the share of
positive positions the loss with the chosen margin also counts positive."""

SUMMARY_SHOWN = [
    SUMMARY_COLUMNS[field]
    for field in (
        "model",
        "stage",
        "mean_theta_pos",
        "mean_theta_neg",
        "separation",
        "overlap",
        "pos_counted_positive",
        "wasserstein_deg",
        "mean_cosine",
    )
]
"""The summary columns a page or the report shows (the CSV download has them all)."""

HYPERSPHERE_COLUMNS = {
    "model": "model",
    "samples": "samples",
    "mean_class_angle_deg": "angle to class mean (°)",
    "mean_intra_deg": "intra-class angle (°)",
    "mean_inter_deg": "inter-class angle (°)",
    "separation": "separation",
    "intra_pairs": "intra-class pairs",
    "inter_pairs": "inter-class pairs",
}
"""Field of :class:`~kd_core.analysis.hypersphere.HypersphereSummary` -> column of
:func:`hypersphere_records`, in table order (angles are means over samples or pairs)."""

NUMBER_FORMATS = {
    **{
        SUMMARY_COLUMNS[field]: number_format
        for field, number_format in (
            ("mean_theta_pos", "%.2f"),
            ("mean_theta_neg", "%.2f"),
            ("separation", "%.2f"),
            ("overlap", "%.3f"),
            ("pos_counted_positive", "%.1f"),
            ("wasserstein_deg", "%.3f"),
            ("wasserstein_pos_deg", "%.3f"),
            ("wasserstein_neg_deg", "%.3f"),
            ("mean_cosine", "%.3f"),
        )
    },
    **{
        HYPERSPHERE_COLUMNS[field]: "%.2f"
        for field in ("mean_class_angle_deg", "mean_intra_deg", "mean_inter_deg", "separation")
    },
}
"""Column -> printf format of the numbers in the summary and hypersphere tables."""

COLOUR_BY = {"class": "true class", "prediction": "prediction right or wrong"}
"""How :func:`sphere_groups` can group the points of the hypersphere view."""

_KEY_CHARS = 16
_PERCENT_FIELDS = frozenset({"pos_counted_positive"})
_ROW_FIELDS = ("model", "stage", "teacher_stage", "class_name")
"""Fields of :class:`AngularSummary` that say which row it is, not what was measured."""


def _update(digest: hashlib._Hash, label: str, tensor: Tensor | None) -> None:
    """Feed a tagged tensor (name, dtype, shape, bytes) to ``digest``; ``None`` counts too."""
    if tensor is None:
        digest.update(f"{label}|none|".encode())
        return
    values = tensor.detach().to("cpu").contiguous()
    digest.update(f"{label}|{values.dtype}|{tuple(values.shape)}|".encode())
    digest.update(values.reshape(-1).view(torch.uint8).numpy())


def content_key(features: Sequence[FeatureSet]) -> str:
    """A short hex digest (16 characters of sha256) of everything the angular views read from
    ``features``, in order: each set's name, class names, sample indices, labels, logits,
    pooled features, attention maps (stage by stage) and masks. Raw stage features are left
    out (no angular view reads them).

    Equal content gives an equal key, so results computed from the sets can be cached by it
    (Streamlit cannot hash a :class:`FeatureSet`); changing any value changes it.

    >>> content_key([teacher]) == content_key([dataclasses.replace(teacher)])
    True
    """
    digest = hashlib.sha256(b"angular_view/1")
    for features_of_model in features:
        names = "\x1f".join(features_of_model.class_names)
        digest.update(f"set|{features_of_model.name}|{names}|".encode())
        for label in ("indices", "labels", "logits", "pooled", "masks"):
            _update(digest, label, getattr(features_of_model, label))
        for stage, q in features_of_model.attention.items():
            _update(digest, f"attention:{stage}", q)
    return digest.hexdigest()[:_KEY_CHARS]


def split_options(teacher: FeatureSet) -> list[str]:
    """The positive splits the teacher's data allows, the default first: ``"mask"`` first
    when the samples have object masks (e.g. ``shapes``), left out when they have none.

    >>> split_options(teacher_without_masks)
    ['teacher_topk', 'teacher_quantile']
    """
    teacher_splits = [split for split in SPLITS if split != "mask"]
    return teacher_splits if teacher.masks is None else ["mask", *teacher_splits]


def stage_choices(teacher: FeatureSet, students: Sequence[FeatureSet]) -> dict[str, str]:
    """Teacher stage -> label, shallow to deep, for the teacher stages that at least one
    student pairs with by depth (:func:`~kd_core.analysis.feature_set.paired_stages`), i.e.
    the stages :func:`~kd_core.analysis.angular.angular_report` compares. The label joins the
    distinct stage names of the teacher and its paired students with ``" / "``
    (``"layer3"``, or ``"layer3 / block3"`` when a student names it differently).

    Raises:
        AnalysisError: without students, or when a model has no stage features.
    """
    if not students:
        raise AnalysisError(
            "Angular distributions compare students with the teacher: choose at least one student."
        )
    paired: dict[str, list[str]] = {}
    for student in students:
        for teacher_stage, student_stage in paired_stages(teacher, student):
            paired.setdefault(teacher_stage, []).append(student_stage)
    return {
        stage: " / ".join(dict.fromkeys([stage, *paired[stage]]))
        for stage in teacher.stage_names
        if stage in paired
    }


def _records(rows: Sequence[object], columns: Mapping[str, str]) -> list[dict[str, object]]:
    """One dict per row: ``columns`` maps each attribute to its column name (in order);
    shares listed in :data:`_PERCENT_FIELDS` are given in percent."""
    return [
        {
            column: 100.0 * getattr(row, field) if field in _PERCENT_FIELDS else getattr(row, field)
            for field, column in columns.items()
        }
        for row in rows
    ]


def summary_records(rows: Sequence[AngularSummary]) -> list[dict[str, object]]:
    """Table records of angular summary rows, columns as in :data:`SUMMARY_COLUMNS` (the share
    of positives the loss counts positive in percent, angles in degrees), in the rows' order.
    """
    return _records(rows, SUMMARY_COLUMNS)


def hypersphere_records(summaries: Sequence[HypersphereSummary]) -> list[dict[str, object]]:
    """Table records of hypersphere summaries, columns as in :data:`HYPERSPHERE_COLUMNS`."""
    return _records(summaries, HYPERSPHERE_COLUMNS)


def class_pivot(rows: Sequence[AngularSummary], field: str = "separation") -> list[dict]:
    """One record per class (in the rows' order), one column per model (teacher first): the
    value of ``field`` in that class's row of that model. The overall rows
    (:data:`~kd_core.analysis.angular.ALL_CLASSES`) are left out. Give the rows of one
    stage (``summarise(..., per_class=True)`` of each model).

    >>> class_pivot(rows)   # [{"class": "circle", "teacher": 3.1, "student": 2.2}, ...]

    Raises:
        AnalysisError: for an unknown field, rows of several stages, or no per-class row.
    """
    measured = [name for name in SUMMARY_COLUMNS if name not in _ROW_FIELDS]
    if field not in measured:
        raise AnalysisError(
            f"Unknown summary value {field!r}; choose one of {', '.join(measured)}."
        )
    per_class = [row for row in rows if row.class_name != ALL_CLASSES]
    if not per_class:
        raise AnalysisError(
            "No per-class summary rows to compare: compute the summaries with per_class=True."
        )
    stages = sorted({row.teacher_stage for row in per_class})
    if len(stages) > 1:
        raise AnalysisError(
            f"The per-class rows come from several stages ({', '.join(stages)}); give the rows "
            "of one stage."
        )
    table: dict[str, dict[str, object]] = {}
    for row in per_class:
        table.setdefault(row.class_name, {"class": row.class_name})[row.model] = getattr(row, field)
    return list(table.values())


def _class_name(names: Sequence[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else f"class {label}"


def sample_caption(features: Sequence[FeatureSet], position: int) -> str:
    """One line about sample ``position`` (0 to N - 1) of the feature sets (teacher first):
    its dataset index, true class and each model's prediction, ✓ when right, ✗ when wrong.

    >>> sample_caption([teacher, student], 0)
    'Image #17, class circle. Predictions: teacher: circle ✓, student: square ✗.'

    Raises:
        AnalysisError: no feature sets, or ``position`` outside 0 to N - 1.
    """
    if not features:
        raise AnalysisError("No models to describe the sample with: pass at least one.")
    count = len(features[0])
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < count:
        raise AnalysisError(f"The sample must be an integer from 0 to {count - 1}, got {position}.")
    first = features[0]
    label = int(first.labels[position])
    predictions = []
    for model in features:
        predicted = int(model.predictions[position])
        mark = "✓" if predicted == label else "✗"
        predictions.append(f"{model.name}: {_class_name(model.class_names, predicted)} {mark}")
    return (
        f"Image #{int(first.indices[position])}, class {_class_name(first.class_names, label)}. "
        f"Predictions: {', '.join(predictions)}."
    )


def sphere_groups(features: FeatureSet, colour_by: str = "class") -> np.ndarray:
    """The group of each sample for :func:`~kd_core.figures.angular.hypersphere_figure`:
    ``"class"`` gives the ``N`` int64 true labels (name them with the set's class names),
    ``"prediction"`` gives ``"correct"`` / ``"wrong"``, whether the set's own model
    classifies the sample right.

    Raises:
        AnalysisError: for another ``colour_by``.
    """
    if colour_by == "class":
        return features.labels.numpy().astype(np.int64)
    if colour_by == "prediction":
        return np.where(features.correct.numpy(), "correct", "wrong")
    raise AnalysisError(f"Unknown colouring {colour_by!r}; choose one of {', '.join(COLOUR_BY)}.")
