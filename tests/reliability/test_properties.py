"""Property-based tests (hypothesis) of the losses and of the statistics built on them.

Each test states one promise of a docstring and lets hypothesis search for a counterexample
among small tensors (batch <= 3, channels <= 4, maps up to 6 x 6) whose values range from exact
zeros, constants and one-hot maps to ``1e-6``-sized and ``1e6``-sized values. The fixed-input
unit tests in ``tests/losses`` and ``tests/analysis`` check known answers; these check that the
promises hold for *any* input in that range.

Every test runs 200 examples with a derandomised search (the same examples on every run, no
example database written to disk), so a failure here reproduces exactly in CI.

Tolerances: properties that hold exactly in real arithmetic are checked exactly where the
code computes them exactly (e.g. swapping the arguments of a symmetric measure), and otherwise
with a tolerance derived from the computation (stated next to each check).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import wasserstein_distance

from kd_core.analysis.agreement import (
    compare_maps,
    compare_with_mask,
    cosine_similarity,
    rank_correlation,
    region_iou,
    top_region,
)
from kd_core.analysis.angular import (
    ALL_CLASSES,
    THETA_BIN_EDGES,
    angular_report,
    overlap,
    separation,
    stage_angles,
    theta_histogram,
)
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.similarity import linear_cka
from kd_core.losses import build_loss, list_losses
from kd_core.losses.amd import NORM_EPS, amd_layer_loss, angular_terms, attention_map

EXAMPLES = 200
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

MAX_BATCH, MAX_CHANNELS, MAX_SIDE = 3, 4, 6
BOUND = 1e3
"""Bound of the raw hypothesis floats; the "scaled" kind reaches 1e-6 .. 1e6."""

# --------------------------------------------------------------------------- strategies

sides = st.integers(1, MAX_SIDE)


KINDS = ("values", "zeros", "constant", "one-hot", "scaled")
VARYING = ("values", "one-hot", "scaled")


@st.composite
def arrays(
    draw, shape: tuple[int, ...], dtype=np.float32, *, nonnegative=False, kinds=KINDS
) -> np.ndarray:
    """An array of ``shape`` of one of five kinds: "values", up to six floats of
    ``[-1e3, 1e3]`` spread over the array (hypothesis favours 0, the bounds, tiny and
    subnormal values); all zeros; one constant; one non-zero entry; or Gaussian noise scaled
    by ``10^k``, ``k`` in ``-6..6``. (Drawing every entry with hypothesis would cost ~50 ms
    per 6 x 6 x 4 x 3 array.)"""
    kind = draw(st.sampled_from(kinds))
    value = st.floats(-BOUND, BOUND, width=32 if dtype == np.float32 else 64)
    if kind == "values":
        palette = np.array(draw(st.lists(value, min_size=1, max_size=6)), dtype)
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        array = palette[rng.integers(len(palette), size=shape)]
    elif kind == "zeros":
        array = np.zeros(shape, dtype)
    elif kind == "constant":
        array = np.full(shape, draw(value), dtype)
    elif kind == "one-hot":
        array = np.zeros(shape, dtype)
        array.flat[draw(st.integers(0, array.size - 1))] = draw(value)
    else:
        seed, exponent = draw(st.integers(0, 2**32 - 1)), draw(st.integers(-6, 6))
        array = (np.random.default_rng(seed).standard_normal(shape) * 10.0**exponent).astype(dtype)
    return np.abs(array) if nonnegative else array


def tensors(shape: tuple[int, ...], dtype=torch.float32, **kwargs) -> st.SearchStrategy:
    numpy_dtype = np.float32 if dtype == torch.float32 else np.float64
    return arrays(shape, numpy_dtype, **kwargs).map(torch.from_numpy)


@st.composite
def feature_pair(draw, dtype=torch.float32, same_channels=False, same_size=True):
    """Student and teacher ``B x C x H x W`` maps; channels may differ, and so may the
    spatial sizes unless ``same_size``."""
    batch, height, width = draw(st.integers(1, MAX_BATCH)), draw(sides), draw(sides)
    c_s = draw(st.integers(1, MAX_CHANNELS))
    c_t = c_s if same_channels else draw(st.integers(1, MAX_CHANNELS))
    t_size = (height, width) if same_size else (draw(sides), draw(sides))
    student = draw(tensors((batch, c_s, height, width), dtype))
    teacher = draw(tensors((batch, c_t, *t_size), dtype))
    return student, teacher


# --------------------------------------------------------------------------- every loss

STAGE_LOSSES = ("amd", "at", "fitnet", "sp")
POOLED_LOSSES = ("kd", "pkt", "rkd")


def _fitnet(c_s: int, c_t: int, seed: int, identity: bool):
    """FitNet with a seeded random regressor, or the identity (then ``c_s == c_t``)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loss = build_loss("fitnet", student_channels=[c_s], teacher_channels=[c_t])
    if identity:
        with torch.no_grad():
            loss.regressors[0].weight.copy_(torch.eye(c_s)[:, :, None, None])
            loss.regressors[0].bias.zero_()
    return loss


@st.composite
def loss_case(draw, name: str, identical: bool):
    """``(loss, student, teacher)`` for loss ``name`` with drawn hyperparameters and inputs
    (``teacher`` is the label vector for ``ce``); ``identical``: the teacher is a copy of the
    student (and FitNet's regressor is the identity)."""
    if name in STAGE_LOSSES:
        student, teacher = draw(
            feature_pair(same_channels=identical, same_size=identical or name != "sp")
        )
        if name == "amd":
            loss = build_loss(
                "amd",
                margin=draw(st.floats(0.05, 4.0)),
                scale=draw(st.floats(0.1, 256.0)),
                local=draw(st.booleans()),
                local_weight=draw(st.floats(0.0, 1.0)),
            )
        elif name == "at":
            loss = build_loss("at", p=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])))
        elif name == "fitnet":
            seed = draw(st.integers(0, 2**31 - 1))
            loss = _fitnet(student.shape[1], teacher.shape[1], seed, identity=identical)
        else:
            loss = build_loss("sp")
    elif name in POOLED_LOSSES:
        batch = draw(st.integers(1, MAX_BATCH))
        d_s = draw(st.integers(1, 6))
        d_t = d_s if name == "kd" or identical else draw(st.integers(1, 6))
        student = draw(tensors((batch, d_s)))
        teacher = draw(tensors((batch, d_t)))
        params = {"temperature": draw(st.floats(0.1, 20.0))} if name == "kd" else {}
        loss = build_loss(name, **params)
    else:  # ce: logits and labels
        batch, classes = draw(st.integers(1, MAX_BATCH)), draw(st.integers(1, 6))
        student = draw(tensors((batch, classes)))
        labels = st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch)
        teacher = torch.tensor(draw(labels))
        loss = build_loss("ce", label_smoothing=draw(st.floats(0.0, 1.0)))
    if identical:
        teacher = student.clone()
    return loss, student, teacher


def _evaluate(name: str, loss, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return loss([student], [teacher]) if name in STAGE_LOSSES else loss(student, teacher)


def test_every_registered_loss_has_a_property_case():
    # A newly registered loss must get inputs here, or its properties go unchecked.
    assert set(list_losses()) == {*STAGE_LOSSES, *POOLED_LOSSES, "ce"}


@pytest.mark.parametrize("name", list_losses())
@PROPERTY
@given(data=st.data())
def test_loss_and_student_gradient_are_finite_and_teacher_gets_none(name, data):
    loss, student, teacher = data.draw(loss_case(name, identical=False))
    student.requires_grad_(True)
    if teacher.is_floating_point():
        teacher.requires_grad_(True)
    value = _evaluate(name, loss, student, teacher)
    assert value.dim() == 0 and torch.isfinite(value), f"{name} gave {value}"
    # Every loss is a divergence or a squared distance: >= 0 up to float32 rounding.
    assert value.item() >= -1e-5, f"{name} gave a negative loss {value.item()}"
    value.backward()
    assert torch.isfinite(student.grad).all(), f"{name}: non-finite student gradient"
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters() if p.grad is not None)
    if teacher.is_floating_point():
        assert teacher.grad is None, f"{name} let a gradient reach the teacher"


@pytest.mark.parametrize("name", [n for n in list_losses() if n != "ce"])
@PROPERTY
@given(data=st.data())
def test_identical_student_and_teacher_give_zero_loss(name, data):
    loss, student, teacher = data.draw(loss_case(name, identical=True))
    # Both sides go through the same float32 computation, so the two sides agree bit for bit
    # (and FitNet's identity 1x1 convolution reproduces its input exactly).
    assert _evaluate(name, loss, student, teacher).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- AMD


def _energy_norm(f: torch.Tensor) -> torch.Tensor:
    """``||a||`` per sample, ``a = sum_c f_c^2``, in float64 (the reference)."""
    return f.double().pow(2).sum(dim=1).flatten(1).norm(dim=1)


def _regions_bound(height: int, width: int, local: bool, local_weight: float) -> float:
    """Upper bound of the AMD layer loss: each region adds ``w * mean((x_hat - t_hat)^2)``
    over ``3 B n`` entries, and two vectors of norm <= 1 are at most 2 apart, so a region
    adds at most ``4 w / n``."""
    bound = (1.0 - local_weight if local else 1.0) * 4.0 / (height * width)
    if local:
        rows = [r for r in (height // 2, height - height // 2) if r]
        cols = [c for c in (width // 2, width - width // 2) if c]
        quadrants = [r * c for r in rows for c in cols]
        bound += sum(local_weight / len(quadrants) * 4.0 / n for n in quadrants)
    return bound


@PROPERTY
@given(
    pair=feature_pair(),
    local=st.booleans(),
    local_weight=st.floats(0.0, 1.0),
    margin=st.floats(0.05, 4.0),
    scale=st.floats(0.1, 256.0),
)
def test_amd_loss_lies_in_its_range(pair, local, local_weight, margin, scale):
    student, teacher = pair
    value = amd_layer_loss(
        student, teacher, margin=margin, scale=scale, local=local, local_weight=local_weight
    ).item()
    bound = _regions_bound(*student.shape[2:], local, local_weight)
    assert 0.0 <= value <= bound * (1 + 1e-5)


@PROPERTY
@given(
    pair=feature_pair(dtype=torch.float64),
    factor_s=st.floats(1e-2, 1e2),
    factor_t=st.floats(1e-2, 1e2),
    local=st.booleans(),
)
def test_amd_is_invariant_to_positive_rescaling(pair, factor_s, factor_t, local):
    """q = a / (||a|| + 1e-6) is scale-free once ||a|| >> 1e-6: the examples keep
    ||a|| * min(k^2, 1) >= 100 (or ||a|| = 0), so the epsilon moves q by < 1e-8.

    Left out: maps with all their attention on one position (q > 1 - 1e-4 there, e.g. every
    1 x 1 map). There neg = s (1 - q) = s 1e-6 / ||a|| is the epsilon itself, and once that
    is below the 1e-12 floor of the L2 normalisation the loss shows the scale (1 x 1 maps:
    5/3 vs 1.66690 for f_t = 81 vs 8100)."""
    student, teacher = pair
    for f, k in ((student, factor_s), (teacher, factor_t)):
        norms = _energy_norm(f)
        assume(bool(((norms == 0) | (norms * min(k * k, 1.0) >= 100.0)).all()))
        assume(bool((attention_map(f) <= 1 - 1e-4).all()))
    before = amd_layer_loss(student, teacher, local=local).item()
    after = amd_layer_loss(student * factor_s, teacher * factor_t, local=local).item()
    assert after == pytest.approx(before, rel=1e-5, abs=1e-9)


@PROPERTY
@given(pair=feature_pair(dtype=torch.float64), local=st.booleans(), data=st.data())
def test_amd_is_invariant_to_channel_permutations(pair, local, data):
    """a = sum_c f_c^2 does not depend on the order of the channels (float64: only the
    summation order changes)."""
    student, teacher = pair
    perm_s = data.draw(st.permutations(range(student.shape[1])))
    perm_t = data.draw(st.permutations(range(teacher.shape[1])))
    before = amd_layer_loss(student, teacher, local=local).item()
    after = amd_layer_loss(student[:, perm_s], teacher[:, perm_t], local=local).item()
    assert after == pytest.approx(before, rel=1e-9, abs=1e-15)


@PROPERTY
@given(pair=feature_pair(dtype=torch.float64), local=st.booleans())
def test_amd_is_symmetric_under_transposing_both_maps(pair, local):
    """Transposing H and W maps the whole map and each quadrant (cut at H // 2, W // 2) onto
    the transposed ones, and every region's term is a mean over its positions."""
    student, teacher = pair
    before = amd_layer_loss(student, teacher, local=local).item()
    after = amd_layer_loss(student.transpose(2, 3), teacher.transpose(2, 3), local=local).item()
    assert after == pytest.approx(before, rel=1e-9, abs=1e-15)


@PROPERTY
@given(
    q=st.tuples(st.integers(1, MAX_BATCH), sides, sides).flatmap(
        lambda shape: hnp.arrays(np.float32, shape, elements=st.floats(0.0, 1.0, width=32))
    ),
    margin=st.floats(1e-3, 10.0),
    scale=st.floats(1e-3, 1e4),
)
def test_angular_terms_lie_in_their_documented_ranges(q, margin, scale):
    terms = angular_terms(torch.from_numpy(q), margin=margin, scale=scale)
    for name in ("theta", "pos", "neg", "attentive"):
        assert torch.isfinite(getattr(terms, name)).all(), name
    half_pi = torch.tensor(math.pi / 2, dtype=torch.float32)  # pi / 2 rounded to float32
    assert (terms.theta >= 0).all() and (terms.theta <= half_pi).all()
    assert (terms.attentive <= 0).all()
    assert (terms.pos <= scale).all() and (terms.pos >= -scale).all()
    assert (terms.neg >= 0).all() and (terms.neg <= scale).all()
    # theta and neg fall as q grows; pos grows with q while m * theta <= pi (m <= 2).
    order = np.argsort(q.ravel(), kind="stable")
    assert (np.diff(terms.theta.numpy().ravel()[order]) <= 0).all()
    assert (np.diff(terms.neg.numpy().ravel()[order]) <= 0).all()
    if margin <= 2.0:
        assert (np.diff(terms.pos.numpy().ravel()[order]) >= -scale * 1e-6).all()


@PROPERTY
@given(
    q=st.tuples(st.integers(1, MAX_BATCH), sides, sides).flatmap(
        lambda shape: hnp.arrays(np.float32, shape, elements=st.floats(0.0, 1.0, width=32))
    ),
    scale=st.floats(1e-3, 1e4),
)
def test_margin_one_makes_pos_the_scaled_attention(q, scale):
    """cos(arccos q) = q; the clamp of q to 1 - 1e-7 and float32 arccos/cos move it by
    less than 1e-6 * s."""
    q = torch.from_numpy(q)
    terms = angular_terms(q, margin=1.0, scale=scale)
    assert torch.allclose(terms.pos, scale * q, rtol=0.0, atol=scale * 1e-6)


@PROPERTY
@given(
    f=st.tuples(st.integers(1, MAX_BATCH), st.integers(1, MAX_CHANNELS), sides, sides).flatmap(
        tensors
    )
)
def test_attention_map_is_nonnegative_with_norm_one_up_to_its_epsilon(f):
    """The docstring's "unit L2 norm (zero for an all-zero map)" holds up to the reference
    epsilon: ||q|| = ||a|| / (||a|| + 1e-6), which is 1 to within 1e-6 / ||a||."""
    q = attention_map(f)
    assert q.shape == (f.shape[0], *f.shape[2:])
    assert (q >= 0).all() and (q <= 1).all()
    norms = q.double().flatten(1).norm(dim=1)
    energy = _energy_norm(f)
    expected = energy / (energy + NORM_EPS)
    assert torch.allclose(norms, expected, rtol=1e-5, atol=1e-7)  # f^2 may underflow in fp32
    assert ((norms - 1).abs() <= NORM_EPS / energy + 1e-5).all()
    assert bool((norms[energy == 0] == 0).all())


# --------------------------------------------------------------------------- angular statistics

# float32 values (what the maps hold) as float64: differences of at least 1e-45, so variances
# never underflow to 0 (float64 values 1e-261 apart would make a "constant" with variance 0).
samples = (
    st.integers(1, 12)
    .flatmap(lambda n: hnp.arrays(np.float32, n, elements=st.floats(-BOUND, BOUND, width=32)))
    .map(lambda x: x.astype(np.float64))
)
angles = st.integers(1, 40).flatmap(
    lambda n: hnp.arrays(np.float64, n, elements=st.floats(0.0, 90.0))
)


def _constant(x: np.ndarray) -> bool:
    return bool(x.min() == x.max())


@PROPERTY
@given(low=samples, high=samples)
def test_separation_is_antisymmetric_and_inf_only_for_two_different_constants(low, high):
    value = separation(low, high)
    assert not math.isnan(value)
    # Swapping the sides negates the mean difference and keeps the pooled std: exact.
    assert separation(high, low) == -value
    if _constant(low) and _constant(high):
        assert value == (0.0 if low[0] == high[0] else math.copysign(math.inf, high[0] - low[0]))
    else:
        assert math.isfinite(value)


@PROPERTY
@given(value=st.floats(-BOUND, BOUND), n_low=st.integers(1, 12), n_high=st.integers(1, 12))
def test_separation_of_equal_constants_is_zero(value, n_low, n_high):
    """Documented: 0 when both samples are constant and equal, whatever their sizes (the
    mean of n copies of 0.1 is not always 0.1 in floating point)."""
    assert separation(np.full(n_low, value), np.full(n_high, value)) == 0.0


@PROPERTY
@given(low=samples, high=samples)
def test_separation_matches_a_float64_reference(low, high):
    """Against math.fsum means and variances, where the pooled std is not lost in rounding."""
    n_l, n_h = len(low), len(high)
    mean_l, mean_h = math.fsum(low) / n_l, math.fsum(high) / n_h
    var_l = math.fsum((x - mean_l) ** 2 for x in low) / n_l
    var_h = math.fsum((x - mean_h) ** 2 for x in high) / n_h
    pooled = math.sqrt((n_l * var_l + n_h * var_h) / (n_l + n_h))
    scale = max(np.abs(low).max(), np.abs(high).max())
    assume(pooled > 1e-6 * scale)
    assert separation(low, high) == pytest.approx((mean_h - mean_l) / pooled, rel=1e-7, abs=1e-9)


@PROPERTY
@given(theta=angles)
def test_theta_histogram_is_a_distribution_over_half_degree_bins(theta):
    shares = theta_histogram(theta)
    assert shares.shape == (len(THETA_BIN_EDGES) - 1,)
    assert (shares >= 0).all() and shares.sum() == pytest.approx(1.0, abs=1e-12)
    # Each angle lands in bin floor(theta / 0.5), 90 degrees in the last one.
    bins = np.minimum(np.floor(theta / 0.5).astype(int), 179)
    assert np.array_equal(np.rint(shares * len(theta)), np.bincount(bins, minlength=180))


@PROPERTY
@given(first=angles, second=angles, data=st.data())
def test_overlap_is_symmetric_in_the_unit_interval_and_one_for_the_same_angles(first, second, data):
    value = overlap(first, second)
    assert 0.0 <= value <= 1.0
    assert overlap(second, first) == value
    shuffled = data.draw(st.permutations(first))
    assert overlap(first, np.asarray(shuffled)) == pytest.approx(1.0, abs=1e-12)


def _feature_set(name: str, q: torch.Tensor, labels: torch.Tensor, masks=None) -> FeatureSet:
    n = len(labels)
    return FeatureSet(
        name=name,
        arch="test",
        indices=torch.arange(n),
        labels=labels,
        logits=torch.zeros(n, 3),
        pooled=torch.zeros(n, 2),
        attention={"layer": q},
        masks=masks,
        class_names=("a", "b", "c"),
    )


@st.composite
def report_inputs(draw, same_size: bool = False):
    """Teacher and student sets with attention maps of drawn features (student maybe of
    another size), labels, and a split that leaves both sides non-empty for every sample:
    the top-k split with 0 < k < H W, or object masks with both inside and outside cells."""
    n, height, width = draw(st.integers(1, MAX_BATCH)), draw(sides), draw(sides)
    width += height * width == 1  # two positions at least, one per side
    labels = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    f_t = draw(tensors((n, draw(st.integers(1, MAX_CHANNELS)), height, width)))
    s_size = (height, width)
    if not same_size and draw(st.booleans()):
        s_size = (draw(sides), draw(sides))
    f_s = draw(tensors((n, draw(st.integers(1, MAX_CHANNELS)), *s_size)))
    masks = None
    if draw(st.booleans()):
        k = draw(st.integers(1, height * width - 1))
        split = {"split": "teacher_topk", "fraction": k / (height * width)}
    else:
        # Cells are whole blocks of a (H * 4) x (W * 4) mask: object = a drawn set of cells,
        # with cell `inside` always in and cell `outside` always out.
        cells = draw(hnp.arrays(np.bool_, (n, height, width))).reshape(n, -1)
        inside = draw(st.integers(0, height * width - 1))
        outside = (inside + draw(st.integers(1, height * width - 1))) % (height * width)
        cells[:, inside], cells[:, outside] = True, False
        cells = cells.reshape(n, height, width)
        masks = torch.from_numpy(cells).repeat_interleave(4, 1).repeat_interleave(4, 2)
        split = {"split": "mask"}
    teacher = _feature_set("teacher", attention_map(f_t), labels, masks)
    student = _feature_set("student", attention_map(f_s), labels, masks)
    return teacher, student, split


FINITE_FIELDS = (
    "mean_theta_pos", "mean_theta_neg", "overlap", "pos_counted_positive",
    "wasserstein_deg", "wasserstein_pos_deg", "wasserstein_neg_deg", "mean_cosine",
)  # fmt: skip


@PROPERTY
@given(inputs=report_inputs(), margin=st.floats(0.05, 4.0), scale=st.floats(0.1, 256.0))
def test_angular_report_rows_are_finite_and_in_range(inputs, margin, scale):
    teacher, student, split = inputs
    rows = angular_report(teacher, [student], margin=margin, scale=scale, **split)
    classes = len(torch.unique(teacher.labels))
    assert len(rows) == 2 * (1 + classes)
    angles = {a.model: a for a in stage_angles(teacher, [student], "layer", **split)}
    for row in rows:
        for field in FINITE_FIELDS:
            assert math.isfinite(getattr(row, field)), (row.model, row.class_name, field)
        assert 0.0 <= row.mean_theta_pos <= 90.0 and 0.0 <= row.mean_theta_neg <= 90.0
        assert 0.0 <= row.overlap <= 1.0 and 0.0 <= row.pos_counted_positive <= 1.0
        for field in ("wasserstein_deg", "wasserstein_pos_deg", "wasserstein_neg_deg"):
            assert 0.0 <= getattr(row, field) <= 90.0
        assert -1e-6 <= row.mean_cosine <= 1.0 + 1e-6  # q >= 0, so cosines are >= 0
        assert not math.isnan(row.separation)
        if row.class_name == ALL_CLASSES and math.isinf(row.separation):
            pos, neg, _ = angles[row.model].sorted_theta(np.arange(len(teacher)))
            assert _constant(pos) and _constant(neg), "separation is inf only for constants"
    for row in rows[: 1 + classes]:  # the teacher against itself (also for all-zero maps)
        assert row.wasserstein_deg == row.wasserstein_pos_deg == row.wasserstein_neg_deg == 0.0
        assert row.mean_cosine == pytest.approx(1.0, abs=1e-6)


@PROPERTY
@given(inputs=report_inputs(same_size=True))
def test_angular_wasserstein_and_cosine_are_symmetric_and_match_scipy(inputs):
    """Over all positions the angles do not depend on the split, so swapping teacher and
    student gives the same Wasserstein distance and mean cosine."""
    first, second, split = inputs
    forward = angular_report(first, [second], per_class=False, **split)[1]
    backward = angular_report(second, [first], per_class=False, **split)[1]
    assert forward.wasserstein_deg == pytest.approx(backward.wasserstein_deg, abs=1e-12)
    assert forward.mean_cosine == pytest.approx(backward.mean_cosine, abs=1e-6)
    [reference, model] = stage_angles(first, [second], "layer", **split)
    expected = wasserstein_distance(
        reference.theta_deg.numpy().ravel(), model.theta_deg.numpy().ravel()
    )
    assert forward.wasserstein_deg == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------- linear CKA


@st.composite
def cka_inputs(draw, varying: bool = False):
    """``N x P`` and ``N x Q`` features, N in 2..6 and P, Q in 1..8, so both the feature form
    (P <= N) and the Gram form (P > N) are used. Values are float32 (stage features are fp16,
    pooled ones fp32), which CKA's float64 fourth powers can neither overflow nor underflow;
    float64 features below 1e-77 would underflow to CKA 0. ``varying``: no all-zero or
    constant kinds."""
    n, kinds = draw(st.integers(2, 6)), VARYING if varying else KINDS
    x = draw(arrays((n, draw(st.integers(1, 8))), kinds=kinds))
    y = draw(arrays((n, draw(st.integers(1, 8))), kinds=kinds))
    return x.astype(np.float64), y.astype(np.float64)


def _well_centred(x: np.ndarray) -> bool:
    """The centred features are not lost in rounding: ||X - mean|| >= 1e-4 ||X||. (For
    near-constant features, centring leaves rounding noise that rotations reshuffle.)"""
    centred = np.linalg.norm(x - x.mean(axis=0))
    return centred > 0 and centred >= 1e-4 * np.linalg.norm(x)


def _varies(x: np.ndarray) -> bool:
    return bool((x != x[0]).any())


@PROPERTY
@given(inputs=cka_inputs())
def test_cka_is_symmetric_and_in_the_unit_interval(inputs):
    x, y = inputs
    value = linear_cka(x, y)
    assert 0.0 <= value <= 1.0
    assert linear_cka(y, x) == pytest.approx(value, abs=1e-12)
    if not (_varies(x) and _varies(y)):
        assert value == 0.0  # documented: 0 when either side is constant


@PROPERTY
@given(inputs=cka_inputs(varying=True))
def test_cka_of_a_varying_feature_with_itself_is_one(inputs):
    x, _ = inputs
    assume(_varies(x))
    assert linear_cka(x, x.copy()) == pytest.approx(1.0, abs=1e-9)


@PROPERTY
@given(inputs=cka_inputs(varying=True), seed=st.integers(0, 2**32 - 1), factor=st.floats(1e-3, 1e3))
def test_cka_is_invariant_to_rotations_and_isotropic_scaling(inputs, seed, factor):
    x, y = inputs
    assume(_well_centred(x) and _well_centred(y))
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((x.shape[1],) * 2))
    assert linear_cka(x @ rotation * factor, y) == pytest.approx(linear_cka(x, y), abs=1e-6)


# --------------------------------------------------------------------------- map agreement


@st.composite
def map_pair(draw):
    """Non-negative ``B x H x W`` float32 teacher and student maps (sizes may differ)."""
    batch = draw(st.integers(1, MAX_BATCH))
    t_size = (draw(sides), draw(sides))
    s_size = draw(st.sampled_from([t_size, (draw(sides), draw(sides))]))
    teacher = draw(tensors((batch, *t_size), nonnegative=True))
    student = draw(tensors((batch, *s_size), nonnegative=True))
    return teacher, student


@PROPERTY
@given(maps=map_pair(), top_fraction=st.floats(0.01, 1.0))
def test_map_agreement_measures_are_defined_bounded_and_symmetric(maps, top_fraction):
    teacher, student = maps
    agreement = compare_maps(teacher, student, top_fraction=top_fraction)
    for name in ("cosine", "rank_correlation", "top_iou"):
        assert not torch.isnan(getattr(agreement, name)).any(), name
    assert ((agreement.cosine >= 0) & (agreement.cosine <= 1)).all()  # non-negative maps
    assert ((agreement.rank_correlation >= -1) & (agreement.rank_correlation <= 1)).all()
    assert ((agreement.top_iou >= 0) & (agreement.top_iou <= 1)).all()
    assert ((agreement.difference >= -1) & (agreement.difference <= 1)).all()
    swapped = compare_maps(student, teacher, top_fraction=top_fraction)
    assert torch.allclose(swapped.cosine, agreement.cosine, rtol=0.0, atol=1e-6)
    assert torch.allclose(swapped.rank_correlation, agreement.rank_correlation, atol=1e-6)
    assert torch.equal(swapped.top_iou, agreement.top_iou)
    assert torch.allclose(swapped.difference, -agreement.difference)


@PROPERTY
@given(maps=map_pair(), top_fraction=st.floats(0.01, 1.0))
def test_a_map_agrees_perfectly_with_itself(maps, top_fraction):
    teacher, _ = maps
    agreement = compare_maps(teacher, teacher.clone(), top_fraction=top_fraction)
    assert torch.allclose(agreement.cosine, torch.ones(len(teacher)), rtol=0.0, atol=1e-6)
    assert torch.allclose(agreement.rank_correlation, torch.ones(len(teacher)), atol=1e-6)
    assert torch.equal(agreement.top_iou, torch.ones(len(teacher)))
    assert torch.equal(agreement.difference, torch.zeros_like(teacher))


@PROPERTY
@given(maps=map_pair(), top_fraction=st.floats(0.01, 1.0), seed=st.integers(0, 2**32 - 1))
def test_mask_agreement_is_bounded(maps, top_fraction, seed):
    maps, _ = maps
    batch, height, width = maps.shape
    cells = np.random.default_rng(seed).random((batch, 2 * height, 2 * width))
    masks = torch.from_numpy(cells < cells.mean())  # masks at twice the maps' resolution
    agreement = compare_with_mask(maps, masks, top_fraction=top_fraction)
    for name in ("mass_inside", "top_iou", "mask_fraction"):
        value = getattr(agreement, name)
        assert ((value >= 0) & (value <= 1)).all(), name


@PROPERTY
@given(maps=map_pair(), top_fraction=st.floats(0.01, 1.0))
def test_top_region_holds_the_largest_positive_values(maps, top_fraction):
    teacher, _ = maps
    region = top_region(teacher, top_fraction).flatten(1)
    flat = teacher.flatten(1)
    count = math.ceil(top_fraction * flat.shape[1])
    for values, chosen in zip(flat, region, strict=True):
        positive = int((values > 0).sum())
        assert int(chosen.sum()) >= min(count, positive)  # ties can only add positions
        assert bool((values[chosen] > 0).all())
        if chosen.any() and (~chosen).any():
            assert values[chosen].min() >= values[~chosen].max()
    assert torch.equal(region_iou(region, region), torch.ones(len(teacher)))


@PROPERTY
@given(maps=map_pair())
def test_cosine_and_rank_correlation_stay_defined_for_constant_maps(maps):
    """Documented: a constant map has no ranking, so its rank correlation is 1 with another
    constant map and 0 otherwise; an all-zero map's cosine is 1 with another, 0 otherwise."""
    teacher, _ = maps
    constant = torch.full_like(teacher, float(teacher.flatten()[0]))
    for first, second in ((constant, teacher), (teacher, constant), (constant, constant)):
        assert not torch.isnan(cosine_similarity(first, second)).any()
        assert not torch.isnan(rank_correlation(first, second)).any()
    flat = teacher.flatten(1)
    varies = (flat != flat[:, :1]).any(dim=1)
    expected = torch.where(varies, 0.0, 1.0)
    assert torch.equal(rank_correlation(constant, teacher), expected)
    zero, nonzero = torch.zeros_like(teacher), flat.any(dim=1)
    assert torch.equal(cosine_similarity(zero, teacher), torch.where(nonzero, 0.0, 1.0))
