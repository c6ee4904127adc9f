"""The page helpers of kd_core.views.embedding on small hand-made feature sets: feature
choices and joint-map rules, maps against float64 numpy references (a rotated copy of the
teacher lands on the teacher), selections mapped back to samples, CSV, CKA and cache keys."""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from kd_core.analysis.embedding import embed, joint_embedding
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.figures.embedding import embedding_figure
from kd_core.losses.amd import attention_map
from kd_core.views.embedding import (
    CSV_COLUMNS,
    LAYOUTS,
    cka_matrices,
    coordinates_csv,
    deepest_maps,
    embed_models,
    feature_choices,
    joint_problem,
    model_features,
    points_by_model,
    selected_positions,
    selection_records,
    stages_key,
)

CLASSES = ("circle", "square", "star")
N = 30
INDICES = torch.arange(100, 100 + N)


def make_set(name, stages, *, seed=0, pooled=None, labels=None, logits=None, raw=False):
    """``N`` samples (classes 0, 1, 2, 0, ..., dataset indices 100 to 129) with anisotropic
    random pooled features and random stage features of the given ``{stage: side}``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(N) % 3 if labels is None else labels
    if pooled is None:
        pooled = torch.randn(N, 6, generator=generator) * torch.linspace(3.0, 0.5, 6)
    raw_stages = {
        stage: torch.randn(N, 3, side, side, generator=generator) for stage, side in stages.items()
    }
    return FeatureSet(
        name=name,
        arch="test",
        indices=INDICES.clone(),
        labels=labels,
        logits=torch.randn(N, 3, generator=generator) if logits is None else logits,
        pooled=pooled,
        attention={stage: attention_map(f) for stage, f in raw_stages.items()},
        stages={stage: f.half() for stage, f in raw_stages.items()} if raw else {},
        class_names=CLASSES,
    )


TEACHER_STAGES = {"layer1": 8, "layer2": 4, "layer3": 2}


@pytest.fixture
def teacher():
    return make_set("teacher", TEACHER_STAGES, seed=0)


@pytest.fixture
def student():
    return make_set("student", {"block1": 4, "block2": 2}, seed=1)


def _reference_pca(x: np.ndarray) -> np.ndarray:
    """Projection on the top-2 eigenvectors of the float64 covariance."""
    centred = x - x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    return centred @ eigenvectors[:, np.argsort(eigenvalues)[::-1][:2]]


def _reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(axis=0)
    y = y.reshape(len(y), -1) - y.reshape(len(y), -1).mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


# --- feature choices ---------------------------------------------------------------------------


def test_feature_choices_pair_stages_by_depth(teacher, student):
    assert feature_choices([teacher]) == {
        "pooled": "pooled penultimate features",
        "logits": "logits",
        "attention:layer1": "attention map at layer1",
        "attention:layer2": "attention map at layer2",
        "attention:layer3": "attention map at layer3",
    }
    # the two-stage student pairs with the teacher's two deepest stages
    assert list(feature_choices([teacher, student])) == [
        "pooled", "logits", "attention:layer2", "attention:layer3",
    ]  # fmt: skip
    assert feature_choices([teacher, student])["attention:layer2"] == (
        "attention map at layer2 / block1"
    )


def test_model_features_pick_each_models_paired_stage(teacher, student):
    pooled = model_features([teacher, student], "pooled")
    assert pooled["teacher"] is teacher.pooled and pooled["student"] is student.pooled
    assert model_features([teacher, student], "logits")["student"] is student.logits
    maps = model_features([teacher, student], "attention:layer3")
    assert maps["teacher"] is teacher.attention["layer3"]
    assert maps["student"] is student.attention["block2"]
    with pytest.raises(AnalysisError, match="Unknown features 'attention:layer1'"):
        model_features([teacher, student], "attention:layer1")  # no student stage pairs it


def test_models_need_distinct_names_and_stages(teacher):
    with pytest.raises(AnalysisError, match="share a name"):
        feature_choices([teacher, dataclasses.replace(teacher)])
    with pytest.raises(AnalysisError, match="No models"):
        feature_choices([])
    with pytest.raises(AnalysisError, match="declare no stages"):
        feature_choices([dataclasses.replace(teacher, attention={})])


def test_joint_problem_allows_only_shared_spaces(teacher, student):
    same_size = make_set("same size", {"block1": 4, "block2": 2}, seed=2)
    assert joint_problem([teacher, student], "logits") is None
    assert joint_problem([teacher, same_size], "attention:layer3") is None  # 2 x 2 and 2 x 2
    assert "do not share a space" in joint_problem([teacher, student], "pooled")
    assert joint_problem([teacher], "logits").startswith("Only one model is chosen")
    wider = make_set("wider", {"block1": 8, "block2": 4}, seed=3)
    problem = joint_problem([teacher, wider], "attention:layer3")
    assert "differ in size (teacher: 2 × 2, wider: 4 × 4)" in problem


# --- maps ------------------------------------------------------------------------------------


def test_teacher_map_is_pca_and_a_rotated_student_lands_on_it(teacher):
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(6, 6)))
    rotated = (teacher.pooled.double().numpy() @ rotation) * 2.5 + 4.0
    student = dataclasses.replace(teacher, name="student", pooled=torch.from_numpy(rotated).float())
    maps = embed_models([teacher, student], "pooled")
    reference = _reference_pca(teacher.pooled.double().numpy())
    # PCA axes are defined up to sign
    np.testing.assert_allclose(np.abs(maps["teacher"].points), np.abs(reference), atol=1e-5)
    np.testing.assert_array_equal(maps["teacher"].indices, INDICES.numpy())
    # a rotated, scaled and shifted copy is embedded on its own (its PCA may flip axes),
    # then Procrustes puts it back on the teacher's map
    np.testing.assert_allclose(maps["student"].points, maps["teacher"].points, atol=1e-4)
    assert maps["student"].parameters["aligned_to"] == "teacher"


def test_normalising_ignores_the_length_of_each_row(teacher):
    scaled = dataclasses.replace(
        teacher, pooled=teacher.pooled * torch.linspace(0.5, 5.0, N)[:, None]
    )
    plain = embed_models([teacher], "pooled", normalize=True)["teacher"].points
    np.testing.assert_allclose(
        embed_models([scaled], "pooled", normalize=True)["teacher"].points, plain, atol=1e-5
    )
    assert not np.allclose(embed_models([scaled], "pooled")["teacher"].points, plain, atol=1e-2)


def test_joint_layout_embeds_all_rows_in_one_run(teacher, student):
    maps = embed_models([teacher, student], "logits", layout="joint")
    expected = joint_embedding(
        {"teacher": teacher.logits, "student": student.logits},
        indices={"teacher": INDICES, "student": INDICES},
    )
    for name in ("teacher", "student"):
        np.testing.assert_array_equal(maps[name].points, expected[name].points)
    stacked = np.concatenate([maps["teacher"].points, maps["student"].points])
    np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-9)  # one centring for all
    with pytest.raises(AnalysisError, match="do not share a space"):
        embed_models([teacher, student], "pooled", layout="joint")
    with pytest.raises(AnalysisError, match="Unknown layout 'stacked'"):
        embed_models([teacher, student], "logits", layout="stacked")
    assert list(LAYOUTS) == ["aligned", "joint"]


def test_tsne_on_attention_maps_and_too_few_samples(teacher, student):
    maps = embed_models([teacher, student], "attention:layer3", method="tsne", perplexity=5)
    assert {m.method for m in maps.values()} == {"tsne"}
    assert maps["student"].points.shape == (N, 2)
    with pytest.raises(AnalysisError) as error:
        embed_models([teacher, student], "pooled", method="tsne", perplexity=20)
    assert str(error.value) == (
        "t-SNE needs more samples than 3 x perplexity (20), got 30: select at least 61 samples "
        "or lower the perplexity (below 10)."
    )


def test_bad_inputs_are_sentences(teacher, student):
    broken = teacher.pooled.clone()
    broken[3, 1] = math.nan
    with pytest.raises(AnalysisError, match="NaN or infinite values in 1 of 30 rows"):
        embed_models([dataclasses.replace(teacher, pooled=broken)], "pooled")
    shifted = dataclasses.replace(student, indices=INDICES + 1)
    with pytest.raises(AnalysisError, match="different samples"):
        embed_models([teacher, shifted], "logits")


def test_one_class_only_still_maps_and_draws(teacher):
    single = dataclasses.replace(teacher, labels=torch.zeros(N, dtype=torch.int64))
    maps = embed_models([single], "pooled")
    figure = embedding_figure(points_by_model(maps), single.labels, class_names=CLASSES)
    assert [trace.name for trace in figure.data] == ["circle"]
    rows = list(csv.DictReader(io.StringIO(coordinates_csv([single], maps))))
    assert {row["class"] for row in rows} == {"circle"}


def test_points_by_model_needs_the_same_samples(teacher):
    [embedding] = embed_models([teacher], "pooled").values()
    other = dataclasses.replace(embedding, indices=embedding.indices[::-1].copy())
    assert points_by_model({"a": embedding})["a"] is embedding.points
    with pytest.raises(AnalysisError, match="b's map holds other samples"):
        points_by_model({"a": embedding, "b": other})
    with pytest.raises(AnalysisError, match="No maps"):
        points_by_model({})


def test_coordinates_csv_lists_every_model_and_sample(teacher, student):
    maps = embed_models([teacher, student], "logits")
    rows = list(csv.reader(io.StringIO(coordinates_csv([teacher, student], maps))))
    assert tuple(rows[0]) == CSV_COLUMNS == ("model", "sample index", "class", "x", "y")
    body = rows[1:]
    assert len(body) == 2 * N
    assert [r[0] for r in body] == ["teacher"] * N + ["student"] * N
    assert [int(r[1]) for r in body[:N]] == INDICES.tolist()
    assert [r[2] for r in body[:4]] == ["circle", "square", "star", "circle"]
    xy = np.array([[float(r[3]), float(r[4])] for r in body])
    np.testing.assert_array_equal(xy[N:], maps["student"].points)  # full precision


# --- selection -------------------------------------------------------------------------------


def test_selected_positions_from_plotly_points():
    indices = torch.tensor([10, 11, 12, 13])
    selection = {
        "points": [
            {"customdata": 12, "curve_number": 0},
            {"customdata": [10]},  # plotly express style
            {"customdata": 12.0},  # the same sample in another panel
            {"customdata": 99},  # not among the samples (a stale selection)
            {"x": 1.0},  # no sample index
        ],
        "box": [],
    }
    positions = selected_positions(selection, indices)
    assert positions.tolist() == [0, 2]
    assert positions.dtype == np.int64
    assert selected_positions({"points": []}, indices).tolist() == []
    assert selected_positions(None, indices).tolist() == []


def test_selection_records_mark_right_and_wrong(teacher):
    labels = teacher.labels
    student = dataclasses.replace(
        teacher, name="student", logits=torch.nn.functional.one_hot((labels + 1) % 3).float()
    )
    right = dataclasses.replace(teacher, logits=torch.nn.functional.one_hot(labels).float())
    assert selection_records([right, student], [0, 4]) == [
        {"sample": 100, "class": "circle", "teacher": "circle ✓", "student": "square ✗"},
        {"sample": 104, "class": "square", "teacher": "square ✓", "student": "star ✗"},
    ]
    with pytest.raises(AnalysisError, match="Sample position 30 is outside 0 to 29"):
        selection_records([right], [30])


def test_deepest_maps_are_each_models_last_attention(teacher, student):
    maps = deepest_maps([teacher, student], 7)
    assert list(maps) == ["teacher", "student"]
    torch.testing.assert_close(maps["teacher"], teacher.attention["layer3"][7])
    torch.testing.assert_close(maps["student"], student.attention["block2"][7])
    with pytest.raises(AnalysisError, match="outside"):
        deepest_maps([teacher], -1)


# --- CKA and keys ----------------------------------------------------------------------------


def test_cka_matrices_per_student_against_numpy():
    teacher = make_set("teacher", TEACHER_STAGES, seed=0, raw=True)
    students = [make_set(f"s{k}", {"b1": 4, "b2": 2}, seed=k, raw=True) for k in (1, 2)]
    result = cka_matrices([teacher, *students])
    assert list(result) == ["s1", "s2"]
    values, teacher_names, student_names = result["s2"]
    assert teacher_names == ["layer1", "layer2", "layer3"] and student_names == ["b1", "b2"]
    expected = _reference_cka(
        teacher.stages["layer2"].double().numpy(), students[1].stages["b2"].double().numpy()
    )
    assert values[1, 1] == pytest.approx(expected, rel=1e-9)
    # a student identical to the teacher has CKA 1 on the diagonal
    twin = dataclasses.replace(teacher, name="twin")
    np.testing.assert_allclose(np.diag(cka_matrices([teacher, twin])["twin"].values), 1.0)


def test_cka_matrices_refuse_missing_students_or_stages(teacher, student):
    with pytest.raises(AnalysisError, match="choose at least one student"):
        cka_matrices([teacher])
    with pytest.raises(AnalysisError, match="teacher, student have no raw stage features"):
        cka_matrices([teacher, student])


def test_stages_key_follows_the_raw_stages():
    teacher = make_set("teacher", TEACHER_STAGES, seed=0, raw=True)
    key = stages_key([teacher])
    assert len(key) == 16
    assert stages_key([dataclasses.replace(teacher)]) == key
    changed = dict(teacher.stages)
    changed["layer2"] = changed["layer2"].clone()
    changed["layer2"][0, 0, 0, 0] += 1
    assert stages_key([dataclasses.replace(teacher, stages=changed)]) != key
    assert stages_key([dataclasses.replace(teacher, stages={})]) != key
    assert stages_key([dataclasses.replace(teacher, name="other")]) != key


def test_embedding_of_one_model_matches_embed(teacher):
    maps = embed_models([teacher], "logits", method="pca", normalize=True)
    expected = embed(teacher.logits, normalize=True, indices=INDICES)
    np.testing.assert_array_equal(maps["teacher"].points, expected.points)
