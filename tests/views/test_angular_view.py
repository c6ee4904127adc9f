"""The page helpers of kd_core.views.angular on small hand-made feature sets: cache keys,
split and stage choices, table records against the summaries they come from, sample captions
and sphere groups."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from kd_core.analysis.angular import ALL_CLASSES, AngularSummary, angular_report
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.hypersphere import hypersphere_summary
from kd_core.losses.amd import attention_map
from kd_core.views.angular import (
    COLOUR_BY,
    HYPERSPHERE_COLUMNS,
    SUMMARY_COLUMNS,
    class_pivot,
    content_key,
    hypersphere_records,
    sample_caption,
    sphere_groups,
    split_options,
    stage_choices,
    summary_records,
)

CLASSES = ("circle", "square")


def make_set(name, stages, *, seed=0, masks=None, logits=None):
    """Four samples (classes 0, 1, 0, 1, dataset indices 10 to 13) with random maps of the
    given ``{stage: side}``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 1, 0, 1])
    return FeatureSet(
        name=name,
        arch="test",
        indices=torch.arange(10, 14),
        labels=labels,
        logits=torch.eye(2)[labels] if logits is None else logits,
        pooled=torch.randn(4, 6, generator=generator),
        attention={
            stage: attention_map(torch.randn(4, 3, side, side, generator=generator))
            for stage, side in stages.items()
        },
        masks=masks,
        class_names=CLASSES,
    )


STAGES = {"layer1": 8, "layer2": 4, "layer3": 2}


@pytest.fixture
def teacher():
    return make_set("teacher", STAGES, seed=0)


@pytest.fixture
def student():
    return make_set("student", STAGES, seed=1)


def row(**changes) -> AngularSummary:
    values = dict(
        model="teacher", stage="layer3", teacher_stage="layer3", class_name=ALL_CLASSES,
        samples=4, positives=3, negatives=13, mean_theta_pos=70.0, mean_theta_neg=85.0,
        separation=2.5, overlap=0.1, pos_counted_positive=0.25, wasserstein_deg=0.0,
        wasserstein_pos_deg=0.0, wasserstein_neg_deg=0.0, mean_cosine=1.0,
    )  # fmt: skip
    return AngularSummary(**{**values, **changes})


# --- content_key ----------------------------------------------------------------------------


def test_content_key_depends_on_content_not_on_objects(teacher, student):
    key = content_key([teacher, student])
    assert len(key) == 16 and int(key, 16) >= 0
    assert content_key([dataclasses.replace(teacher), dataclasses.replace(student)]) == key
    assert content_key([student, teacher]) != key  # order: the teacher comes first


@pytest.mark.parametrize(
    "change",
    [
        lambda fs: dataclasses.replace(fs, name="other"),
        lambda fs: dataclasses.replace(fs, indices=fs.indices + 1),
        lambda fs: dataclasses.replace(fs, labels=1 - fs.labels),
        lambda fs: dataclasses.replace(fs, pooled=fs.pooled * 2),
        lambda fs: dataclasses.replace(fs, logits=-fs.logits),
        lambda fs: dataclasses.replace(fs, masks=torch.zeros(4, 32, 32, dtype=torch.bool)),
        lambda fs: dataclasses.replace(fs, class_names=("a", "b")),
        lambda fs: dataclasses.replace(
            fs, attention={**fs.attention, "layer3": fs.attention["layer3"].flip(-1)}
        ),
        lambda fs: dataclasses.replace(
            fs, attention={("block3" if k == "layer3" else k): v for k, v in fs.attention.items()}
        ),
    ],
    ids=["name", "indices", "labels", "pooled", "logits", "masks", "classes", "map", "stage"],
)
def test_content_key_changes_with_any_value_read(teacher, change):
    assert content_key([change(teacher)]) != content_key([teacher])


def test_content_key_ignores_raw_stage_features(teacher):
    raw = {"layer3": torch.ones(4, 3, 2, 2, dtype=torch.float16)}
    assert content_key([dataclasses.replace(teacher, stages=raw)]) == content_key([teacher])


# --- choices --------------------------------------------------------------------------------


def test_split_options_put_the_mask_first_only_when_there_are_masks(teacher):
    assert split_options(teacher) == ["teacher_topk", "teacher_quantile"]
    masked = dataclasses.replace(teacher, masks=torch.zeros(4, 32, 32, dtype=torch.bool))
    assert split_options(masked) == ["mask", "teacher_topk", "teacher_quantile"]


def test_stage_choices_pair_by_depth_from_the_deepest(teacher):
    same = make_set("same", STAGES)
    shallow = make_set("shallow", {"block1": 4, "block2": 2})
    assert stage_choices(teacher, [same]) == {s: s for s in STAGES}
    # the two-stage student pairs with the teacher's two deepest stages only
    assert stage_choices(teacher, [shallow]) == {
        "layer2": "layer2 / block1",
        "layer3": "layer3 / block2",
    }
    assert stage_choices(teacher, [same, shallow]) == {
        "layer1": "layer1",
        "layer2": "layer2 / block1",
        "layer3": "layer3 / block2",
    }


def test_stage_choices_are_the_stages_the_report_compares(teacher):
    shallow = make_set("shallow", {"block1": 4, "block2": 2})
    rows = angular_report(teacher, [shallow], per_class=False, fraction=0.25)
    assert list(stage_choices(teacher, [shallow])) == list(
        dict.fromkeys(r.teacher_stage for r in rows)
    )


def test_stage_choices_need_a_student(teacher):
    with pytest.raises(AnalysisError, match="at least one student"):
        stage_choices(teacher, [])


# --- records --------------------------------------------------------------------------------


def test_summary_records_name_every_field_and_give_percent(teacher, student):
    rows = angular_report(teacher, [student], per_class=False, fraction=0.25)
    records = summary_records(rows)
    assert len(records) == len(rows) == 6  # 3 stages x (teacher, student)
    assert set(SUMMARY_COLUMNS) == {f.name for f in dataclasses.fields(AngularSummary)}
    for record, source in zip(records, rows, strict=True):
        assert list(record) == list(SUMMARY_COLUMNS.values())
        assert record["model"] == source.model
        assert record["mean θ pos (°)"] == source.mean_theta_pos
        assert record["Wasserstein (°)"] == source.wasserstein_deg
        assert record["pos > neg (%)"] == pytest.approx(100 * source.pos_counted_positive)


def test_hypersphere_records(teacher, student):
    summaries = [hypersphere_summary(teacher), hypersphere_summary(student)]
    records = hypersphere_records(summaries)
    assert set(HYPERSPHERE_COLUMNS) == {f.name for f in dataclasses.fields(summaries[0])}
    assert [r["model"] for r in records] == ["teacher", "student"]
    assert records[1]["inter-class angle (°)"] == summaries[1].mean_inter_deg
    assert records[0]["intra-class pairs"] == 2  # (0, 2) and (1, 3) of 6 pairs


def test_class_pivot_one_record_per_class_one_column_per_model():
    rows = [
        row(),
        row(class_name="circle", separation=1.0),
        row(class_name="square", separation=2.0),
        row(model="student", class_name="circle", separation=-0.5),
        row(model="student", class_name="square", separation=math.inf),
    ]
    assert class_pivot(rows) == [
        {"class": "circle", "teacher": 1.0, "student": -0.5},
        {"class": "square", "teacher": 2.0, "student": math.inf},
    ]
    assert class_pivot(rows, "overlap")[0] == {"class": "circle", "teacher": 0.1, "student": 0.1}


def test_class_pivot_on_a_real_report(teacher, student):
    rows = [
        r for r in angular_report(teacher, [student], fraction=0.25) if r.teacher_stage == "layer1"
    ]
    pivot = class_pivot(rows)
    assert [p["class"] for p in pivot] == list(CLASSES)
    [expected] = [r.separation for r in rows if r.model == "student" and r.class_name == "square"]
    assert pivot[1]["student"] == expected


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([row(class_name="circle")], "class_name", "Unknown summary value"),
        ([row(class_name="circle")], "nonsense", "Unknown summary value"),
        ([row()], "separation", "per_class=True"),
        (
            [row(class_name="circle"), row(class_name="circle", teacher_stage="layer2")],
            "separation",
            "several stages",
        ),
    ],
)
def test_class_pivot_rejects_bad_input(rows, field, message):
    with pytest.raises(AnalysisError, match=message):
        class_pivot(rows, field)


# --- one sample, sphere groups --------------------------------------------------------------


def test_sample_caption_marks_right_and_wrong_predictions(teacher):
    wrong = make_set("student", STAGES, logits=torch.tensor([[1.0, 0], [1, 0], [1, 0], [1, 0]]))
    assert sample_caption([teacher, wrong], 1) == (
        "Image #11, class square. Predictions: teacher: square ✓, student: circle ✗."
    )
    assert (
        sample_caption([teacher], 2) == "Image #12, class circle. Predictions: teacher: circle ✓."
    )


@pytest.mark.parametrize("position", [-1, 4, 1.0, True])
def test_sample_caption_rejects_positions_outside(teacher, position):
    with pytest.raises(AnalysisError, match="from 0 to 3"):
        sample_caption([teacher], position)


def test_sphere_groups(teacher):
    labels = sphere_groups(teacher, "class")
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 0, 1]
    logits = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    groups = sphere_groups(dataclasses.replace(teacher, logits=logits), "prediction")
    assert groups.tolist() == ["correct", "wrong", "correct", "correct"]
    assert set(COLOUR_BY) == {"class", "prediction"}
    with pytest.raises(AnalysisError, match="Unknown colouring"):
        sphere_groups(teacher, "stage")
