"""Angular distributions: θ = arccos q of the AMD attention maps, split into the positions the
teacher attends and the rest, for the teacher and each student; then the class geometry of the
pooled features on the hypersphere.

Results are cached by content (``content_key`` of the feature sets plus the parameters); the
feature sets travel as ``_features`` so Streamlit does not try to hash them. The tabs run only
when open, so a slider move recomputes only what the open tab shows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages._models import feature_sets, require_dataset, require_models
from app_pages._shared import FIGURE_CONFIG, MARGIN_SLIDER, data_table, figure_cache, workspace
from kd_core.analysis.angular import (
    ALL_CLASSES,
    DEFAULT_FRACTION,
    AngularSummary,
    angular_report,
    stage_angles,
    summarise,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.hypersphere import (
    HypersphereSummary,
    class_angles,
    hypersphere_summary,
    sphere_projection,
)
from kd_core.data import denormalize
from kd_core.figures.angular import (
    angular_maps_figure,
    class_angles_figure,
    hypersphere_figure,
    separation_figure,
    theta_histogram_figure,
)
from kd_core.figures.margin import boundary_angle
from kd_core.losses.amd import DEFAULT_MARGIN, DEFAULT_SCALE
from kd_core.views.angular import (
    COLOUR_BY,
    NUMBER_FORMATS,
    SPLIT_LABELS,
    SUMMARY_COLUMNS,
    SUMMARY_SHOWN,
    class_pivot,
    content_key,
    hypersphere_records,
    sample_caption,
    sphere_groups,
    split_options,
    stage_choices,
    summary_records,
)
from kd_core.views.image_browser import distinct_names, thumbnails

SCALES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
IMAGE_SIDE = 128
COLUMN_HELP = {
    SUMMARY_COLUMNS["mean_theta_pos"]: "Mean angle of the positive positions.",
    SUMMARY_COLUMNS["mean_theta_neg"]: "Mean angle of the negative positions.",
    SUMMARY_COLUMNS["separation"]: "(mean θ neg − mean θ pos) / pooled std: larger is sharper.",
    SUMMARY_COLUMNS["overlap"]: "Shared area of the positive and negative θ histograms, 0 to 1.",
    SUMMARY_COLUMNS["pos_counted_positive"]: "Share of the positive positions that the loss, "
    "with this margin, also counts positive (pos > neg).",
    SUMMARY_COLUMNS["wasserstein_deg"]: "How far (degrees) this model's θ must move, on "
    "average, to match the teacher's θ.",
    SUMMARY_COLUMNS["mean_cosine"]: "Cosine of this model's q map with the teacher's, "
    "averaged over samples (1: the same map).",
}


def _key(name: str) -> str:
    return f"angular_{name}"


@dataclasses.dataclass(frozen=True)
class View:
    """What every tab reads: the feature sets (teacher first), their content key, the data
    and the controls' values."""

    features: list[FeatureSet]
    key: str
    dataset: object
    dataset_name: str
    stage: str
    stage_label: str
    margin: float
    scale: float
    split: str
    fraction: float

    @property
    def angular(self) -> tuple:
        """The positional arguments of the cached angular computations after the key."""
        return (self.stage, self.margin, self.scale, self.split, self.fraction)


def _teacher_and_students(features: Sequence[FeatureSet]) -> tuple[FeatureSet, list[FeatureSet]]:
    """``(teacher, students)`` of the feature sets, teacher first."""
    return features[0], list(features[1:])


# ------------------------------------------------------------------ cached computations


@figure_cache(max_entries=32)
def _histogram_figures(
    key: str, stage: str, margin: float, split: str, fraction: float, _features
) -> dict[bool, go.Figure]:
    """θ histograms with the boundary for ``margin``, by whether the share axis is logarithmic
    (θ and the boundary do not depend on the scale, so moving the scale does not recompute
    them; both axes are built at once, so the toggle does not either)."""
    teacher, students = _teacher_and_students(_features)
    angles = stage_angles(teacher, students, stage, margin=margin, split=split, fraction=fraction)
    linear = theta_histogram_figure(angles, margin=margin)
    return {False: linear, True: go.Figure(linear).update_yaxes(type="log")}


@figure_cache(max_entries=32)
def _maps_figure(
    key: str,
    stage: str,
    margin: float,
    scale: float,
    split: str,
    fraction: float,
    sample: int,
    _features,
) -> go.Figure:
    teacher, students = _teacher_and_students(_features)
    angles = stage_angles(
        teacher, students, stage, margin=margin, scale=scale, split=split, fraction=fraction
    )
    return angular_maps_figure(angles, sample)


@st.cache_data(show_spinner=False, max_entries=16)
def _report(
    key: str, margin: float, scale: float, split: str, fraction: float, _features
) -> list[AngularSummary]:
    """The overall summary rows of every compared stage (no per-class rows: costly)."""
    teacher, students = _teacher_and_students(_features)
    return angular_report(
        teacher,
        students,
        margin=margin,
        scale=scale,
        split=split,
        fraction=fraction,
        per_class=False,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _class_rows(
    key: str, stage: str, margin: float, scale: float, split: str, fraction: float, _features
) -> list[AngularSummary]:
    """Overall and per-class summary rows of every model at one stage only."""
    teacher, students = _teacher_and_students(_features)
    angles = stage_angles(
        teacher, students, stage, margin=margin, scale=scale, split=split, fraction=fraction
    )
    return [row for model in angles for row in summarise(angles[0], model, per_class=True)]


@figure_cache(max_entries=8)
def _class_angles_figure(key: str, _features) -> go.Figure:
    return class_angles_figure([class_angles(features) for features in _features])


@st.cache_data(show_spinner=False, max_entries=8)
def _sphere_summaries(key: str, _features) -> list[HypersphereSummary]:
    return [hypersphere_summary(features) for features in _features]


@figure_cache(max_entries=16)
def _sphere_figure(key: str, model: str, colour_by: str, _features) -> go.Figure:
    [features] = [f for f in _features if f.name == model]
    figure = hypersphere_figure(
        sphere_projection(features),
        sphere_groups(features, colour_by),
        group_names=features.class_names,
        sample_indices=features.indices.numpy(),
        model=features.name,
    )
    # Ten classes make the legend two rows high: below the scene, it cannot cover the title.
    return figure.update_layout(legend={"yanchor": "top", "y": 0.0})


# ------------------------------------------------------------------ the tabs


def _table(
    records: list[dict], name: str, columns: list[str] | None = None, number_format=None, **csv
) -> None:
    """A table of ``records`` with its CSV download ``angular_<name>.csv`` (``csv`` passes a
    fuller file, see :func:`data_table`): ``columns`` shown (all by default), numbers
    formatted by their column (:data:`NUMBER_FORMATS`) or all with ``number_format``."""
    frame = pd.DataFrame(records)
    numeric = frame.select_dtypes("number").columns
    data_table(
        frame,
        file_name=f"angular_{name}.csv",
        key=_key(f"{name}_csv"),
        column_order=columns,
        column_config={
            column: st.column_config.NumberColumn(
                format=number_format or NUMBER_FORMATS.get(column), help=COLUMN_HELP.get(column)
            )
            for column in numeric
        },
        **csv,
    )


def _histograms_tab(view: View) -> None:
    with st.spinner(f"Computing θ at {view.stage}…"):
        figures = _histogram_figures(
            view.key, view.stage, view.margin, view.split, view.fraction, _features=view.features
        )
    log_axis = st.toggle(
        "Logarithmic share axis",
        value=True,
        key=_key("log_axis"),
        help="Spread the small shares: the bins near 90° (positions the model barely attends) "
        "can hold most of the positions and flatten every other bin.",
    )
    st.plotly_chart(figures[log_axis], width="stretch", config=FIGURE_CONFIG)
    st.caption(
        "Solid lines: θ of the positions the split counts positive; dashed: the others (share "
        "of each side's positions per 0.5° bin). The dotted lines mark the loss's boundary "
        f"pos = neg: {boundary_angle(view.margin):.1f}° for m = {view.margin:g}, 60° without a "
        "margin. A student that distils well puts its two curves where the teacher's are, as "
        "far apart. The scale s changes neither θ nor the boundary."
    )


def _summary_tab(view: View) -> None:
    with st.spinner("Summarising every stage…"):
        rows = _report(
            view.key, view.margin, view.scale, view.split, view.fraction, _features=view.features
        )
    st.markdown(f"**At {view.stage_label}**")
    _table(
        summary_records([r for r in rows if r.teacher_stage == view.stage]),
        f"summary_{view.split}",
        SUMMARY_SHOWN,
        csv=pd.DataFrame(summary_records(rows)).to_csv(index=False),
        label="Summary, every stage (CSV)",
        help="Every stage and column of the summary (including the Wasserstein distances of "
        "the positive and negative positions alone), one row per model and stage.",
    )
    st.caption(
        "Hover a column's name for what it measures. Wasserstein and cosine compare each "
        "model with the teacher (0 and 1 for the teacher itself); separation and overlap "
        "compare each model's positive and negative θ."
    )
    st.plotly_chart(separation_figure(rows), width="stretch", config=FIGURE_CONFIG)


def _sample_tab(view: View) -> None:
    teacher = view.features[0]
    count = len(teacher)
    left, right = st.columns([1, 3])
    sample = int(
        left.number_input(
            "Sample",
            min_value=0,
            max_value=count - 1,
            value=0,
            step=1,
            key=_key(f"sample/{count}"),
            help=f"Position of the image among the {count:,} selected samples (0 to "
            f"{count - 1}); every model sees the same image.",
        )
    )
    image = view.dataset[int(teacher.indices[sample])][0]
    [picture] = thumbnails(denormalize(image[None], view.dataset_name), min_side=IMAGE_SIDE)
    left.image(picture, width=IMAGE_SIDE)
    right.markdown(sample_caption(view.features, sample))
    right.caption(
        "Rows: models; columns: the attention q, pos = s cos(mθ), neg = s(1 − q) and the "
        "attentive term −softplus(neg − pos), each column on one colour scale. The margin "
        "and scale change the last three. Hover a cell to see whether the split counts it "
        "positive."
    )
    with st.spinner("Computing the maps…"):
        figure = _maps_figure(view.key, *view.angular, sample, _features=view.features)
    st.plotly_chart(figure, width="stretch", config=FIGURE_CONFIG)


def _classes_tab(view: View) -> None:
    with st.spinner(f"Summarising each class at {view.stage}…"):
        rows = _class_rows(view.key, *view.angular, _features=view.features)
        class_figure = _class_angles_figure(view.key, _features=view.features)
    classes = list(dict.fromkeys(r.class_name for r in rows if r.class_name != ALL_CLASSES))
    chosen = st.columns(2)[0].selectbox(
        "Class",
        classes,
        key=_key("class"),
        help="The summary over the selected samples of this class only, at the chosen stage.",
    )
    _table(summary_records([r for r in rows if r.class_name == chosen]), "class", SUMMARY_SHOWN)
    st.markdown(f"**Separation of positive and negative θ per class, at {view.stage_label}**")
    _table(class_pivot(rows, "separation"), "class_separation", number_format="%.2f")
    st.plotly_chart(class_figure, width="stretch", config=FIGURE_CONFIG)
    st.caption(
        "The box plots use the pooled features (the input of the classifier), not the "
        "attention maps: each sample's angle to the mean direction of its class. They do not "
        "depend on the controls above."
    )


def _hypersphere_tab(view: View) -> None:
    with st.spinner("Measuring the angles between samples…"):
        summaries = _sphere_summaries(view.key, _features=view.features)
    _table(hypersphere_records(summaries), "hypersphere")
    st.caption(
        "On the unit-normalised pooled features: mean angle of a sample to its class's mean "
        "direction, mean angle between two samples of one class (intra) and of two classes "
        "(inter), and their separation (larger: better separated classes). Independent of "
        "the stage, split and margin above."
    )
    left, right = st.columns(2)
    model = left.selectbox(
        "Model",
        [f.name for f in view.features],
        key=_key("sphere_model"),
        help="Whose pooled features to draw on the sphere.",
    )
    colour_by = right.radio(
        "Colour by",
        list(COLOUR_BY),
        format_func=COLOUR_BY.get,
        horizontal=True,
        key=_key("colour_by"),
        help="True class, or whether this model classifies the sample right.",
    )
    with st.spinner(f"Projecting the features of {model}…"):
        figure = _sphere_figure(view.key, model, colour_by, _features=view.features)
    st.plotly_chart(figure, width="stretch", config=FIGURE_CONFIG)
    st.caption(
        "A 3-D view: the unit features projected on their first three principal components, "
        "then put back on the sphere. Angles on the view are not the angles in the table. "
        "Drag to rotate."
    )


TAB_VIEWS: dict[str, Callable[[View], None]] = {
    "θ histograms": _histograms_tab,
    "Summary": _summary_tab,
    "One sample": _sample_tab,
    "Classes": _classes_tab,
    "Hypersphere": _hypersphere_tab,
}  # the tabs in order, and what each shows


# ------------------------------------------------------------------ the page

st.title("Angular distributions")
st.markdown(
    "Each entry of an AMD attention map q is the cosine of an angle θ = arccos q between the "
    "map and one position axis of the hypersphere. *Positive* positions are where the teacher "
    "attends (its top-k% or above a quantile) or, on shapes, the object; the others are "
    "negative. AMD asks the student to reproduce the teacher's separation of the two with an "
    "angular margin m: pos = s cos(mθ) against neg = s(1 − q)."
)
st.caption(
    "What to expect: on 32 × 32 maps almost all θ lie between 70° and 90° (a uniform map sits "
    f"at arccos(1/32) = {math.degrees(math.acos(1 / 32)):.1f}°), far above the loss's "
    f"boundary ({boundary_angle(DEFAULT_MARGIN):.1f}° at m = {DEFAULT_MARGIN:g}). So what "
    "matters is how far apart the positive and negative θ are, not which side of the boundary "
    "they fall on."
)

ws = workspace()
teacher, students = require_models(ws)
handles = [teacher, *students]
dataset = require_dataset(ws)
names = distinct_names([handle.name for handle in handles])
features = [
    dataclasses.replace(model_features, name=name)
    for model_features, name in zip(feature_sets(ws, handles), names, strict=True)
]
try:
    stage_labels = stage_choices(features[0], features[1:])
except AnalysisError as exc:
    st.error(str(exc))
    st.stop()

splits = split_options(features[0])
left, middle, right = st.columns(3)
stage = left.selectbox(
    "Stage",
    list(stage_labels),
    index=len(stage_labels) - 1,
    format_func=stage_labels.get,
    key=_key(f"stage/{'/'.join(stage_labels)}"),
    help="The teacher's stage; each student is compared at its stage of the same depth, "
    "counted from the deepest. Shallow stages have larger maps (θ nearer 90°).",
)
split = middle.selectbox(
    "Positive positions",
    splits,
    format_func=SPLIT_LABELS.get,
    key=_key(f"split/{'/'.join(splits)}"),
    help="Which positions count as positive, always chosen on the teacher's map and used for "
    "every model: the object (cells at least half inside the object mask), the teacher's "
    "top-k% of positions, or those above the teacher's (1 − fraction) quantile.",
)
fraction = right.slider(
    "Positive fraction",
    min_value=0.05,
    max_value=0.5,
    value=DEFAULT_FRACTION,
    step=0.05,
    format="%.2f",
    key=_key("fraction"),
    disabled=split == "mask",
    help="The share of each teacher map counted positive by the top-k% and quantile splits "
    "(the object mask decides by itself).",
)
left, right = st.columns(2)
margin = left.slider(
    "Angular margin m",
    **MARGIN_SLIDER,
    key=_key("margin"),
    help="pos = s cos(mθ): a larger margin moves the loss's boundary pos = neg to smaller "
    "angles. It changes the pos and attentive maps and the boundary lines, not θ.",
)
scale = right.select_slider(
    "Scale s",
    options=SCALES,
    value=DEFAULT_SCALE,
    format_func=lambda value: f"{value:g}",
    key=_key("scale"),
    help="Multiplies pos and neg (and so sharpens the attentive term); it moves neither θ nor "
    "the boundary.",
)
if "mask" not in splits:
    st.caption(
        "The samples have no object masks, so the object split is not offered (shapes has them)."
    )

view = View(
    features=features,
    key=content_key(features),
    dataset=dataset,
    dataset_name=ws.dataset,
    stage=stage,
    stage_label=stage_labels[stage],
    margin=margin,
    scale=float(scale),
    split=split,
    fraction=fraction,
)
for tab, render in zip(
    st.tabs(list(TAB_VIEWS), key=_key("tab"), on_change="rerun"), TAB_VIEWS.values(), strict=True
):
    with tab:
        if tab.open:  # only the open tab runs: a slider move recomputes only what is shown
            try:
                render(view)
            except AnalysisError as exc:
                st.error(str(exc))
