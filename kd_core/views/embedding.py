"""The logic behind the "Feature embedding" page, as plain data (no Streamlit): which features
its controls offer, the maps of every model in one call, what a lasso selection picked, and the
tables and keys the page downloads and caches by.

* :func:`feature_choices` lists the features that can be embedded (pooled penultimate
  features, logits, the attention map of a stage paired across models by depth) and
  :func:`model_features` returns them as one ``N x D`` matrix per model;
* :func:`joint_problem` says why a joint map would be meaningless for a choice (``None`` when
  the models' features share one space: logits, or attention maps of one size);
* :func:`embed_models` embeds every model: separately, each student rotated onto the teacher
  by Procrustes (``"aligned"``), or all in one run (``"joint"``);
* :func:`points_by_model` gives the ``{model: N x 2}`` points of
  :func:`~kd_core.figures.embedding.embedding_figure`, :func:`coordinates_csv` the same as CSV;
* :func:`selected_positions` maps a plotly selection back to sample positions (each point's
  ``customdata`` is its sample index), :func:`selection_records` and :func:`deepest_maps`
  describe the selected samples;
* :func:`cka_matrices` compares every student's stages with the teacher's (linear CKA), and
  :func:`stages_key` is a content key of feature sets *including* their raw stages, to cache
  it by.

Example::

    kind = "logits"
    if joint_problem(features, kind) is None:
        maps = embed_models(features, kind, method="tsne", layout="joint", perplexity=20)
    figure = embedding_figure(points_by_model(maps), features[0].labels,
                              indices=features[0].indices)
    positions = selected_positions(event.selection, features[0].indices)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from kd_core.analysis.embedding import (
    DEFAULT_PERPLEXITY,
    Embedding,
    embed,
    joint_embedding,
    procrustes_align,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet, check_same_samples
from kd_core.analysis.similarity import CKAMatrix, cka_matrix
from kd_core.views.angular import content_key
from kd_core.views.image_browser import StageRow, class_labels, paired_stage_rows

LAYOUTS = {
    "aligned": "side by side, student aligned to teacher by Procrustes",
    "joint": "joint embedding",
}
"""How the models' maps relate (:func:`embed_models`): key -> label for the page."""

ATTENTION_PREFIX = "attention:"
"""Feature choices ``"attention:<teacher stage>"`` embed that stage's attention maps."""

CSV_COLUMNS = ("model", "sample index", "class", "x", "y")

CKA_SAMPLES = 500
"""CKA compares ``N x N`` Gram matrices of raw stage features: it uses at most this many
samples (a fixed random subset of the workspace's)."""

_KEY_CHARS = 16


# ---------------------------------------------------------------- which features


def _require_models(features: Sequence[FeatureSet]) -> None:
    if not features:
        raise AnalysisError("No models to embed: choose a teacher in the sidebar.")
    names = [model.name for model in features]
    if len(set(names)) < len(names):
        raise AnalysisError(
            f"Two models share a name ({', '.join(names)}): give every model its own name "
            "(kd_core.views.image_browser.distinct_names)."
        )


def _stage_rows(features: Sequence[FeatureSet]) -> list[StageRow]:
    """Stages of the same depth across models (teacher first), shallow to deep."""
    return paired_stage_rows({model.name: model.stage_names for model in features})


def feature_choices(features: Sequence[FeatureSet]) -> dict[str, str]:
    """Feature choice -> label: ``"pooled"`` (the default), ``"logits"``, then
    ``"attention:<teacher stage>"`` for each stage that every model has at the same depth
    (counted from the deepest; shallow to deep).

    >>> feature_choices([teacher, student])
    {'pooled': 'pooled penultimate features', 'logits': 'logits',
     'attention:layer1': 'attention map at layer1', ...}

    Raises:
        AnalysisError: no model, two models with one name, or a model without stages.
    """
    _require_models(features)
    teacher = features[0].name
    choices = {"pooled": "pooled penultimate features", "logits": "logits"}
    for row in _stage_rows(features):
        choices[f"{ATTENTION_PREFIX}{row.stages[teacher]}"] = f"attention map at {row.label}"
    return choices


def model_features(features: Sequence[FeatureSet], kind: str) -> dict[str, Tensor]:
    """Each model's rows for ``kind`` (a key of :func:`feature_choices`), by model name:
    ``pooled`` (``N x D``), ``logits`` (``N x K``) or, for ``"attention:<teacher stage>"``,
    every model's ``N x H x W`` attention map at the stage paired with that teacher stage.

    Raises:
        AnalysisError: ``kind`` is not one of :func:`feature_choices`.
    """
    choices = feature_choices(features)
    if kind not in choices:
        raise AnalysisError(f"Unknown features {kind!r}; choose one of {', '.join(choices)}.")
    if kind in ("pooled", "logits"):
        return {model.name: getattr(model, kind) for model in features}
    teacher_stage = kind.removeprefix(ATTENTION_PREFIX)
    [row] = [r for r in _stage_rows(features) if r.stages[features[0].name] == teacher_stage]
    return {model.name: model.attention[row.stages[model.name]] for model in features}


def joint_problem(features: Sequence[FeatureSet], kind: str) -> str | None:
    """Why the models' ``kind`` features cannot share one map, as a sentence; ``None`` when they
    can: logits (classes are the axes) and attention maps of one size (positions are the axes)
    live in one space, pooled features of different networks do not (their channels are not
    aligned, even at one length), and a single model has nothing to share a map with.

    >>> joint_problem([teacher, student], "pooled")
    'Pooled features of different networks do not share a space ...'
    """
    rows = model_features(features, kind)
    if len(rows) < 2:
        return "Only one model is chosen: a joint map needs students; add some in the sidebar."
    if kind == "pooled":
        return (
            "Pooled features of different networks do not share a space (their channels are "
            "not aligned, even at equal length), so a joint map would show separate clouds: "
            "use the side-by-side layout, or embed logits or attention maps of one size."
        )
    sizes = {name: tuple(values.shape[1:]) for name, values in rows.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: {' × '.join(map(str, s))}" for name, s in sizes.items())
        return (
            f"The maps differ in size ({listed}), so positions are not the same axes: use the "
            "side-by-side layout."
        )
    return None


# ---------------------------------------------------------------- the maps


def embed_models(
    features: Sequence[FeatureSet],
    kind: str,
    *,
    method: str = "pca",
    layout: str = "aligned",
    normalize: bool = False,
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
) -> dict[str, Embedding]:
    r"""Every model's map of its ``kind`` features (teacher first), one point per sample.

    ``"aligned"``: each model is embedded on its own (:func:`~kd_core.analysis.embedding.embed`)
    and each student's map is rotated, scaled and shifted onto the teacher's by orthogonal
    Procrustes (:func:`~kd_core.analysis.embedding.procrustes_align`; its shape is unchanged),
    so the same sample sits at comparable places in every panel. ``"joint"``: all rows in one
    run (:func:`~kd_core.analysis.embedding.joint_embedding`), one coordinate system, allowed
    only when :func:`joint_problem` is ``None``. ``normalize`` puts each row on the unit
    hypersphere first (:math:`x / \lVert x \rVert_2`), so only directions count.

    Raises:
        AnalysisError: models on different samples, an unknown kind or layout, a joint layout
            :func:`joint_problem` refuses, and what :func:`~kd_core.analysis.embedding.embed`
            refuses (NaN rows, too few samples for the perplexity, an unknown method).
    """
    if layout not in LAYOUTS:
        raise AnalysisError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    rows = model_features(features, kind)
    teacher = features[0]
    for student in features[1:]:
        check_same_samples(teacher, student)
    options = {"method": method, "normalize": normalize, "perplexity": perplexity, "seed": seed}
    if layout == "joint":
        problem = joint_problem(features, kind)
        if problem is not None:
            raise AnalysisError(problem)
        indices = {model.name: model.indices for model in features}
        return joint_embedding(rows, indices=indices, **options)
    maps = {
        model.name: embed(rows[model.name], indices=model.indices, **options) for model in features
    }
    reference = maps[teacher.name].points
    return {
        name: embedding
        if name == teacher.name
        else dataclasses.replace(
            embedding,
            points=procrustes_align(embedding.points, reference),
            parameters=embedding.parameters | {"aligned_to": teacher.name},
        )
        for name, embedding in maps.items()
    }


def points_by_model(embeddings: Mapping[str, Embedding]) -> dict[str, np.ndarray]:
    """``{model: N x 2 points}`` for :func:`~kd_core.figures.embedding.embedding_figure`.

    Raises:
        AnalysisError: no maps, or maps of different samples (row ``i`` must be one sample in
            every map).
    """
    if not embeddings:
        raise AnalysisError("No maps to draw: embed at least one model.")
    first = next(iter(embeddings.values())).indices
    for name, embedding in embeddings.items():
        if not np.array_equal(embedding.indices, first):
            raise AnalysisError(
                f"{name}'s map holds other samples than the first map: embed every model on "
                "the same samples."
            )
    return {name: embedding.points for name, embedding in embeddings.items()}


def coordinates_csv(features: Sequence[FeatureSet], embeddings: Mapping[str, Embedding]) -> str:
    """The maps as CSV text, columns :data:`CSV_COLUMNS` (model, sample index in the dataset
    split, true class name, x, y), one row per model and sample, models in map order.

    >>> coordinates_csv([teacher], maps).splitlines()[:2]
    ['model,sample index,class,x,y', 'teacher,10,circle,-1.25,0.5']
    """
    points = points_by_model(embeddings)
    teacher = features[0]
    names = class_labels(teacher.class_names, teacher.logits.shape[1])
    position = {int(index): p for p, index in enumerate(teacher.indices.tolist())}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for model, xy in points.items():
        for index, (x, y) in zip(embeddings[model].indices.tolist(), xy.tolist(), strict=True):
            label = int(teacher.labels[position[index]])
            writer.writerow([model, index, names[label], x, y])
    return text.getvalue()


# ---------------------------------------------------------------- the selection


def _customdata_index(point: Mapping[str, object]) -> int | None:
    """The sample index a selected point carries: ``customdata`` as a number, or the first
    entry of a list (plotly express style); ``None`` when it carries none."""
    value = point.get("customdata")
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value)


def selected_positions(selection: Mapping[str, object] | None, indices: Tensor) -> np.ndarray:
    """Sample positions (0 to N - 1, ascending, each once) picked by a plotly selection.

    ``selection`` is Streamlit's selection state (``event.selection``: ``{"points": [{...,
    "customdata": sample index}], ...}``); ``indices`` are the feature sets' sample indices.
    The same sample selected in several panels counts once; points without a sample index,
    or with one not among ``indices`` (a stale selection), are ignored.

    >>> selected_positions({"points": [{"customdata": 12}, {"customdata": [10]}]},
    ...                    torch.tensor([10, 11, 12]))
    array([0, 2])
    """
    points = (selection or {}).get("points") or []
    position = {int(index): p for p, index in enumerate(indices.tolist())}
    picked = {_customdata_index(point) for point in points if isinstance(point, Mapping)}
    return np.array(sorted(position[i] for i in picked if i in position), dtype=np.int64)


def _checked_positions(features: Sequence[FeatureSet], positions: Sequence[int]) -> list[int]:
    _require_models(features)
    count = len(features[0])
    checked = [int(p) for p in positions]
    outside = [p for p in checked if not 0 <= p < count]
    if outside:
        raise AnalysisError(
            f"Sample position {outside[0]} is outside 0 to {count - 1}: select samples of the "
            "current map."
        )
    return checked


def selection_records(
    features: Sequence[FeatureSet], positions: Sequence[int]
) -> list[dict[str, object]]:
    """One table record per selected position: ``sample`` (index in the split), ``class`` (true
    class) and, per model, its prediction marked ✓ (right) or ✗ (wrong).

    >>> selection_records([teacher, student], [0])
    [{'sample': 10, 'class': 'circle', 'teacher': 'circle ✓', 'student': 'square ✗'}]
    """
    checked = _checked_positions(features, positions)
    teacher = features[0]
    names = class_labels(teacher.class_names, teacher.logits.shape[1])
    records = []
    for position in checked:
        label = int(teacher.labels[position])
        record: dict[str, object] = {
            "sample": int(teacher.indices[position]),
            "class": names[label],
        }
        for model in features:
            predicted = int(model.predictions[position])
            record[model.name] = f"{names[predicted]} {'✓' if predicted == label else '✗'}"
        records.append(record)
    return records


def deepest_maps(features: Sequence[FeatureSet], position: int) -> dict[str, Tensor]:
    """Each model's attention map ``q`` at its deepest stage for the sample at ``position``
    (``H x W``; the "activation" attribution before upsampling), for
    :func:`~kd_core.figures.attention.attention_overlay_figure`."""
    [checked] = _checked_positions(features, [position])
    return {model.name: model.attention[model.stage_names[-1]][checked] for model in features}


# ---------------------------------------------------------------- similarity of stages


def cka_matrices(features: Sequence[FeatureSet]) -> dict[str, CKAMatrix]:
    """Linear CKA of every teacher stage with every stage of each student (``features[0]`` is
    the teacher), by student name; the sets need raw stages (``keep_stages=True``).

    Raises:
        AnalysisError: no student, sets without raw stages, or on different samples.
    """
    _require_models(features)
    teacher, students = features[0], list(features[1:])
    if not students:
        raise AnalysisError("CKA compares students with the teacher: choose at least one student.")
    missing = [model.name for model in features if not model.stages]
    if missing:
        raise AnalysisError(
            f"{', '.join(missing)} have no raw stage features: extract them with keep_stages=True."
        )
    result = {}
    for student in students:
        check_same_samples(teacher, student)
        result[student.name] = cka_matrix(teacher.stages, student.stages)
    return result


def stages_key(features: Sequence[FeatureSet]) -> str:
    """A short hex digest (16 characters of sha256) of the sets' content *and* raw stages:
    :func:`~kd_core.views.angular.content_key` leaves the stages out, a CKA cache
    needs them. Equal content gives an equal key; changing any value changes it."""
    digest = hashlib.sha256(f"embedding_view/1|{content_key(features)}|".encode())
    for model in features:
        for stage, values in model.stages.items():
            tensor = values.detach().to("cpu").contiguous()
            digest.update(f"{model.name}|{stage}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:_KEY_CHARS]
