"""Path-like input and numeric extremes.

Paths: run ids, run names, workspace keys and upload file names come from users; none of
them can reach outside the runs and uploads folders (refused with a sentence, or reduced to
a safe name / stored by content hash). Teacher paths are a local CLI feature: the Distill
form only offers the workspace's checkpoints.

Numbers: NaN, inf, zeros, huge and tiny values, margins and scales at and beyond their
bounds, through the AMD loss, ``angular_terms``, ``angular_report``, ``embed``,
``linear_cka`` and ``attribution_maps``: each gives a sentence or finite output as
documented; a NaN input to the loss gives a NaN loss (visible), never a finite wrong value.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kd_core.analysis.angular import angular_report
from kd_core.analysis.attribution import attribution_maps
from kd_core.analysis.embedding import embed
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.similarity import linear_cka
from kd_core.checkpoints import CheckpointError
from kd_core.losses.amd import amd_layer_loss, angular_terms
from kd_core.losses.registry import build_loss
from kd_core.models import create_model
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import RunFiles
from kd_core.training.runs import RunManager, new_run_id
from kd_core.views.distill import DistillForm, build_config
from kd_core.workspace import find_entry, list_checkpoints, store_upload
from tests.reliability.corpus import assert_sentence, state_dict_bytes

NAN, INF = float("nan"), float("inf")

BAD_RUN_IDS = [
    "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "x\x00y", "x" * 129, "..", ".",
    ".hidden", "", " ", "a..b", "-x", "run\n", "é", None, 5,
]  # fmt: skip


@pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=[repr(r)[:24] for r in BAD_RUN_IDS])
def test_a_path_like_run_id_is_refused(run_id, project_env) -> None:
    manager = RunManager(project_env.runs)
    before = project_env.snapshot()
    with pytest.raises(ValueError) as refused:
        manager.run_dir(run_id)
    assert_sentence(str(refused.value), "is not a run id; run ids are letters, digits")
    for operation in (manager.read, manager.cancel, manager.delete, manager.resume):
        with pytest.raises(ValueError, match="is not a run id"):
            operation(run_id)
    assert project_env.snapshot() == before


def test_a_run_outside_the_root_cannot_be_deleted_through_a_relative_id(project_env) -> None:
    victim = RunFiles(project_env.root / "victim")
    victim.dir.mkdir()
    victim.update_status(state="finished")
    manager = RunManager(project_env.runs)
    project_env.runs.mkdir()
    before = project_env.snapshot()
    for run_id in ("../victim", str(victim.dir)):
        with pytest.raises(ValueError, match="is not a run id"):
            manager.delete(run_id)
    assert project_env.snapshot() == before


@pytest.mark.parametrize("run_id", ["ok-run_1.2", "x" * 128])
def test_a_plain_run_id_names_a_folder_directly_under_the_root(run_id, project_env) -> None:
    assert RunManager(project_env.runs).run_dir(run_id) == project_env.runs / run_id


NAMES = ["../../etc/passwd", "a/b", "x" * 500, "\x00", "...", "", "名前"]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:24] for n in NAMES])
def test_a_run_name_becomes_a_safe_run_id(name: str, project_env) -> None:
    manager = RunManager(project_env.runs)
    run_id = new_run_id(manager.root, TrainConfig(), name)
    assert manager.run_dir(run_id).parent == manager.root  # a valid id, inside the root
    assert not any(bad in run_id for bad in ("/", "\\", "\x00", ".."))
    assert len(run_id) <= 128


@pytest.mark.parametrize("key", ["upload:deadbeef", "run:../../etc", "../../etc/passwd", ""])
def test_an_unknown_workspace_key_says_the_checkpoint_is_gone(key: str, project_env) -> None:
    with pytest.raises(CheckpointError) as refused:
        find_entry(list_checkpoints(), key)
    assert_sentence(str(refused.value), "is no longer available .*choose another one")


UPLOAD_NAMES = [
    "../../x.pt", "/etc/passwd", "a/../../b.pt", "..\\..\\w.pt", "x\x00y.pt", "x" * 1000 + ".pt",
    "", "..",
]  # fmt: skip


@pytest.mark.parametrize("name", UPLOAD_NAMES, ids=[repr(n)[:24] for n in UPLOAD_NAMES])
def test_an_upload_is_stored_by_hash_inside_the_uploads_folder(name, project_env) -> None:
    entry = store_upload(state_dict_bytes(), name)
    stored = sorted(p.name for p in project_env.uploads.iterdir())
    assert stored == [f"{entry.path.stem}.json", f"{entry.path.stem}.pt"]
    assert len(entry.path.stem) == 16 and int(entry.path.stem, 16) >= 0  # the content hash
    assert entry.path.parent == project_env.uploads
    assert set(project_env.snapshot()) == {"uploads", *(f"uploads/{s}" for s in stored)}
    kept = json.loads((project_env.uploads / stored[0]).read_text())["original_name"]
    assert "/" not in kept and len(kept) <= 120  # the name is a label only


def test_a_teacher_path_outside_the_project_is_a_cli_feature_the_form_cannot_reach(
    project_env, tmp_path, app_opener
) -> None:
    """``build_config`` (the CLI and scripts) takes any existing file as the teacher; it is read
    by ``load_checkpoint`` when the run starts. The Distill page offers only the workspace's
    checkpoints, and a forged widget value falls back to the default."""
    outside = tmp_path / "elsewhere" / "teacher.pt"
    outside.parent.mkdir()
    outside.write_bytes(state_dict_bytes("resnet20"))
    config = build_config(DistillForm(teacher=str(outside), weights={"ce": 1.0, "amd": 1.0}))
    assert config.teacher == str(outside)
    at = app_opener("distill.py", distill_teacher="/etc/passwd")
    teacher = at.selectbox(key="distill_teacher")
    labels = [entry.label for entry in list_checkpoints()]
    assert teacher.options == ["none (train the student alone)", *labels]
    assert teacher.value == "bundled:teacher_resnet20"  # the forged path was not taken


# ---------------------------------------------------------------- numbers: the AMD loss


def _features(scale: float = 1.0, dtype=torch.float32, channels: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(channels)
    return torch.randn(2, channels, 8, 8, generator=generator, dtype=dtype) * scale


def _with(value: float) -> torch.Tensor:
    features = _features()
    features[0, 0, 0, 0] = value
    return features


@pytest.mark.parametrize(
    ("student", "finite"),
    [
        (torch.zeros(2, 4, 8, 8), True),
        (_features(1e-30), True),
        (_features(1e18), True),
        (_with(NAN), False),
        (_with(INF), False),
        (_features(1e20), False),  # squares overflow float32: NaN, reported, not hidden
    ],
    ids=["zeros", "tiny", "large", "nan", "inf", "overflowing_float32"],
)
def test_the_amd_loss_is_finite_or_nan_never_an_exception(student, finite: bool) -> None:
    teacher = _features(channels=6)
    loss = amd_layer_loss(student, teacher)
    assert loss.shape == () and bool(torch.isfinite(loss)) == finite
    if finite:
        assert 0.0 <= float(loss) <= 4.0 / 3.0 + 1e-6  # each normalised MSE is at most 4/3


def test_the_amd_loss_in_float64_is_scale_invariant_far_beyond_float32() -> None:
    student, teacher = _features(dtype=torch.float64), _features(dtype=torch.float64, channels=6)
    reference = amd_layer_loss(student, teacher)
    assert torch.isclose(amd_layer_loss(student * 1e20, teacher), reference, rtol=1e-9)


@pytest.mark.parametrize(
    ("margin", "scale", "phrase"),
    [
        (0.0, 64.0, r"amd: margin must be in \(0\.0, inf\], got 0\.0"),
        (-1.0, 64.0, "amd: margin must be in"),
        (NAN, 64.0, "amd: margin must be finite, got nan"),
        (INF, 64.0, "amd: margin must be finite, got inf"),
        (1.35, 0.0, r"amd: scale must be in \(0\.0, inf\], got 0\.0"),
        (1.35, -64.0, "amd: scale must be in"),
        (1.35, INF, "amd: scale must be finite"),
        (1.35, "64", "amd: scale must be a number"),
    ],
)
def test_margin_and_scale_out_of_range_are_refused_everywhere(margin, scale, phrase) -> None:
    q = torch.rand(2, 4, 4)
    for compute in (
        lambda: angular_terms(q, margin=margin, scale=scale),
        lambda: build_loss("amd", margin=margin, scale=scale),
        lambda: amd_layer_loss(_features(), _features(), margin=margin, scale=scale),
    ):
        with pytest.raises(ValueError) as refused:
            compute()
        assert_sentence(str(refused.value), phrase)


@pytest.mark.parametrize(("margin", "scale"), [(10.0, 64.0), (1.35, 1e6), (1e6, 1e-6), (1.0, 1.0)])
def test_extreme_but_valid_margin_and_scale_give_terms_in_their_ranges(margin, scale) -> None:
    q = torch.cat([torch.zeros(1, 4, 4), torch.rand(1, 4, 4), torch.ones(1, 4, 4)])
    terms = angular_terms(q, margin=margin, scale=scale)
    assert all(bool(torch.isfinite(t).all()) for t in terms.stacked())
    assert bool((terms.pos.abs() <= scale * (1 + 1e-6)).all())
    assert bool(((terms.neg >= 0) & (terms.neg <= scale * (1 + 1e-6))).all())
    assert bool((terms.attentive <= 0).all())
    loss = amd_layer_loss(_features(), _features(channels=6), margin=margin, scale=scale)
    assert bool(torch.isfinite(loss))


def test_angular_terms_of_a_zero_map_are_the_ninety_degree_values() -> None:
    terms = angular_terms(torch.zeros(1, 2, 2), margin=1.35, scale=64.0)
    assert torch.allclose(terms.theta, torch.full((1, 2, 2), math.pi / 2))
    assert torch.allclose(terms.pos, torch.full((1, 2, 2), 64.0 * math.cos(1.35 * math.pi / 2)))
    assert torch.allclose(terms.neg, torch.full((1, 2, 2), 64.0))
    assert bool(torch.isnan(angular_terms(torch.full((1, 2, 2), NAN)).attentive).all())


# ---------------------------------------------------------------- numbers: the analyses


def _feature_set(name: str, q: torch.Tensor) -> FeatureSet:
    count = q.shape[0]
    return FeatureSet(
        name=name,
        arch="resnet8",
        indices=torch.arange(count),
        labels=torch.arange(count) % 2,
        logits=torch.zeros(count, 2),
        pooled=torch.zeros(count, 4),
        attention={"layer3": q},
        class_names=("a", "b"),
    )


def _unit_maps(seed: int) -> torch.Tensor:
    a = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(seed))
    return a / a.flatten(1).norm(dim=1)[:, None, None]


def _with_map_value(value: float) -> torch.Tensor:
    q = _unit_maps(2)
    q[0, 0, 0] = value
    return q


@pytest.mark.parametrize(
    ("student", "margin", "scale", "phrase"),
    [
        (_with_map_value(NAN), 1.35, 64.0, "attention map of s at layer3 contains NaN or inf"),
        (_with_map_value(INF), 1.35, 64.0, "contains NaN or infinite values; re-extract"),
        (_unit_maps(2), 0.0, 64.0, "margin must be in"),
        (_unit_maps(2), NAN, 64.0, "margin must be finite"),
        (_unit_maps(2), 1.35, 0.0, "scale must be in"),
        (_unit_maps(2), 1.35, -1.0, "scale must be in"),
    ],
    ids=["nan_map", "inf_map", "margin_0", "margin_nan", "scale_0", "scale_negative"],
)
def test_angular_report_refuses_bad_maps_and_parameters(student, margin, scale, phrase) -> None:
    teacher = _feature_set("t", _unit_maps(1))
    with pytest.raises(AnalysisError) as refused:
        angular_report(teacher, [_feature_set("s", student)], margin=margin, scale=scale)
    assert_sentence(str(refused.value), phrase)


@pytest.mark.parametrize(
    ("student", "margin", "scale"),
    [(_unit_maps(2), 10.0, 64.0), (_unit_maps(2), 1.35, 1e6), (torch.zeros(6, 4, 4), 1.35, 64.0)],
    ids=["margin_10", "scale_1e6", "zero_maps"],
)
def test_angular_report_rows_stay_finite_at_the_extremes(student, margin, scale) -> None:
    teacher = _feature_set("t", _unit_maps(1))
    rows = angular_report(teacher, [_feature_set("s", student)], margin=margin, scale=scale)
    assert len(rows) == 6  # (all classes + 2 classes) x (teacher, student)
    for row in rows:
        values = (row.mean_theta_pos, row.mean_theta_neg, row.overlap, row.wasserstein_deg)
        assert all(math.isfinite(v) for v in values)
        assert 0.0 <= row.pos_counted_positive <= 1.0


def _matrix() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(30, 6))


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_embed_and_cka_refuse_non_finite_features(value: float) -> None:
    bad = _matrix()
    bad[3, 2] = value
    with pytest.raises(AnalysisError) as refused:
        embed(bad)
    assert_sentence(str(refused.value), "NaN or infinite values in 1 of 30 rows")
    with pytest.raises(AnalysisError) as refused:
        linear_cka(_matrix(), bad)
    assert_sentence(str(refused.value), "NaN or infinite values in 1 of 30 samples")


@pytest.mark.parametrize("factor", [1e38, 1e-30, 0.0], ids=["float32_huge", "tiny", "zeros"])
def test_embed_and_cka_give_the_scale_free_answer_for_extreme_float32(factor: float) -> None:
    x = _matrix()
    scaled = (x * factor).astype(np.float32)
    layout = embed(scaled)
    assert np.isfinite(layout.points).all()
    expected = embed(x).explained_variance_ratio if factor else np.zeros(2)
    np.testing.assert_allclose(layout.explained_variance_ratio, expected, atol=1e-6)
    assert linear_cka(x, scaled) == pytest.approx(1.0 if factor else 0.0, abs=1e-6)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet8", num_classes=10).eval()


@pytest.mark.parametrize("value", [NAN, INF])
@pytest.mark.parametrize("method", ["activation", "gradcam", "saliency"])
def test_attribution_refuses_a_non_finite_image(small_model, method: str, value: float) -> None:
    image = torch.randn(1, 3, 32, 32)
    image[0, 1, 5, 5] = value
    with pytest.raises(AnalysisError) as refused:
        attribution_maps(small_model, image, method=method)
    assert_sentence(str(refused.value), "Images contain NaN or infinite values; pass finite")


@pytest.mark.parametrize("method", ["activation", "gradcam", "saliency"])
def test_attribution_maps_of_a_huge_finite_image_stay_in_the_unit_interval(small_model, method):
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1e30
    maps = attribution_maps(small_model, image, method=method)
    assert maps.shape == (1, 32, 32) and bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0.0 and float(maps.max()) == pytest.approx(1.0)
