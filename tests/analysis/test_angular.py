"""Angular distributions (kd_core.analysis.angular) against known answers and float64 numpy
transcriptions, plus one run on the bundled checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from kd_core.analysis.angular import (
    ALL_CLASSES,
    THETA_BIN_EDGES,
    angular_report,
    overlap,
    positive_positions,
    separation,
    stage_angles,
    theta_histogram,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.losses.amd import angular_maps, attention_map

CLAMPED_ZERO_DEG = math.degrees(math.acos(1.0 - 1e-7))  # the loss's clamp: q = 1 reads 0.026°


def make_set(name, attention, labels, *, masks=None, class_names=(), indices=None):
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = len(labels)
    return FeatureSet(
        name=name,
        arch="test",
        indices=torch.arange(n) if indices is None else indices,
        labels=labels,
        logits=torch.zeros(n, 3),
        pooled=torch.ones(n, 4),
        attention=attention,
        masks=masks,
        class_names=class_names,
    )


def random_maps(n, h, w, seed):
    generator = torch.Generator().manual_seed(seed)
    return attention_map(torch.randn(n, 5, h, w, generator=generator))


def numpy_theta_deg(q):
    return np.degrees(np.arccos(np.clip(np.asarray(q, np.float64), -1 + 1e-7, 1 - 1e-7)))


def numpy_separation(low, high):
    pooled = math.sqrt((len(low) * np.var(low) + len(high) * np.var(high)) / (len(low) + len(high)))
    return (np.mean(high) - np.mean(low)) / pooled


def numpy_overlap(a, b):
    def shares(x):
        bins = np.minimum(np.floor(np.asarray(x) / 0.5).astype(int), 179)
        return np.bincount(bins, minlength=180) / len(x)

    return np.minimum(shares(a), shares(b)).sum()


# --- known answers --------------------------------------------------------------------------


def test_uniform_map_has_one_angle_everywhere():
    n_positions = 16
    q = attention_map(torch.ones(3, 2, 4, 4))
    teacher = make_set("teacher", {"layer": q}, [0, 1, 2])
    [angles] = stage_angles(teacher, [], "layer")
    assert torch.allclose(angles.maps.q, torch.full((3, 4, 4), 1 / math.sqrt(n_positions)).double())
    expected = math.degrees(math.acos(1 / math.sqrt(n_positions)))  # 75.52°
    assert np.allclose(angles.theta_deg.numpy(), expected, atol=1e-5)
    assert angles.theta_deg.dtype == torch.float64


def test_terms_match_a_numpy_transcription():
    q = random_maps(4, 3, 5, seed=0)
    teacher = make_set("teacher", {"layer": q}, [0, 0, 1, 1])
    [angles] = stage_angles(teacher, [], "layer", margin=1.7, scale=10.0)
    theta = np.radians(numpy_theta_deg(q.numpy()))
    pos = 10.0 * np.cos(1.7 * theta)
    neg = 10.0 * (1.0 - q.double().numpy())
    attentive = -np.logaddexp(0.0, neg - pos)
    assert np.allclose(angles.maps.pos.numpy(), pos, atol=1e-9)
    assert np.allclose(angles.maps.neg.numpy(), neg, atol=1e-9)
    assert np.allclose(angles.maps.attentive.numpy(), attentive, atol=1e-9)
    assert np.allclose(angles.theta_deg.numpy(), np.degrees(theta), atol=1e-9)


def test_margin_changes_pos_but_not_theta():
    theta = torch.tensor([[[55.0, 80.0], [85.0, 88.0]]])  # 55° lies between 50.7° and 60°
    q = torch.cos(torch.deg2rad(theta))
    teacher = make_set("teacher", {"layer": q}, [0])
    [no_margin] = stage_angles(teacher, [], "layer", margin=1.0, fraction=0.25)
    [margin] = stage_angles(teacher, [], "layer", margin=1.35, fraction=0.25)
    assert torch.equal(no_margin.theta_deg, margin.theta_deg)
    assert torch.equal(no_margin.maps.neg, margin.maps.neg)
    assert not torch.allclose(no_margin.maps.pos, margin.maps.pos)
    rows = {
        m: angular_report(teacher, [], margin=m, fraction=0.25, per_class=False)[0]
        for m in (1.0, 1.35)
    }
    assert rows[1.0].pos_counted_positive == 1.0  # 55° < 60°: positive without a margin
    assert rows[1.35].pos_counted_positive == 0.0  # 55° > 50.7°: negative with the margin
    assert rows[1.0].mean_theta_pos == rows[1.35].mean_theta_pos == pytest.approx(55.0)


def test_map_concentrated_inside_the_mask():
    """4 x 4 stage, cells of 8 x 8 pixels; the object fills cell (1, 2) and 3/8 of cell
    (1, 3) (below the half-cell threshold); the map puts all attention on cell (1, 2)."""
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 16:27] = True
    q = torch.zeros(2, 4, 4)
    q[:, 1, 2] = 1.0
    teacher = make_set("teacher", {"layer": q}, [0, 1], masks=masks)
    positive = positive_positions(teacher, "layer", split="mask")
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[:, 1, 2] = True
    assert torch.equal(positive, expected)

    [angles] = stage_angles(teacher, [], "layer", split="mask")
    assert np.allclose(angles.theta_pos(), CLAMPED_ZERO_DEG) and CLAMPED_ZERO_DEG < 0.03
    assert np.all(angles.theta_neg() == 90.0)
    row = angular_report(teacher, [], split="mask", per_class=False)[0]
    assert (row.positives, row.negatives) == (2, 30)
    assert row.separation == math.inf  # both sides constant: perfectly separated
    assert row.overlap == 0.0
    assert row.pos_counted_positive == 1.0


def test_mask_cell_with_half_its_area_is_positive():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 0:8, 0:4] = True  # half of cell (0, 0)
    masks[0, 8:16, 0:3] = True  # 3/8 of cell (1, 0)
    teacher = make_set("teacher", {"layer": random_maps(1, 4, 4, seed=1)}, [0], masks=masks)
    positive = positive_positions(teacher, "layer", split="mask")
    assert positive[0, 0, 0] and not positive[0, 1, 0] and int(positive.sum()) == 1


def test_topk_breaks_ties_by_position_order():
    teacher = make_set("teacher", {"layer": attention_map(torch.ones(1, 1, 2, 5))}, [0])
    positive = positive_positions(teacher, "layer", fraction=0.2)  # 2 of 10 positions
    assert positive.flatten().tolist() == [True, True] + [False] * 8


def test_topk_and_quantile_select_the_largest_teacher_values():
    q = random_maps(6, 5, 5, seed=2)
    teacher = make_set("teacher", {"layer": q}, [0] * 6)
    topk = positive_positions(teacher, "layer", split="teacher_topk", fraction=0.2)
    quantile = positive_positions(teacher, "layer", split="teacher_quantile", fraction=0.2)
    flat = q.flatten(1).double().numpy()
    for i in range(6):
        largest = set(np.argsort(-flat[i], kind="stable")[:5].tolist())
        assert set(torch.nonzero(topk[i].flatten()).flatten().tolist()) == largest
        threshold = np.quantile(flat[i], 0.8)
        assert np.array_equal(quantile[i].flatten().numpy(), flat[i] > threshold)


def test_statistics_match_numpy():
    generator = np.random.default_rng(0)
    low, high = generator.uniform(10, 60, 500), generator.uniform(40, 89, 300)
    assert separation(low, high) == pytest.approx(numpy_separation(low, high), rel=1e-12)
    assert separation(high, low) == pytest.approx(-numpy_separation(low, high), rel=1e-12)
    assert overlap(low, high) == pytest.approx(numpy_overlap(low, high), abs=1e-12)
    assert overlap(low, low) == pytest.approx(1.0)
    assert separation(np.array([3.0, 3.0]), np.array([3.0])) == 0.0
    shares = theta_histogram(high)
    assert shares.shape == (180,) and shares.sum() == pytest.approx(1.0)
    assert len(THETA_BIN_EDGES) == 181 and THETA_BIN_EDGES[-1] == 90.0
    assert theta_histogram(np.array([90.0]))[-1] == 1.0  # 90° falls in the last bin


def test_report_matches_a_numpy_transcription():
    q_t, q_s = random_maps(8, 4, 4, seed=3), random_maps(8, 4, 4, seed=4)
    labels = [0, 1] * 4
    teacher = make_set("teacher", {"t3": q_t}, labels)
    student = make_set("student", {"s3": q_s}, labels)
    rows = angular_report(teacher, [student], margin=1.35, scale=64, per_class=False)
    assert [(r.model, r.stage, r.teacher_stage) for r in rows] == [
        ("teacher", "t3", "t3"),
        ("student", "s3", "t3"),
    ]
    row = rows[1]
    flat_t, flat_s = q_t.flatten(1).double().numpy(), q_s.flatten(1).double().numpy()
    positive = np.zeros_like(flat_t, dtype=bool)
    for i, order in enumerate(np.argsort(-flat_t, axis=1, kind="stable")):
        positive[i, order[:3]] = True  # round(0.2 * 16) = 3
    theta_t, theta_s = numpy_theta_deg(flat_t), numpy_theta_deg(flat_s)
    pos, neg = theta_s[positive], theta_s[~positive]
    assert (row.samples, row.positives, row.negatives) == (8, 24, 104)
    assert row.mean_theta_pos == pytest.approx(pos.mean(), abs=1e-9)
    assert row.mean_theta_neg == pytest.approx(neg.mean(), abs=1e-9)
    assert row.separation == pytest.approx(numpy_separation(pos, neg), rel=1e-9)
    assert row.overlap == pytest.approx(numpy_overlap(pos, neg), abs=1e-12)
    theta_rad = np.radians(pos)
    counted = 64 * np.cos(1.35 * theta_rad) > 64 * (1 - flat_s[positive])
    assert row.pos_counted_positive == pytest.approx(counted.mean())
    assert row.wasserstein_deg == pytest.approx(
        wasserstein_distance(theta_s.ravel(), theta_t.ravel()), abs=1e-9
    )
    assert row.wasserstein_pos_deg == pytest.approx(
        wasserstein_distance(pos, theta_t[positive]), abs=1e-9
    )
    cosines = (
        (flat_t * flat_s).sum(1) / np.linalg.norm(flat_t, axis=1) / np.linalg.norm(flat_s, axis=1)
    )
    assert row.mean_cosine == pytest.approx(cosines.mean(), abs=1e-6)


def test_identical_student_has_zero_distance_and_unit_cosine():
    q = random_maps(5, 4, 4, seed=5)
    teacher = make_set("teacher", {"layer": q}, [0] * 5)
    student = make_set("copy", {"layer": q.clone()}, [0] * 5)
    for row in angular_report(teacher, [student], per_class=False):
        assert row.wasserstein_deg == row.wasserstein_pos_deg == row.wasserstein_neg_deg == 0.0
        assert row.mean_cosine == pytest.approx(1.0, abs=1e-6)


def test_shifted_angles_give_the_shift_as_wasserstein_distance():
    """The terms are elementwise, so maps need no unit norm here: every student angle is the
    teacher's plus 5°."""
    theta_t = torch.linspace(20.0, 60.0, 2 * 25).reshape(2, 5, 5)
    teacher = make_set("teacher", {"layer": torch.cos(torch.deg2rad(theta_t))}, [0, 1])
    student = make_set("shifted", {"layer": torch.cos(torch.deg2rad(theta_t + 5.0))}, [0, 1])
    row = angular_report(teacher, [student], per_class=False)[1]
    assert row.wasserstein_deg == pytest.approx(5.0, abs=1e-4)
    assert row.wasserstein_pos_deg == pytest.approx(5.0, abs=1e-4)
    assert row.wasserstein_neg_deg == pytest.approx(5.0, abs=1e-4)


def test_orthogonal_maps_have_zero_cosine():
    q_t, q_s = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    q_t[0, 0, 0], q_s[0, 1, 1] = 1.0, 1.0
    teacher, student = make_set("t", {"l": q_t}, [0]), make_set("s", {"l": q_s}, [0])
    row = angular_report(teacher, [student], fraction=0.25, per_class=False)[1]
    assert row.mean_cosine == 0.0


def test_per_class_rows():
    q = random_maps(5, 4, 4, seed=6)
    teacher = make_set("teacher", {"layer": q}, [2, 0, 2, 0, 2], class_names=("a", "b", "c"))
    rows = angular_report(teacher, [], per_class=True)
    assert [(r.class_name, r.samples) for r in rows] == [(ALL_CLASSES, 5), ("a", 2), ("c", 3)]
    theta = numpy_theta_deg(q.numpy())
    positive = positive_positions(teacher, "layer").numpy()
    class_c = np.array([True, False, True, False, True])
    assert rows[2].mean_theta_pos == pytest.approx(theta[class_c][positive[class_c]].mean())
    unnamed = make_set("teacher", {"layer": q}, [2, 0, 2, 0, 2])
    assert [r.class_name for r in angular_report(unnamed, [])] == [ALL_CLASSES, "0", "2"]


def test_student_of_another_size_is_resized_and_renormalised():
    q_t, q_s = random_maps(3, 4, 4, seed=7), random_maps(3, 2, 2, seed=8)
    teacher = make_set("teacher", {"layer": q_t}, [0, 1, 2])
    student = make_set("small", {"block": q_s}, [0, 1, 2])
    _, resized = stage_angles(teacher, [student], "layer")
    expected = F.interpolate(q_s.double()[:, None], size=(4, 4), mode="bilinear")[:, 0]
    expected = expected / expected.flatten(1).norm(dim=1)[:, None, None]
    assert resized.maps.q.shape == (3, 4, 4)
    assert torch.allclose(resized.maps.q, expected, atol=1e-6)
    assert torch.allclose(resized.maps.q.flatten(1).norm(dim=1), torch.ones(3).double())


def test_stages_are_paired_by_depth():
    maps = {name: random_maps(4, 4, 4, seed=i) for i, name in enumerate(["l1", "l2", "l3"])}
    teacher = make_set("teacher", maps, [0, 1, 0, 1])
    student = make_set("student", {"b1": maps["l2"], "b2": maps["l3"]}, [0, 1, 0, 1])
    rows = angular_report(teacher, [student], per_class=False)
    assert [(r.model, r.stage, r.teacher_stage) for r in rows] == [
        ("teacher", "l2", "l2"),
        ("student", "b1", "l2"),
        ("teacher", "l3", "l3"),
        ("student", "b2", "l3"),
    ]
    assert [r.model for r in stage_angles(teacher, [student], "l1")] == ["teacher"]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, math.nan, True, "0.2"])
def test_fraction_outside_the_open_unit_interval(fraction):
    teacher = make_set("teacher", {"layer": random_maps(2, 4, 4, seed=0)}, [0, 1])
    with pytest.raises(AnalysisError, match="fraction"):
        angular_report(teacher, [], fraction=fraction)


def test_errors_are_worded():
    q = random_maps(2, 4, 4, seed=0)
    teacher = make_set("teacher", {"layer": q}, [0, 1])
    cases = [
        (lambda: angular_report(make_set("t", {"layer": q[:0]}, []), []), "No samples"),
        (lambda: angular_report(teacher, [], split="mask"), "needs object masks"),
        (lambda: angular_report(teacher, [], split="random"), "Unknown split"),
        (lambda: stage_angles(teacher, [], "layer9"), "no stage 'layer9'"),
        (lambda: angular_report(teacher, [], margin=0.0), "margin"),
        (lambda: angular_report(teacher, [], scale=-1.0), "scale"),
        (lambda: angular_report(teacher, [], fraction=0.01), "leaves one side empty"),
    ]
    for call, message in cases:
        with pytest.raises(AnalysisError, match=message):
            call()


def test_nan_features_are_refused():
    q = random_maps(2, 4, 4, seed=0)
    broken = q.clone()
    broken[1, 2, 2] = math.nan
    teacher = make_set("teacher", {"layer": q}, [0, 1])
    with pytest.raises(AnalysisError, match="NaN"):
        angular_report(make_set("teacher", {"layer": broken}, [0, 1]), [])
    with pytest.raises(AnalysisError, match="NaN"):
        angular_report(teacher, [make_set("student", {"layer": broken}, [0, 1])])


def test_empty_side_is_refused():
    flat = make_set("teacher", {"layer": attention_map(torch.ones(2, 1, 4, 4))}, [0, 1])
    with pytest.raises(AnalysisError, match="no positive position"):
        angular_report(flat, [], split="teacher_quantile")  # nothing above a flat quantile
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, :16, :16] = True  # sample 1 (class 1) has no object
    masked = make_set("teacher", {"layer": random_maps(2, 4, 4, 0)}, [0, 1], masks=masks)
    assert len(angular_report(masked, [], split="mask", per_class=False)) == 1
    with pytest.raises(AnalysisError, match="class '1' have no positive"):
        angular_report(masked, [], split="mask", per_class=True)


def test_different_samples_are_refused():
    q = random_maps(2, 4, 4, seed=0)
    teacher = make_set("teacher", {"layer": q}, [0, 1])
    other = make_set("student", {"layer": q}, [0, 1], indices=torch.tensor([5, 6]))
    with pytest.raises(AnalysisError, match="different samples"):
        angular_report(teacher, [other])


# --- the bundled checkpoints ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    from kd_core.checkpoints import load_checkpoint
    from kd_core.data import create_dataset
    from kd_core.models import extract_features

    data = create_dataset("shapes", split="test", augment=False, limit=64)
    images = torch.stack([data[i][0] for i in range(len(data))])

    def features(name):
        loaded = load_checkpoint(f"assets/checkpoints/{name}.pt")
        with torch.no_grad():
            outputs = extract_features(loaded.model, images)
        return FeatureSet(
            name=name,
            arch=loaded.arch,
            indices=torch.arange(len(data)),
            labels=data.labels.clone(),
            logits=outputs.logits,
            pooled=outputs.pooled,
            attention={stage: attention_map(f) for stage, f in outputs.stages.items()},
            masks=data.masks,
            class_names=tuple(data.class_names),
        ), outputs.stages

    return [
        features(n) for n in ("teacher_resnet20", "student_resnet8_vanilla", "student_resnet8_amd")
    ]


def test_bundled_checkpoints(bundled):
    (teacher, teacher_stages), (vanilla, _), (amd, _) = bundled
    rows = angular_report(teacher, [vanilla, amd], split="mask")
    classes = len(torch.unique(teacher.labels))
    assert len(rows) == 3 * 3 * (1 + classes)
    for row in rows:
        values = [v for v in vars(row).values() if isinstance(v, float)]
        assert all(math.isfinite(v) for v in values), row
        assert 0.0 <= row.overlap <= 1.0 and 0.0 <= row.pos_counted_positive <= 1.0
    overall = {(r.model, r.teacher_stage): r for r in rows if r.class_name == ALL_CLASSES}
    teacher_row = overall[("teacher_resnet20", "layer3")]
    assert (teacher_row.wasserstein_deg, teacher_row.mean_cosine) == (0.0, pytest.approx(1.0))
    # The trained teacher attends to the object: smaller angles inside it than outside.
    assert teacher_row.mean_theta_pos < teacher_row.mean_theta_neg - 5.0
    # The AMD student's deepest maps are closer to the teacher's than the vanilla student's.
    assert (
        overall[("student_resnet8_amd", "layer3")].mean_cosine
        > overall[("student_resnet8_vanilla", "layer3")].mean_cosine
    )
    # The angles are the loss's own: angular_maps on the raw features gives the same theta.
    [angles] = stage_angles(teacher, [], "layer3", split="mask")
    loss_theta = torch.rad2deg(angular_maps(teacher_stages["layer3"]).theta).double()
    assert torch.allclose(angles.theta_deg, loss_theta, atol=1e-4)
