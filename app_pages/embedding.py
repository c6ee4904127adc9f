"""Feature embedding: every model's samples as points in the plane (PCA, t-SNE, UMAP), the
teacher's and the students' maps side by side; a box or lasso selection shows the images and
their attention maps; then linear CKA between the teacher's and each student's stages.

Results are cached by content (``content_key`` / ``stages_key`` of the feature sets plus the
parameters); the feature sets travel as ``_features`` so Streamlit does not try to hash them.
Changing the colouring redraws the figure without recomputing the map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from torch.utils.data import Dataset

from app_pages._models import ModelHandle, feature_sets, require_dataset, require_models
from app_pages._shared import FIGURE_CONFIG, Workspace, data_table, figure_cache, workspace
from kd_core.analysis.embedding import (
    DEFAULT_PERPLEXITY,
    Embedding,
    available_methods,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.similarity import CKAMatrix
from kd_core.data import denormalize
from kd_core.figures.attention import attention_overlay_figure
from kd_core.figures.embedding import METHOD_NAMES, embedding_caption, embedding_figure
from kd_core.figures.similarity import cka_heatmap_figure
from kd_core.views.angular import content_key
from kd_core.views.embedding import (
    CKA_SAMPLES,
    LAYOUTS,
    cka_matrices,
    coordinates_csv,
    deepest_maps,
    embed_models,
    feature_choices,
    joint_problem,
    points_by_model,
    selected_positions,
    selection_records,
    stages_key,
)
from kd_core.views.image_browser import distinct_names, thumbnails
from kd_core.views.projector import projector_zip

# (Comments, not docstrings: Streamlit's "magic" would print a bare string on the page.)
GALLERY_IMAGES = 24  # selected images shown as thumbnails (the table lists every selected one)
ATTENTION_IMAGES = 8  # selected images whose attention maps are drawn
THUMBNAIL_SIDE = 64
COLOUR_LABELS = {"class": "true class", "correct": "correct / wrong"}


def _key(name: str) -> str:
    return f"embedding_{name}"


# ------------------------------------------------------------------ cached computations


@st.cache_data(show_spinner=False, max_entries=16)
def _maps(
    key: str,
    kind: str,
    method: str,
    layout: str,
    normalize: bool,
    perplexity: float,
    _features: Sequence[FeatureSet],
) -> dict[str, Embedding]:
    return embed_models(
        _features,
        kind,
        method=method,
        layout=layout,
        normalize=normalize,
        perplexity=perplexity,
    )


@st.cache_data(show_spinner=False, max_entries=8)
def _cka(key: str, _features: Sequence[FeatureSet]) -> dict[str, CKAMatrix]:
    return cka_matrices(_features)


@figure_cache(max_entries=8)
def _cka_figures(key: str, _matrices: dict[str, CKAMatrix]) -> dict[str, go.Figure]:
    """One heatmap per student of the CKA matrices cached under ``key``, built once (plotly's
    construction cost a revisit about 0.1 s)."""
    return {
        student: cka_heatmap_figure(
            matrix.values, matrix.teacher_names, matrix.student_names, student_label=student
        )
        for student, matrix in _matrices.items()
    }


def _projector_export(features: list[FeatureSet], dataset: Dataset, dataset_name: str) -> bytes:
    """The projector zip, built when the download is clicked (on Streamlit's own thread)."""
    indices = features[0].indices
    images = denormalize(torch.stack([dataset[int(i)][0] for i in indices]), dataset_name)
    return projector_zip(features, images)


# ------------------------------------------------------------------ sections


def _named(sets: list[FeatureSet], names: list[str]) -> list[FeatureSet]:
    return [dataclasses.replace(s, name=name) for s, name in zip(sets, names, strict=True)]


def _selection_section(
    features: list[FeatureSet], positions: np.ndarray, dataset: Dataset, dataset_name: str
) -> None:
    if len(positions) == 0:
        st.info(
            "Drag a lasso around points on the map (box select and single points work too: "
            "see the figure's toolbar) to see their images, predictions and attention maps here."
        )
        return
    teacher = features[0]
    records = selection_records(features, positions)
    st.markdown(f"**{len(records):,} selected samples**")
    data_table(records, file_name="embedding_selection.csv", key=_key("selection_csv"))
    shown = positions[:GALLERY_IMAGES]
    images = torch.stack([dataset[int(teacher.indices[p])][0] for p in shown])
    rgb = denormalize(images, dataset_name)
    st.image(
        thumbnails(rgb, min_side=THUMBNAIL_SIDE),
        caption=[f"#{r['sample']} {r['class']}" for r in records[: len(shown)]],
        width=THUMBNAIL_SIDE,
    )
    if len(positions) > GALLERY_IMAGES:
        st.caption(f"The first {GALLERY_IMAGES} of the selected images.")
    drawn = records[:ATTENTION_IMAGES]
    st.markdown(
        f"**Attention at the deepest stage** (the AMD map q of each model), first "
        f"{len(drawn)} selected images"
    )
    for number, (tab, record) in enumerate(
        zip(st.tabs([f"#{r['sample']}" for r in drawn]), drawn, strict=True)
    ):
        position = int(shown[number])
        with tab:
            st.plotly_chart(
                attention_overlay_figure(
                    rgb[number],
                    deepest_maps(features, position),
                    mask=None if teacher.masks is None else teacher.masks[position],
                    title=f"Image #{record['sample']} ({record['class']}): activation at the "
                    "deepest stage",
                ),
                width="stretch",
                config=FIGURE_CONFIG,
            )


def _cka_section(ws: Workspace, handles: list[ModelHandle], names: list[str]) -> None:
    st.subheader("Which teacher stage each student stage resembles (linear CKA)")
    if len(handles) < 2:
        st.info("CKA compares students with the teacher: choose students in the sidebar.")
        return
    samples = min(ws.samples, CKA_SAMPLES)
    cka_sets = _named(
        feature_sets(dataclasses.replace(ws, samples=samples), handles, keep_stages=True), names
    )
    try:
        with st.spinner(f"Comparing every pair of stages on {len(cka_sets[0]):,} samples…"):
            key = stages_key(cka_sets)
            figures = _cka_figures(key, _matrices=_cka(key, _features=cka_sets))
    except AnalysisError as exc:
        st.error(str(exc))
        return
    st.caption(
        f"Linear CKA of the raw stage features on {len(cka_sets[0]):,} samples"
        + (
            f" (a fixed random subset of the {ws.samples:,}: CKA compares N × N matrices)"
            if samples < ws.samples
            else ""
        )
        + ". 0: unrelated, 1: the same up to rotation and scale. A student that mimics its "
        "teacher has high values on the diagonal (stages of the same depth)."
    )
    for tab, figure in zip(st.tabs(list(figures)), figures.values(), strict=True):
        with tab:
            st.plotly_chart(figure, width="stretch", config=FIGURE_CONFIG)


# ------------------------------------------------------------------ the page

st.title("Feature embedding")
st.markdown(
    "Each sample becomes a point in the plane, for the teacher and for each student: classes "
    "that form separate clusters are easy for the classifier. Compare how the students "
    "arrange the same images, select a group of points to see which images they are and "
    "where each model looks on them, and check which teacher stage each student stage "
    "resembles."
)

ws = workspace()
teacher, students = require_models(ws, students=False)
handles = [teacher, *students]
dataset = require_dataset(ws)
names = distinct_names([handle.name for handle in handles])
features = _named(feature_sets(ws, handles), names)
if not students:
    st.info("Only the teacher is shown: choose students in the sidebar to compare with it.")
try:
    choices = feature_choices(features)
except AnalysisError as exc:
    st.error(str(exc))
    st.stop()
count = len(features[0])

methods = list(available_methods())
left, middle, right = st.columns(3)
method = left.selectbox(
    "Method",
    methods,
    format_func=METHOD_NAMES.get,
    key=_key("method"),
    help="PCA: the two directions of largest variance; exact and fast, distances in feature "
    "units. t-SNE: keeps each sample's nearest neighbours together; the distances between "
    "clusters and their sizes mean nothing. UMAP (when umap-learn is installed): also a "
    "neighbour layout, somewhat better at keeping the global arrangement.",
)
kind = middle.selectbox(
    "Features",
    list(choices),
    format_func=choices.get,
    key=_key(f"features/{'/'.join(choices)}"),
    help="What is embedded: the pooled penultimate features (the classifier's input, by "
    "default), the logits, or the AMD attention map q of one stage (the stage of the same "
    "depth in every model).",
)
problem = joint_problem(features, kind)
if problem is not None:
    st.session_state[_key("layout")] = "aligned"
layout = right.radio(
    "Layout",
    list(LAYOUTS),
    format_func=LAYOUTS.get,
    key=_key("layout"),
    disabled=problem is not None,
    help="Side by side: each model embedded on its own, each student rotated onto the teacher "
    "(orthogonal Procrustes). Joint: all models in one run and one coordinate system; only "
    "for features that share a space (logits, attention maps of one size).",
)
left, middle, right = st.columns(3)
colour_by = left.radio(
    "Colour by",
    list(COLOUR_LABELS),
    format_func=COLOUR_LABELS.get,
    horizontal=True,
    key=_key("colour_by"),
    help="True class, or whether the panel's model predicts the sample right.",
)
normalize = middle.toggle(
    "L2-normalise (on the hypersphere)",
    value=False,
    key=_key("normalize"),
    help="Divide each feature vector by its length first, so only its direction counts (the "
    "angular view AMD takes).",
)
perplexity = right.slider(
    "Perplexity (t-SNE)",
    min_value=5,
    max_value=50,
    value=int(DEFAULT_PERPLEXITY),
    step=1,
    key=_key("perplexity"),
    disabled=method != "tsne",
    help=f"t-SNE's effective number of neighbours per sample. It needs more than 3 × "
    f"perplexity samples: at most {max((count - 1) // 3, 0)} for the {count:,} samples chosen.",
)
if problem is not None:
    st.caption(f"Joint embedding is off: {problem}")
if method != "pca":
    st.caption(
        f"{METHOD_NAMES[method]} takes a while on this machine: about 7 s per model for 1,000 "
        "samples, 10 to 30 s for thousands (the joint layout embeds all models' rows at once). "
        "Each result is kept, so changing the colouring or coming back is instant."
    )

perplexity_used = float(perplexity) if method == "tsne" else DEFAULT_PERPLEXITY
teacher_set = features[0]
try:
    rows = count * len(features)
    with st.spinner(f"Embedding {rows:,} points with {METHOD_NAMES[method]}…"):
        maps = _maps(
            content_key(features),
            kind,
            method,
            layout,
            normalize,
            perplexity_used,
            _features=features,
        )
    figure = embedding_figure(
        points_by_model(maps),
        teacher_set.labels,
        colour_by=colour_by,
        correct={model.name: model.correct for model in features},
        class_names=teacher_set.class_names,
        indices=teacher_set.indices,
        method=method,
    )
except AnalysisError as exc:
    st.error(str(exc))
    maps = None

if maps is not None:
    event = st.plotly_chart(
        figure,
        width="stretch",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        key=_key("map"),
        config=FIGURE_CONFIG,
    )
    st.caption(embedding_caption(maps, method, layout))
    if teacher_set.labels.unique().numel() < 2:
        st.caption("All samples are of one class: colour by correct / wrong to tell them apart.")
    st.download_button(
        "Coordinates (CSV)",
        coordinates_csv(features, maps),
        file_name=f"embedding_{method}_{kind.replace(':', '_')}_{layout}.csv",
        mime="text/csv",
        key=_key("csv"),
        help="One row per model and sample: model, sample index in the split, true class, x, y.",
    )
    st.download_button(
        "Features for TensorBoard's projector (zip)",
        lambda: _projector_export(features, dataset, ws.dataset),
        file_name="projector.zip",
        mime="application/zip",
        key=_key("projector"),
        help="The pooled features of every model on these samples, with metadata (model, "
        "class, prediction, correct) and a sprite of the images: unzip, then `tensorboard "
        "--logdir projector` and open the Projector tab.",
    )
    st.subheader("Selected samples")
    try:
        _selection_section(
            features, selected_positions(event.selection, teacher_set.indices), dataset, ws.dataset
        )
    except AnalysisError as exc:
        st.error(str(exc))

_cka_section(ws, handles, names)
