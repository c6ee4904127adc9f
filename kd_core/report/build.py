"""What the HTML report shows, gathered from a workspace with the pages' own functions.

A :class:`ReportRequest` names the workspace (a teacher, its students, a dataset split and a
sample count, as the app's sidebar does); :func:`build_report` loads the checkpoints, computes
(or reads from the feature cache the app shares) each model's features and returns a
:class:`Report`: sections of headings, paragraphs, tables and plotly figures, each drawn by the
builder the corresponding page calls, with the page's default controls:

* Workspace: :func:`~kd_core.views.home.workspace_records`, plus each model's top-1 on the
  analysed images;
* Angular distributions, one block per compared stage:
  :func:`~kd_core.figures.angular.theta_histogram_figure` (share axis logarithmic, as the
  page opens) and the overall rows of :func:`~kd_core.analysis.angular.summarise` (what
  :func:`~kd_core.analysis.angular.angular_report` returns for the stage) as
  :func:`~kd_core.views.angular.summary_records`;
* Attention maps: :data:`REPORT_IMAGES` images (the first sample of each class, then the next
  ones), the AMD attention ``q`` of the deepest paired stage
  (:func:`~kd_core.analysis.attribution.attribution_maps`, ``"activation"``) drawn by
  :func:`~kd_core.figures.attention.attention_overlay_figure`, and
  :func:`~kd_core.views.image_browser.agreement_rows` of every image in one table;
* Feature embedding: PCA of the pooled features, students aligned on the teacher
  (:func:`~kd_core.views.embedding.embed_models`,
  :func:`~kd_core.figures.embedding.embedding_figure`);
* Stage similarity: :func:`~kd_core.views.embedding.cka_matrices` on at most
  :data:`~kd_core.views.embedding.CKA_SAMPLES` samples, one
  :func:`~kd_core.figures.similarity.cka_heatmap_figure` per student;
* Results: the table of ``docs/results.md`` (:mod:`kd_core.report.results`) when the teacher
  is the bundled one (the table is about it).

Example::

    entries = list_checkpoints()
    request = ReportRequest(find_entry(entries, "bundled:teacher_resnet20"),
                            (find_entry(entries, "bundled:student_resnet8_amd"),))
    report = build_report(request, progress=print)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import plotly.graph_objects as go
import torch
from torch import Tensor

import kd_core
from kd_core.analysis.angular import DEFAULT_FRACTION, stage_angles, summarise
from kd_core.analysis.attribution import METHODS, attribution_maps
from kd_core.analysis.feature_cache import FeatureCache, feature_set_for
from kd_core.analysis.feature_set import FeatureSet
from kd_core.checkpoints import LoadedCheckpoint, load_checkpoint
from kd_core.data import create_dataset, dataset_info, denormalize
from kd_core.figures.angular import theta_histogram_figure
from kd_core.figures.attention import attention_overlay_figure
from kd_core.figures.embedding import embedding_caption, embedding_figure
from kd_core.figures.margin import boundary_angle
from kd_core.figures.similarity import cka_heatmap_figure
from kd_core.losses.amd import DEFAULT_MARGIN, DEFAULT_SCALE
from kd_core.report.results import RESULTS_FILE, results_html
from kd_core.views.angular import (
    NUMBER_FORMATS,
    SPLIT_LABELS,
    SUMMARY_SHOWN,
    split_options,
    stage_choices,
    summary_records,
)
from kd_core.views.embedding import CKA_SAMPLES, cka_matrices, embed_models, points_by_model
from kd_core.views.home import (
    WORKSPACE_FORMATS,
    checkpoint_name,
    class_count_problem,
    workspace_records,
)
from kd_core.views.image_browser import (
    agreement_formats,
    agreement_rows,
    class_labels,
    distinct_names,
    paired_stage_rows,
)
from kd_core.workspace import (
    DEFAULT_SAMPLES,
    CheckpointEntry,
    bundled_checkpoints,
    dataset_key,
)

REPORT_IMAGES = 8
"""Images of the attention grid."""
ATTENTION_METHOD = "activation"
"""The attention page's default method: the AMD attention ``q`` of a stage, what the loss
sees (one forward pass per image)."""
EMBEDDING = {"kind": "pooled", "method": "pca", "layout": "aligned"}
"""The embedding page's default controls."""

Progress = Callable[[str], None]


class ReportError(ValueError):
    """A report that cannot be made, worded for the user: what was wrong and what to do."""


@dataclass(frozen=True)
class ReportRequest:
    """The workspace a report describes, as the app's sidebar holds it."""

    teacher: CheckpointEntry
    students: tuple[CheckpointEntry, ...]
    dataset: str = "shapes"
    split: str = "test"
    samples: int = DEFAULT_SAMPLES
    data_root: str | None = None


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Paragraph:
    """Plain text (escaped when written)."""

    text: str


@dataclass(frozen=True)
class Markup:
    """HTML from the project's own files (the results table), written as it is."""

    html: str


@dataclass(frozen=True)
class ReportTable:
    """Table records (one dict per row); ``columns`` shown (all by default); ``formats``:
    column -> printf format of its numbers."""

    records: list[dict[str, object]]
    formats: Mapping[str, str] = field(default_factory=dict)
    columns: Sequence[str] | None = None


@dataclass(frozen=True)
class ReportFigure:
    """A plotly figure; ``name`` is its file name (without suffix) when written on its own."""

    name: str
    figure: go.Figure


Item = Heading | Paragraph | Markup | ReportTable | ReportFigure


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Report:
    """Everything the HTML file shows, in order."""

    title: str
    summary: str
    sections: tuple[Section, ...]

    @property
    def figures(self) -> list[ReportFigure]:
        """Every figure of the report, in order."""
        return [
            item
            for section in self.sections
            for item in section.items
            if isinstance(item, ReportFigure)
        ]


# ---------------------------------------------------------------- checks and data


def _load(entries: Sequence[CheckpointEntry]) -> list[LoadedCheckpoint]:
    loaded = [load_checkpoint(entry.path) for entry in entries]
    problem = class_count_problem(
        {checkpoint_name(e): c.num_classes for e, c in zip(entries, loaded, strict=True)}
    )
    if problem:
        raise ReportError(problem)
    return loaded


def _dataset(request: ReportRequest) -> torch.utils.data.Dataset:
    try:
        return create_dataset(
            request.dataset, split=request.split, root=request.data_root, augment=False
        )
    except OSError as error:
        raise ReportError(
            f"Cannot read the {request.dataset} {request.split} data ({error}); give the folder "
            "that holds it."
        ) from None


def _feature_sets(
    request: ReportRequest,
    models: Sequence[LoadedCheckpoint],
    names: Sequence[str],
    dataset: torch.utils.data.Dataset,
    samples: int,
    *,
    keep_stages: bool = False,
    cache: FeatureCache | None = None,
) -> list[FeatureSet]:
    """Each model's features on the first ``samples`` of the workspace's fixed selection,
    through the feature cache the app uses (same keys: a page visited before makes this
    instant)."""
    key = dataset_key(request.dataset, request.split, request.data_root)
    return [
        feature_set_for(
            loaded.model,
            dataset,
            key,
            name=name,
            arch=loaded.arch,
            samples=samples,
            keep_stages=keep_stages,
            cache=cache,
        )
        for loaded, name in zip(models, names, strict=True)
    ]


def image_positions(labels: Tensor, count: int = REPORT_IMAGES) -> list[int]:
    """``count`` sample positions for the attention grid: the first sample of each class (in
    class order), then the first samples not yet taken, until there are ``count``.

    >>> image_positions(torch.tensor([2, 2, 0, 1, 0]), 4)
    [2, 3, 0, 1]
    """
    firsts = [int(torch.nonzero(labels == c)[0]) for c in labels.unique(sorted=True).tolist()]
    chosen = firsts[:count]
    taken = set(chosen)
    chosen += [p for p in range(len(labels)) if p not in taken][: count - len(chosen)]
    return chosen


# ---------------------------------------------------------------- sections


def _workspace_section(request: ReportRequest, features: Sequence[FeatureSet]) -> Section:
    count = len(features[0])
    measured = f"top-1 on these {count:,} images (%)"
    records = [
        {**record, measured: 100.0 * float(model.correct.float().mean())}
        for record, model in zip(
            workspace_records(request.teacher, request.students), features, strict=True
        )
    ]
    title = dataset_info(request.dataset).title
    return Section(
        "Workspace",
        (
            ReportTable(records, {**WORKSPACE_FORMATS, measured: "%.2f"}),
            Paragraph(
                f"Every analysis below uses the same {count:,} images of the {request.split} "
                f"split of {title} (a fixed random subset). top-1 (%) is the accuracy recorded "
                "with the file, when it records one."
            ),
        ),
    )


def _angular_section(features: Sequence[FeatureSet]) -> Section:
    teacher, students = features[0], list(features[1:])
    split = split_options(teacher)[0]
    options = {
        "margin": DEFAULT_MARGIN, "scale": DEFAULT_SCALE, "split": split,
        "fraction": DEFAULT_FRACTION,
    }  # fmt: skip
    items: list[Item] = [
        Paragraph(
            f"θ = arccos q of each position of the AMD attention maps, split by the "
            f"{SPLIT_LABELS[split]} (chosen on the teacher's map, used for every model): solid "
            "lines the positive positions, dashed the others. The dotted lines mark the loss's "
            f"boundary pos = neg, {boundary_angle(DEFAULT_MARGIN):.1f}° for the margin "
            f"m = {DEFAULT_MARGIN:g}. A student that distils well puts its curves where the "
            "teacher's are, as far apart."
        )
    ]
    for stage, label in stage_choices(teacher, students).items():
        angles = stage_angles(teacher, students, stage, **options)  # once for both
        figure = theta_histogram_figure(angles, margin=DEFAULT_MARGIN)
        rows = [row for model in angles for row in summarise(angles[0], model, per_class=False)]
        items += [
            Heading(f"At {label}"),
            ReportFigure(f"theta_{stage}", figure.update_yaxes(type="log")),
            ReportTable(summary_records(rows), NUMBER_FORMATS, SUMMARY_SHOWN),
        ]
    return Section("Angular distributions", tuple(items))


def _attention_section(
    models: Mapping[str, torch.nn.Module],
    features: Sequence[FeatureSet],
    dataset: torch.utils.data.Dataset,
    dataset_name: str,
) -> Section:
    teacher = features[0]
    row = paired_stage_rows(
        {
            name: getattr(getattr(model, "feature_spec", None), "stages", ())
            for name, model in models.items()
        }
    )[-1]
    positions = image_positions(teacher.labels)
    indices = [int(teacher.indices[p]) for p in positions]
    images = torch.stack([dataset[index][0] for index in indices])
    maps = {
        name: attribution_maps(model, images, method=ATTENTION_METHOD, stage=row.stages[name])
        for name, model in models.items()
    }
    classes = class_labels(teacher.class_names, teacher.logits.shape[1])
    method = METHODS[ATTENTION_METHOD].label
    figures: list[Item] = []
    agreement: list[dict[str, object]] = []
    formats: dict[str, str] = {}
    for number, (position, index) in enumerate(zip(positions, indices, strict=True)):
        image_maps = {name: model_maps[number] for name, model_maps in maps.items()}
        mask = None if teacher.masks is None else teacher.masks[position]
        description = f"#{index}, true class {classes[int(teacher.labels[position])]}"
        figures.append(
            ReportFigure(
                f"attention_{number + 1}",
                attention_overlay_figure(
                    denormalize(images[number], dataset_name),
                    image_maps,
                    mask=mask,
                    title=f"{method} · {row.label} · {description}",
                ),
            )
        )
        rows = agreement_rows(image_maps, mask=mask)
        formats = agreement_formats(list(rows[0]))
        agreement += [{"image": f"#{index}", **r} for r in rows]
    return Section(
        "Attention maps",
        (
            Paragraph(
                f"Where each model looks on {len(positions)} images (the first sample of each "
                f"class): {METHODS[ATTENTION_METHOD].description} Stage {row.label}; each map "
                "divided by its maximum, differences are student minus teacher."
            ),
            *figures,
            Heading("Agreement"),
            ReportTable(agreement, formats),
            Paragraph(
                "Cosine and rank correlation: 1 when a student's map matches the teacher's. "
                "Top-20% IoU: overlap of the most attended fifth of the pixels."
                + (
                    " Attention inside object: the share of the map's mass on the object; a "
                    "uniform map scores the object's area (chance level)."
                    if teacher.masks is not None
                    else ""
                )
            ),
        ),
    )


def _embedding_section(features: Sequence[FeatureSet]) -> Section:
    teacher = features[0]
    maps = embed_models(
        features, EMBEDDING["kind"], method=EMBEDDING["method"], layout=EMBEDDING["layout"]
    )
    figure = embedding_figure(
        points_by_model(maps),
        teacher.labels,
        colour_by="class",
        correct={model.name: model.correct for model in features},
        class_names=teacher.class_names,
        indices=teacher.indices,
        method=EMBEDDING["method"],
    )
    return Section(
        "Feature embedding",
        (
            ReportFigure("embedding", figure),
            Paragraph(embedding_caption(maps, EMBEDDING["method"], EMBEDDING["layout"])),
        ),
    )


def _cka_section(features: Sequence[FeatureSet], total: int) -> Section:
    matrices = cka_matrices(features)
    count = len(features[0])
    subset = f" (a fixed random subset of the {total:,})" if count < total else ""
    return Section(
        "Which teacher stage each student stage resembles (linear CKA)",
        (
            Paragraph(
                f"Linear CKA of the raw stage features on {count:,} samples{subset}. 0: "
                "unrelated, 1: the same up to rotation and scale. A student that mimics its "
                "teacher has high values on the diagonal (stages of the same depth)."
            ),
            *(
                ReportFigure(
                    f"cka_{number}",
                    cka_heatmap_figure(
                        matrix.values,
                        matrix.teacher_names,
                        matrix.student_names,
                        student_label=student,
                    ),
                )
                for number, (student, matrix) in enumerate(matrices.items(), start=1)
            ),
        ),
    )


def _is_bundled_teacher(entry: CheckpointEntry) -> bool:
    return any(
        bundled.role == "teacher" and bundled.path.resolve() == entry.path.resolve()
        for bundled in bundled_checkpoints()
    )


# ---------------------------------------------------------------- the report


def build_report(
    request: ReportRequest,
    *,
    progress: Progress | None = None,
    cache: FeatureCache | None = None,
) -> Report:
    """Everything the report shows for ``request``'s workspace (see the module docstring).
    ``progress`` receives one line per step; features come from ``cache`` (default: the one
    the app uses, :func:`~kd_core.analysis.feature_cache.default_feature_cache`).

    Raises:
        ReportError: no student, students whose class count differs from the teacher's, data
            that cannot be read.
        CheckpointError: a checkpoint that cannot be loaded.
        AnalysisError: data the analyses refuse (e.g. a model whose classes differ from the
            dataset's).
    """
    say = progress or (lambda _line: None)
    if not request.students:
        raise ReportError(
            "A report compares students with their teacher: choose at least one student."
        )
    entries = [request.teacher, *request.students]
    loaded = _load(entries)  # quick, and silent: a refusal is the only line printed
    dataset = _dataset(request)
    names = distinct_names([checkpoint_name(entry) for entry in entries])
    samples = min(request.samples, len(dataset))
    say(f"Features of {len(entries)} models on {samples:,} images")
    features = _feature_sets(request, loaded, names, dataset, samples, cache=cache)
    cka_samples = min(samples, CKA_SAMPLES)
    cka_features = _feature_sets(
        request, loaded, names, dataset, cka_samples, keep_stages=True, cache=cache
    )
    say("Angular distributions")
    sections = [_workspace_section(request, features), _angular_section(features)]
    say("Attention maps")
    models = {name: checkpoint.model for name, checkpoint in zip(names, loaded, strict=True)}
    sections.append(_attention_section(models, features, dataset, request.dataset))
    say("Feature embedding and CKA")
    sections += [_embedding_section(features), _cka_section(cka_features, samples)]
    results = results_html(RESULTS_FILE) if _is_bundled_teacher(request.teacher) else None
    if results:
        sections.append(
            Section("Results of the bundled checkpoints (docs/results.md)", (Markup(results),))
        )
    written = datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = (
        f"Teacher {names[0]}; students {', '.join(names[1:])}; {samples:,} images of the "
        f"{request.split} split of {dataset_info(request.dataset).title}. Written {written} by "
        f"kd_core {kd_core.__version__}."
    )
    return Report("AMD workbench report", summary, tuple(sections))
