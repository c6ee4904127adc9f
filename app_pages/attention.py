"""Attention maps: where the teacher and its students look on one image, and how much they
agree with each other and with the object."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from torch import Tensor
from torch.utils.data import Dataset

from app_pages._models import feature_sets, require_dataset, require_models, using
from app_pages._shared import FIGURE_CONFIG, data_table, figure_cache, workspace
from kd_core.analysis.attribution import METHODS, attribution_maps, forward_passes
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.data import ImageError, dataset_info, denormalize, model_inputs, prepare_image
from kd_core.figures.attention import attention_overlay_figure, stage_overlay_figure
from kd_core.views.image_browser import (
    TARGET_MODES,
    THUMBNAIL_SIDE,
    StageRow,
    agreement_formats,
    agreement_rows,
    class_labels,
    distinct_names,
    filter_samples,
    image_predictions,
    paginate,
    paired_stage_rows,
    sample_filters,
    target_classes,
    thumbnails,
)

PER_PAGE = 24
COSTLY = ("integrated_gradients", "occlusion")
SOURCES = ("The dataset", "An upload")
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif"]
AGNOSTIC = "same for every class"


@st.cache_data(show_spinner=False, max_entries=128)
def _maps(
    versions: tuple[str, ...],
    image_key: bytes,
    method: str,
    requests: tuple[tuple[str, int | None, str | None], ...],
    *,
    _models: dict[str, torch.nn.Module],
    _inputs: dict[str, Tensor],
) -> dict[str, Tensor]:
    """``{model: map}`` for ``requests`` = (model, target, stage) on one image (``_inputs``: as
    each model sees it), cached by the models' files (``versions``), the inputs' bytes, the
    method and the requests."""
    return {
        name: attribution_maps(
            _models[name], _inputs[name][None], method=method, target=target, stage=stage
        )[0]
        for name, target, stage in requests
    }


@figure_cache(max_entries=32)
def _overlay_figures(
    key: tuple[object, ...],
    title: str,
    *,
    _rgb: Tensor,
    _maps: dict[str, Tensor],
    _stage_maps: dict[str, dict[str, Tensor]],
    _mask: Tensor | None,
) -> tuple[go.Figure, go.Figure | None]:
    """The overlay figure of ``_maps`` on ``_rgb`` and, when there are ``_stage_maps``, the one
    of every stage; built once per ``key`` (what the maps were computed from, as for
    :func:`_maps`) and title, since plotly takes longer to build them than a revisit should."""
    overlay = attention_overlay_figure(_rgb, _maps, mask=_mask, title=title)
    stages = None
    if _stage_maps:
        stages = stage_overlay_figure(
            _rgb, _stage_maps, mask=_mask, title="Activation at every stage"
        )
    return overlay, stages


def _key(name: str) -> str:
    return f"attention_{name}"


def _from_dataset(
    features: list[FeatureSet],
    dataset: Dataset,
    dataset_name: str,
    class_names: tuple[str, ...],
    models: dict[str, torch.nn.Module],
) -> tuple[Tensor, dict[str, Tensor], Tensor | None, str]:
    """Browse the workspace's samples (``features``: one set per model, the teacher first);
    ``(image, each model's input, mask, description)`` of the chosen one."""
    names = list(models)
    labels = features[0].labels
    predictions = {name: fs.predictions for name, fs in zip(names, features, strict=True)}
    filters = {f.label: f for f in sample_filters(names[0], names[1:])}
    left, right = st.columns(2)
    class_index = left.selectbox(
        "True class",
        [None, *range(len(class_names))],
        format_func=lambda c: "all classes" if c is None else class_names[c],
        key=_key("class"),
        help="Show only the samples of this class (their true label).",
    )
    chosen_filter = filters[
        right.selectbox(
            "Filter",
            list(filters),
            key=_key("filter"),
            help="Which predictions to look at: mistakes of the teacher or of a student, or "
            "samples where the teacher and a student give different classes.",
        )
    ]
    positions = filter_samples(labels, predictions, chosen_filter, class_index=class_index)
    if not len(positions):
        st.info(
            f"None of the {len(labels):,} samples matches: choose another class or filter, "
            "or more samples in the sidebar."
        )
        st.stop()
    pages = paginate(positions, 1, PER_PAGE).count
    number = st.number_input(
        "Page",
        min_value=1,
        max_value=pages,
        value=1,
        key=_key(f"page/{chosen_filter.label}/{class_index}"),
        help=f"{PER_PAGE} thumbnails per page.",
    )
    page = paginate(positions, int(number), PER_PAGE)
    indices = [int(features[0].indices[p]) for p in page.items]
    teacher_predictions = predictions[names[0]]
    st.caption(
        f"{page.total:,} of {len(labels):,} samples match; page {page.number} of {page.count}. "
        "✗ marks a teacher mistake."
    )
    images = torch.stack([dataset[index][0] for index in indices])
    captions = [
        f"#{index} {class_names[int(labels[p])]}"
        + ("" if teacher_predictions[p] == labels[p] else " ✗")
        for index, p in zip(indices, page.items.tolist(), strict=True)
    ]
    pictures = thumbnails(denormalize(images, dataset_name))
    st.image(pictures, caption=captions, width=THUMBNAIL_SIDE)
    position_of = dict(zip(indices, page.items.tolist(), strict=True))

    def describe(index: int) -> str:
        position = position_of[index]
        said = class_names[int(teacher_predictions[position])]
        return f"#{index} · {class_names[int(labels[position])]} · teacher says {said}"

    index = st.selectbox(
        "Image",
        indices,
        format_func=describe,
        key=_key(f"image/{chosen_filter.label}/{class_index}/{page.number}"),
        help="The image to explain, among this page's thumbnails (dataset index · true class "
        "· the teacher's prediction).",
    )
    position = position_of[index]
    mask = None if features[0].masks is None else features[0].masks[position]
    inputs = {name: model_inputs(dataset, model)[index][0] for name, model in models.items()}
    description = f"#{index}, true class {class_names[int(labels[position])]}"
    return dataset[index][0], inputs, mask, description


def _from_upload(
    dataset_name: str, models: dict[str, torch.nn.Module]
) -> tuple[Tensor, dict[str, Tensor], None, str]:
    """An uploaded image prepared like the test images, and as each model sees it;
    ``(image, inputs, None, description)``."""
    upload = st.file_uploader(
        "Image",
        type=UPLOAD_TYPES,
        key=_key("upload"),
        help="PNG, JPEG, WebP or GIF (first frame). Transparency is shown on white; the central "
        "square is resized to the models' input size, as the test images are.",
    )
    if upload is None:
        st.info("Upload an image to see where the models look on it.")
        st.stop()
    try:
        image = prepare_image(upload, dataset_name)[0]
        inputs = {
            name: prepare_image(upload, dataset_name, model=model)[0]
            for name, model in models.items()
        }
    except ImageError as exc:
        st.error(str(exc))
        st.stop()
    side = image.shape[-1]
    st.caption(f"{upload.name}: central square resized to {side} x {side} pixels.")
    return image, inputs, None, upload.name


st.title("Attention maps")
st.caption(
    "Where do the teacher and its students look on one image, and do they agree? Each map is "
    "divided by its maximum (peak = 1) and drawn on one colour scale; the differences are "
    "student minus teacher."
)

ws = workspace()
teacher, students = require_models(ws)
handles = [teacher, *students]
names = distinct_names([handle.name for handle in handles])
models = {name: handle.model for name, handle in zip(names, handles, strict=True)}

source = st.radio(
    "Image source",
    SOURCES,
    horizontal=True,
    key=_key("source"),
    help="Browse the workspace's samples (with the object mask on shapes), or upload your own.",
)
if source == SOURCES[0]:
    dataset = require_dataset(ws)
    features = feature_sets(ws, handles)
    class_names = class_labels(features[0].class_names, teacher.loaded.num_classes)
    image, inputs, mask, description = _from_dataset(
        features, dataset, ws.dataset, class_names, models
    )
else:  # no dataset files needed: the class names, when the registry knows them
    known = dataset_info(ws.dataset).class_names or ()
    class_names = class_labels(known, teacher.loaded.num_classes)
    image, inputs, mask, description = _from_upload(ws.dataset, models)

st.subheader("Method")
left, right = st.columns(2)
method = left.selectbox(
    "Method",
    list(METHODS),
    format_func=lambda name: METHODS[name].label,
    key=_key("method"),
    help="How a map is computed; the caption below says what it shows and what it costs.",
)
st.caption(f"{METHODS[method].description} Cost: {METHODS[method].cost}")
if method in COSTLY:
    passes = forward_passes(method, *inputs[names[0]].shape[-2:])
    extra = " and as many backward passes" if method == "integrated_gradients" else ""
    st.warning(
        f"{METHODS[method].label} needs {passes} forward passes{extra} per model on this image "
        f"({passes * len(handles)} for the {len(handles)} models): it takes longer."
    )

row: StageRow | None = None
rows: list[StageRow] = []
if METHODS[method].uses_stage:
    try:
        rows = paired_stage_rows(
            {
                name: getattr(getattr(model, "feature_spec", None), "stages", ())
                for name, model in models.items()
            }
        )
    except AnalysisError as exc:
        st.error(str(exc))
        st.stop()
    row = rows[
        right.selectbox(
            "Stage",
            range(len(rows)),
            index=len(rows) - 1,
            format_func=lambda r: rows[r].label,
            key=_key("stage"),
            help="The teacher's stage; each student uses its stage at the same depth counted "
            'from the deepest ("a / b" when the names differ). Deeper stages are coarser and '
            "more class-specific.",
        )
    ]

left, right = st.columns(2)
class_agnostic = method == "activation"
mode = left.radio(
    "Target class",
    list(TARGET_MODES),
    format_func=TARGET_MODES.get,
    key=_key("target"),
    disabled=class_agnostic,
    help="The class whose score a map explains. Each model's prediction shows the evidence for "
    "its own answer; the teacher's prediction asks every model the same question, so the maps "
    "compare directly. (The activation map is the same for every class.)",
)
chosen = None
if mode == "chosen" and not class_agnostic:
    chosen = right.selectbox(
        "Class to explain",
        range(len(class_names)),
        format_func=class_names.__getitem__,
        key=_key("chosen_class"),
        help="Every model's map explains this class's score.",
    )

try:
    with st.spinner(f"Computing {METHODS[method].label} maps…"), using(*handles):
        predicted = image_predictions(models, inputs, class_names)
        targets = target_classes(
            "own" if class_agnostic else mode,
            {name: p.class_index for name, p in predicted.items()},
            teacher=names[0],
            chosen=chosen,
        )
        versions = tuple(f"{h.entry.key}@{h.entry.path.stat().st_mtime_ns}" for h in handles)
        image_key = b"".join(inputs[name].numpy().tobytes() for name in models)
        requests = tuple(
            (name, targets[name], row.stages[name] if row else None) for name in models
        )
        maps = _maps(
            versions,
            image_key,
            method,
            requests,
            _models=models,
            _inputs=inputs,
        )
        stage_maps = {
            r.label: _maps(
                versions,
                image_key,
                "activation",
                tuple((name, None, r.stages[name]) for name in models),
                _models=models,
                _inputs=inputs,
            )
            for r in (rows if class_agnostic else [])
        }
except AnalysisError as exc:
    st.error(str(exc))
    st.stop()

st.subheader("Predictions")
data_table(
    [
        {
            "model": name,
            "predicted class": p.class_name,
            "confidence (%)": 100 * p.confidence,
            "map explains": "same for every class"
            if class_agnostic
            else class_names[targets[name]],
        }
        for name, p in predicted.items()
    ],
    file_name="attention_predictions.csv",
    key="attention_predictions_csv",
    column_config={"confidence (%)": st.column_config.NumberColumn(format="%.1f")},
)

where = f" · {row.label}" if row else ""
overlay, stages = _overlay_figures(
    (versions, image_key, method, requests, ws.dataset),
    f"{METHODS[method].label}{where} · {description}",
    _rgb=denormalize(image, ws.dataset),
    _maps=maps,
    _stage_maps=stage_maps,
    _mask=mask,
)
st.plotly_chart(overlay, width="stretch", config=FIGURE_CONFIG)
if stages is not None:
    st.plotly_chart(stages, width="stretch", config=FIGURE_CONFIG)
    st.caption(
        "One row per stage, shallow to deep: the AMD attention q of each stage, upsampled "
        "bilinearly to the image."
    )

st.subheader("Agreement")
table = pd.DataFrame(agreement_rows(maps, mask=mask))
data_table(
    table,
    file_name=f"attention_agreement_{method}.csv",
    key="attention_agreement_csv",
    column_config={
        column: st.column_config.NumberColumn(format=number_format)
        for column, number_format in agreement_formats(table.columns).items()
    },
)
st.caption(
    "Cosine and rank correlation: 1 when a student's map matches the teacher's. Top-20% IoU: "
    "overlap of the most attended fifth of the pixels."
    + (
        " Attention inside object: the share of the map's mass on the object; a uniform map "
        "scores the object's area (chance level)."
        if mask is not None
        else ""
    )
)
