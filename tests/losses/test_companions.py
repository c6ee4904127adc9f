"""The companion losses (CE, KD, AT, FitNet, SP, PKT, RKD) against small cases worked out by hand
from each paper's formula, plus their properties and their input checks.

Every expected value below is derived in the test with ``math`` in float64 from the formula in the
loss's docstring / paper, never with the torch functions the implementation uses. The losses
compute in float32, hence the ``rel=1e-6`` tolerance (a few float32 ulps).
"""

from __future__ import annotations

import math

import pytest
import torch

from kd_core.losses import ModelOutputs, build_loss

REL = 1e-6
LN = math.log
SQ = math.sqrt


def value(loss: torch.Tensor) -> float:
    assert loss.dim() == 0, f"a loss must be a scalar, got shape {tuple(loss.shape)}"
    return loss.item()


def maps(rows: list) -> torch.Tensor:
    """``B x C x H x W`` tensor from nested lists."""
    return torch.tensor(rows, dtype=torch.float32)


def huber(d: float) -> float:
    """Smooth L1 with delta 1: ``d^2 / 2`` for ``|d| < 1``, ``|d| - 1/2`` otherwise."""
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


# --- CE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_ce_with_label_smoothing_matches_hand_formula(eps):
    # sample 1: logits (ln 3, 0, 0) -> softmax (3/5, 1/5, 1/5), label 0
    # sample 2: logits (0, ln 2, ln 2) -> softmax (1/5, 2/5, 2/5), label 2
    # smoothed target q = (1 - eps) onehot(y) + eps / K;  CE_i = -sum_k q_k log p_k; mean over i
    logits = torch.tensor([[LN(3), 0.0, 0.0], [0.0, LN(2), LN(2)]])
    target = torch.tensor([0, 2])
    probs = [(3 / 5, 1 / 5, 1 / 5), (1 / 5, 2 / 5, 2 / 5)]
    expected = 0.0
    for p, y in zip(probs, (0, 2), strict=True):
        q = [(1 - eps) * (k == y) + eps / 3 for k in range(3)]
        expected -= sum(q_k * LN(p_k) for q_k, p_k in zip(q, p, strict=True))
    expected /= 2
    loss = build_loss("ce", label_smoothing=eps)
    assert value(loss(logits, target)) == pytest.approx(expected, rel=REL)


def test_ce_needs_no_teacher_and_reads_student_logits():
    loss = build_loss("ce")
    assert loss.needs_teacher is False
    logits = torch.tensor([[LN(3), 0.0, 0.0]])
    out = loss.from_outputs(ModelOutputs(logits=logits), None, torch.tensor([0]))
    assert value(out) == pytest.approx(-LN(3 / 5), rel=REL)


# --- KD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_matches_hand_formula(temperature):
    # Two classes, so softmax(z / T) = (e^{z0/T}, e^{z1/T}) / sum.
    # sample 1: student (0, 0) -> (1/2, 1/2); teacher (ln 3, 0) -> a = 3^{1/T} / (3^{1/T} + 1)
    #   KL(p_t || p_s) = a ln(2a) + (1 - a) ln(2(1 - a))
    # sample 2: student (T ln 2, 0) -> (2/3, 1/3); teacher (0, 0) -> (1/2, 1/2)
    #   KL = 1/2 ln((1/2)/(2/3)) + 1/2 ln((1/2)/(1/3)) = 1/2 ln(3/4) + 1/2 ln(3/2)
    # L = T^2 * (KL_1 + KL_2) / 2
    t = temperature
    a = 3 ** (1 / t) / (3 ** (1 / t) + 1)
    kl_1 = a * LN(2 * a) + (1 - a) * LN(2 * (1 - a))
    kl_2 = 0.5 * LN(3 / 4) + 0.5 * LN(3 / 2)
    expected = t * t * (kl_1 + kl_2) / 2
    student = torch.tensor([[0.0, 0.0], [t * LN(2), 0.0]])
    teacher = torch.tensor([[LN(3), 0.0], [0.0, 0.0]])
    loss = build_loss("kd", temperature=t)
    assert value(loss(student, teacher)) == pytest.approx(expected, rel=REL)


def test_kd_scales_with_temperature_squared():
    # Logits scaled by T give the same softened distributions at temperature T as the unscaled
    # ones at T = 1, so the loss must be exactly T^2 times the T = 1 value:
    # T = 1: student (0, 0) -> (1/2, 1/2), teacher (ln 3, 0) -> (3/4, 1/4)
    #        KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    kl = 0.75 * LN(1.5) + 0.25 * LN(0.5)
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[LN(3), 0.0]])
    at_1 = value(build_loss("kd", temperature=1.0)(student, teacher))
    at_4 = value(build_loss("kd", temperature=4.0)(4 * student, 4 * teacher))
    assert at_1 == pytest.approx(kl, rel=REL)
    assert at_4 == pytest.approx(16 * kl, rel=REL)


# --- AT ------------------------------------------------------------------------------------------


def test_at_one_channel_maps_match_hand_formula():
    # Q(F) = vec(|F|^2) / ||vec(|F|^2)||, L = mean over the B * N entries of (Q_s - Q_t)^2.
    # sample 1: student [[1,0],[0,0]] -> (1,0,0,0); teacher all ones -> (1,1,1,1)/2
    #   squared distance: (1/2)^2 + 3 * (1/2)^2 = 1
    # sample 2: student [[1,0],[0,0]] -> (1,0,0,0); teacher [[0,1],[1,0]] -> (0,1,1,0)/sqrt(2)
    #   squared distance: 1 + 1/2 + 1/2 = 2
    # L = (1 + 2) / (B * N) = 3 / 8
    student = maps([[[[1, 0], [0, 0]]], [[[1, 0], [0, 0]]]])
    teacher = maps([[[[1, 1], [1, 1]]], [[[0, 1], [1, 0]]]])
    assert value(build_loss("at")([student], [teacher])) == pytest.approx(3 / 8, rel=REL)


def test_at_averages_channels_and_sums_layers():
    # Layer 1, two channels: student channels [[1,0],[0,0]] and [[0,1],[0,0]]
    #   mean_c |F_c|^2 = (1/2, 1/2, 0, 0) -> Q_s = (1, 1, 0, 0)/sqrt(2)
    #   teacher both channels [[1,0],[0,0]] -> (1, 0, 0, 0)
    #   squared distance (1/sqrt2 - 1)^2 + 1/2, mean over N = 4 entries
    # Layer 2 (1 x 2 map, one channel): student (3, 4) -> (9, 16)/sqrt(337); teacher (1, 0)
    #   squared distance (9/sqrt337 - 1)^2 + (16/sqrt337)^2, mean over N = 2 entries
    # L = layer 1 + layer 2
    layer_1 = ((1 / SQ(2) - 1) ** 2 + 0.5) / 4
    layer_2 = ((9 / SQ(337) - 1) ** 2 + (16 / SQ(337)) ** 2) / 2
    student = [maps([[[[1, 0], [0, 0]], [[0, 1], [0, 0]]]]), maps([[[[3, 4]]]])]
    teacher = [maps([[[[1, 0], [0, 0]], [[1, 0], [0, 0]]]]), maps([[[[1, 0]]]])]
    loss = build_loss("at")
    assert value(loss(student, teacher)) == pytest.approx(layer_1 + layer_2, rel=REL)
    # `layers` picks the pairs that are summed.
    only_2 = build_loss("at", layers=[1])
    assert value(only_2(student, teacher)) == pytest.approx(layer_2, rel=REL)


def test_at_uses_the_power_p():
    # p = 4: student (1, 2) -> |F|^4 = (1, 16) -> (1, 16)/sqrt(257); teacher (1, 1) -> (1, 1)/sqrt2
    # L = ((1/sqrt257 - 1/sqrt2)^2 + (16/sqrt257 - 1/sqrt2)^2) / 2
    expected = ((1 / SQ(257) - 1 / SQ(2)) ** 2 + (16 / SQ(257) - 1 / SQ(2)) ** 2) / 2
    loss = build_loss("at", p=4)
    assert value(loss([maps([[[[1, 2]]]])], [maps([[[[1, 1]]]])])) == pytest.approx(
        expected, rel=REL
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 4.0])
def test_at_gradients_are_finite_at_zero_activations_for_every_accepted_p(p):
    # ReLU features have exact zeros; d|x|^p/dx at 0 is finite for p >= 1 (p < 1 is refused).
    student = maps([[[[0, 1], [0, 0]]], [[[0, 0], [0, 0]]]]).requires_grad_(True)
    teacher = maps([[[[1, 0], [0, 0]]], [[[0, 2], [0, 0]]]])
    loss = build_loss("at", p=p)([student], [teacher])
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("student_is_larger", [False, True])
def test_at_align_pools_the_larger_map_to_the_smaller_size(student_is_larger):
    # The 4x4 map's 2x2 blocks each average to 1 ([[0,2],[2,0]] and [[1,1],[1,1]]), so it is
    # average-pooled to the 2x2 all-ones map; against [[1,0],[0,0]] that is the first sample of
    # the one-channel case above: squared distance 1, mean over N = 4 -> 1/4.
    small = maps([[[[1, 0], [0, 0]]]])
    large = maps([[[[0, 2, 1, 1], [2, 0, 1, 1], [1, 1, 0, 2], [1, 1, 2, 0]]]])
    student, teacher = (large, small) if student_is_larger else (small, large)
    with pytest.raises(ValueError, match=r"spatial sizes differ.*align=True"):
        build_loss("at")([student], [teacher])
    aligned = build_loss("at", align=True)([student], [teacher])
    assert value(aligned) == pytest.approx(1 / 4, rel=REL)


# --- FitNet --------------------------------------------------------------------------------------


def set_regressor(loss, index: int, weight: list, bias: list) -> None:
    regressor = loss.regressors[index]
    with torch.no_grad():
        regressor.weight.copy_(torch.tensor(weight).reshape(regressor.weight.shape))
        regressor.bias.copy_(torch.tensor(bias))


def identity_fitnet(channels: int = 3):
    loss = build_loss("fitnet", student_channels=[channels], teacher_channels=[channels])
    set_regressor(loss, 0, torch.eye(channels).tolist(), [0.0] * channels)
    return loss


def test_fitnet_with_hand_set_regressor_matches_hand_mse():
    # 1x1 conv from 1 to 2 channels: r(x) = (2x + 1/2, -x).
    # student map (1, 3) -> r = channel 0 (2.5, 6.5), channel 1 (-1, -3)
    # teacher          channel 0 (2, 6),     channel 1 (0, -3)
    # squared errors 0.25, 0.25, 1, 0 -> sum 1.5 over B*C*H*W = 1*2*1*2 = 4 -> 0.375
    loss = build_loss("fitnet", student_channels=[1], teacher_channels=[2])
    set_regressor(loss, 0, [[2.0], [-1.0]], [0.5, 0.0])
    student = maps([[[[1, 3]]]])
    teacher = maps([[[[2, 6]], [[0, -3]]]])
    assert value(loss([student], [teacher])) == pytest.approx(0.375, rel=REL)


def test_fitnet_sums_layers_with_one_regressor_each():
    # layer 1: r(x) = 2x, student (1, 3) -> (2, 6) vs teacher (2, 4): errors 0, 4 -> mean 2
    # layer 2: r(x) = x - 1, student (5) -> 4 vs teacher 1: error 9 -> mean 9
    loss = build_loss("fitnet", student_channels=[1, 1], teacher_channels=[1, 1])
    set_regressor(loss, 0, [[2.0]], [0.0])
    set_regressor(loss, 1, [[1.0]], [-1.0])
    student = [maps([[[[1, 3]]]]), maps([[[[5]]]])]
    teacher = [maps([[[[2, 4]]]]), maps([[[[1]]]])]
    assert value(loss(student, teacher)) == pytest.approx(2 + 9, rel=REL)


def test_fitnet_regressor_is_a_trained_parameter():
    loss = build_loss("fitnet", student_channels=[2], teacher_channels=[3])
    params = list(loss.parameters())
    assert {id(p) for p in params} == {id(loss.regressors[0].weight), id(loss.regressors[0].bias)}
    assert [tuple(p.shape) for p in params] == [(3, 2, 1, 1), (3,)]
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(2, 2, 3, 3, generator=gen)
    teacher = torch.randn(2, 3, 3, 3, generator=gen)
    loss([student], [teacher]).backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --- SP ------------------------------------------------------------------------------------------


def test_sp_matches_hand_gram_matrices():
    # Student rows Q_s = (1, 0), (1, 1): G = Q Q^T = [[1, 1], [1, 2]]
    #   row-normalised: (1, 1)/sqrt2 and (1, 2)/sqrt5
    # Teacher rows (1, 0), (0, 1) (as a 1 x 1 x 2 map: sizes may differ): G = I
    # L = ||G_s - G_t||_F^2 / B^2
    #   = ((1/sqrt2 - 1)^2 + 1/2 + 1/5 + (2/sqrt5 - 1)^2) / 4
    expected = ((1 / SQ(2) - 1) ** 2 + 0.5 + 0.2 + (2 / SQ(5) - 1) ** 2) / 4
    student = maps([[[[1]], [[0]]], [[[1]], [[1]]]])  # 2 x 2 x 1 x 1
    teacher = maps([[[[1, 0]]], [[[0, 1]]]])  # 2 x 1 x 1 x 2
    assert value(build_loss("sp")([student], [teacher])) == pytest.approx(expected, rel=REL)


def test_sp_uses_the_last_stage_by_default_and_all_with_layers_none():
    # Stage 2 is the hand case above; stage 1 has student rows (1, 0), (0, 1) -> G_s = I and
    # teacher rows (1, 0), (1, 0) -> G = all ones -> rows (1, 1)/sqrt2:
    #   ||I - ones/sqrt2||^2 = 2 (1 - 1/sqrt2)^2 + 2 * 1/2, divided by 4.
    last = ((1 / SQ(2) - 1) ** 2 + 0.5 + 0.2 + (2 / SQ(5) - 1) ** 2) / 4
    first = (2 * (1 - 1 / SQ(2)) ** 2 + 1) / 4
    student = [maps([[[[1, 0]]], [[[0, 1]]]]), maps([[[[1]], [[0]]], [[[1]], [[1]]]])]
    teacher = [maps([[[[1, 0]]], [[[1, 0]]]]), maps([[[[1, 0]]], [[[0, 1]]]])]
    assert value(build_loss("sp")(student, teacher)) == pytest.approx(last, rel=REL)
    assert value(build_loss("sp", layers=None)(student, teacher)) == pytest.approx(
        first + last, rel=REL
    )


# --- PKT -----------------------------------------------------------------------------------------

PKT_EPS = 1e-7


def pkt_formula(p_s: list, p_t: list) -> float:
    """(1/B^2) sum_ij p_t log((p_t + eps) / (p_s + eps)), with 0 log(.) = 0."""
    b = len(p_s)
    total = sum(
        p_t[i][j] * LN((p_t[i][j] + PKT_EPS) / (p_s[i][j] + PKT_EPS))
        for i in range(b)
        for j in range(b)
        if p_t[i][j] > 0
    )
    return total / b**2


def test_pkt_two_vectors_match_hand_formula():
    # Student (1, 0), (0, 1): cos = 0 -> kernel (1 + cos)/2 = [[1, 1/2], [1/2, 1]]
    #   rows normalised: p_s = [[2/3, 1/3], [1/3, 2/3]]
    # Teacher (1, 0), (3, 0): cos = 1 -> kernel all ones -> p_t = 1/2 everywhere
    # L = (1/4) sum_ij 1/2 log(1/2 / p_s) ~= ln(9/8) / 4
    expected = pkt_formula([[2 / 3, 1 / 3], [1 / 3, 2 / 3]], [[0.5, 0.5], [0.5, 0.5]])
    assert expected == pytest.approx(LN(9 / 8) / 4, rel=1e-5)  # eps is negligible here
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert value(build_loss("pkt")(student, teacher)) == pytest.approx(expected, rel=REL)


def test_pkt_three_vectors_match_hand_formula():
    # Student (1, 0), (1, 1), (0, 1): cos 1-2 = cos 2-3 = 1/sqrt2, cos 1-3 = 0
    #   kernel [[1, a, 1/2], [a, 1, a], [1/2, a, 1]] with a = (1 + 1/sqrt2)/2, rows normalised
    # Teacher (1, 0), (0, 2), (-3, 0): cos 1-2 = 0, cos 1-3 = -1, cos 2-3 = 0
    #   kernel [[1, 1/2, 0], [1/2, 1, 1/2], [0, 1/2, 1]]
    #   p_t = [[2/3, 1/3, 0], [1/4, 1/2, 1/4], [0, 1/3, 2/3]]  (zero entries contribute 0)
    a = (1 + 1 / SQ(2)) / 2
    p_s = [
        [1 / (1.5 + a), a / (1.5 + a), 0.5 / (1.5 + a)],
        [a / (1 + 2 * a), 1 / (1 + 2 * a), a / (1 + 2 * a)],
        [0.5 / (1.5 + a), a / (1.5 + a), 1 / (1.5 + a)],
    ]
    p_t = [[2 / 3, 1 / 3, 0], [1 / 4, 1 / 2, 1 / 4], [0, 1 / 3, 2 / 3]]
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert value(build_loss("pkt")(student, teacher)) == pytest.approx(
        pkt_formula(p_s, p_t), rel=REL
    )


# --- RKD -----------------------------------------------------------------------------------------


def test_rkd_distance_part_on_collinear_points():
    # Student on a line at 0, 1, 3: d = (d01, d02, d12) = (1, 3, 2), mean over pairs mu = 2
    #   psi_D = (1/2, 3/2, 1)
    # Teacher at 0, 1, 2: d = (1, 2, 1), mu = 4/3 -> psi_D = (3/4, 3/2, 3/4)
    # differences (-1/4, 0, 1/4) -> Huber 1/32, 0, 1/32; each pair appears twice in the 3 x 3
    # matrix (diagonal 0 - 0), mean over 9 entries: 4/32 / 9 = 1/72.
    # All triplet angles are 0 or pi in both (same order on a line): the angle part is 0.
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    teacher = torch.tensor([[0.0, 5.0], [0.0, 6.0], [0.0, 7.0]])  # a line in another direction
    distance_only = build_loss("rkd", distance_weight=1.0, angle_weight=0.0)
    assert value(distance_only(student, teacher)) == pytest.approx(1 / 72, rel=REL)
    default = build_loss("rkd")  # w_D = 25, w_A = 50
    assert value(default(student, teacher)) == pytest.approx(25 / 72, rel=REL)


def test_rkd_distance_part_uses_the_linear_huber_branch():
    # Student at 0, 1, 10: d = (1, 10, 9), mu = 20/3; teacher at 0, 9, 10: d = (9, 10, 1), mu = 20/3
    # psi differences (1 - 9, 0, 9 - 1) * 3/20 = (-6/5, 0, 6/5): |d| > 1 -> Huber |d| - 1/2 = 7/10
    # mean over the 9 entries: 4 * 7/10 / 9 = 14/45
    student = torch.tensor([[0.0], [1.0], [10.0]])
    teacher = torch.tensor([[0.0], [9.0], [10.0]])
    assert huber(6 / 5) == pytest.approx(0.7)
    loss = build_loss("rkd", distance_weight=1.0, angle_weight=0.0)
    assert value(loss(student, teacher)) == pytest.approx(14 / 45, rel=REL)


def test_rkd_angle_part_on_right_triangles():
    # psi_A[i, j, k] = cosine of the angle at x_i between x_j and x_k (0 when j or k equals i,
    # 1 when j == k != i). Only the 6 entries with i, j, k distinct can differ.
    # Student (0,0), (1,0), (0,1): right angle at point 0 -> cos at 0, 1, 2 = 0, 1/sqrt2, 1/sqrt2
    # Teacher (1,0), (0,0), (0,1): right angle at point 1 -> cos = 1/sqrt2, 0, 1/sqrt2
    # differences -1/sqrt2, 1/sqrt2, 0, each twice -> Huber 4 * (1/2)(1/2) = 1, mean over 27.
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    angle_only = build_loss("rkd", distance_weight=0.0, angle_weight=1.0)
    assert value(angle_only(student, teacher)) == pytest.approx(1 / 27, rel=REL)

    # Both parts, weighted: distances student (d01, d02, d12) = (1, 1, sqrt2), teacher
    # (1, sqrt2, 1), same mu = (2 + sqrt2)/3; differences 0, (1 - sqrt2)/mu, (sqrt2 - 1)/mu.
    mu = (2 + SQ(2)) / 3
    distance = 4 * huber((SQ(2) - 1) / mu) / 9
    both = build_loss("rkd", distance_weight=2.0, angle_weight=3.0)
    assert value(both(student, teacher)) == pytest.approx(2 * distance + 3 / 27, rel=REL)


# --- properties shared by every companion -------------------------------------------------------

FEATURE_LOSSES = ("at", "sp", "fitnet")
COMPANIONS = ("kd", "at", "fitnet", "sp", "pkt", "rkd")
FITNET_3 = {"student_channels": [3], "teacher_channels": [3]}
SHAPES = {"kd": (4, 5), "pkt": (4, 6), "rkd": (4, 6)}  # feature losses: 4 x 3 x 4 x 4 maps


def make_loss(name: str):
    return identity_fitnet(3) if name == "fitnet" else build_loss(name)


def make_input(name: str, fill: str, seed: int) -> torch.Tensor:
    shape = SHAPES.get(name, (4, 3, 4, 4))
    if fill == "zero":
        return torch.zeros(shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return x * 1e4 if fill == "huge" else x


def evaluate(name: str, loss, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if name in FEATURE_LOSSES:
        return loss([student], [teacher])
    return loss(student, teacher)


@pytest.mark.parametrize("name", COMPANIONS)
def test_identical_student_and_teacher_give_zero(name):
    # fitnet with an identity regressor maps the student's features onto themselves.
    x = make_input(name, "random", seed=1)
    assert value(evaluate(name, make_loss(name), x.clone(), x.clone())) == pytest.approx(
        0.0, abs=1e-6
    )


@pytest.mark.parametrize("name", COMPANIONS)
def test_gradient_reaches_the_student_and_never_the_teacher(name):
    loss = make_loss(name)
    student = make_input(name, "random", seed=2).requires_grad_(True)
    teacher = make_input(name, "random", seed=3).requires_grad_(True)
    result = evaluate(name, loss, student, teacher)
    assert result.item() > 0
    result.backward()
    assert student.grad is not None
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert teacher.grad is None  # the teacher is detached inside the loss


def test_ce_gradient_reaches_the_logits():
    logits = torch.tensor([[LN(3), 0.0, 0.0]], requires_grad=True)
    build_loss("ce")(logits, torch.tensor([0])).backward()
    # d CE / d z = softmax(z) - onehot(y) = (3/5 - 1, 1/5, 1/5)
    assert logits.grad.tolist()[0] == pytest.approx([-0.4, 0.2, 0.2], rel=REL)


@pytest.mark.parametrize("fill", ["zero", "huge"])
@pytest.mark.parametrize("name", ["ce", *COMPANIONS])
def test_loss_and_gradients_are_finite_for_extreme_inputs(name, fill):
    if name == "ce":
        student = make_input("kd", fill, seed=4).requires_grad_(True)
        result = build_loss("ce")(student, torch.tensor([0, 1, 2, 4]))
        params = []
    else:
        # fitnet with its random (default) regressor
        loss = build_loss(name, **(FITNET_3 if name == "fitnet" else {}))
        params = list(loss.parameters())
        student = make_input(name, fill, seed=4).requires_grad_(True)
        teacher = make_input(name, fill, seed=5)
        result = evaluate(name, loss, student, teacher)
    assert torch.isfinite(result)
    result.backward()
    assert torch.isfinite(student.grad).all()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


# --- bad input: a ValueError that names the problem ----------------------------------------------


def fmap(batch=2, channels=3, size=4) -> torch.Tensor:
    return torch.ones(batch, channels, size, size)


@pytest.mark.parametrize(
    ("name", "params", "student", "teacher", "match"),
    [
        # mismatched numbers of layers
        ("at", {}, [fmap(), fmap()], [fmap()], r"2 student layers and 1 teacher layers"),
        ("sp", {"layers": None}, [fmap()], [fmap(), fmap()], r"1 student layers and 2 teacher"),
        (
            "fitnet",
            FITNET_3,
            [fmap(), fmap()],
            [fmap()],
            r"2 student layers and 1 teacher layers",
        ),
        # no layers at all
        ("at", {}, [], [], r"no layers to distil"),
        # features that are not B x C x H x W
        ("at", {}, [torch.ones(2, 3, 4)], [fmap()], r"student feature 0 must be 4-D"),
        ("sp", {}, [fmap()], [torch.ones(2, 48)], r"teacher feature 0 must be 4-D"),
        (
            "fitnet",
            FITNET_3,
            [torch.ones(2, 3, 4, 4, 1)],
            [fmap()],
            r"must be 4-D",
        ),
        ("at", {}, fmap(), fmap(), r"must be a list of B x C x H x W tensors"),
        # batch sizes
        ("at", {}, [fmap(batch=2)], [fmap(batch=3)], r"batch sizes differ"),
        ("sp", {}, [fmap(batch=2)], [fmap(batch=3)], r"batch sizes differ"),
        (
            "fitnet",
            FITNET_3,
            [fmap(batch=2)],
            [fmap(batch=3)],
            r"batch sizes differ",
        ),
        ("kd", {}, torch.ones(2, 5), torch.ones(3, 5), r"batch sizes differ"),
        ("pkt", {}, torch.ones(2, 5), torch.ones(3, 5), r"batch sizes differ"),
        ("rkd", {}, torch.ones(2, 5), torch.ones(3, 5), r"batch sizes differ"),
        ("kd", {}, torch.ones(0, 5), torch.ones(0, 5), r"empty batch"),
        # class counts
        ("kd", {}, torch.ones(2, 5), torch.ones(2, 6), r"student has 5 classes, teacher 6"),
        ("kd", {}, torch.ones(2, 5, 1), torch.ones(2, 5), r"student logits must be 2-D"),
        # pooled features must be B x D
        ("pkt", {}, fmap(), fmap(), r"student pooled feature must be 2-D"),
        ("rkd", {}, torch.ones(2, 4), fmap(), r"teacher pooled feature must be 2-D"),
        ("pkt", {}, torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4), r"floating-point"),
        # regressor channels
        (
            "fitnet",
            {"student_channels": [2], "teacher_channels": [3]},
            [fmap(channels=3)],
            [fmap(channels=3)],
            r"3 student and 3 teacher channels, but its regressor maps 2 -> 3",
        ),
        (
            "fitnet",
            {"student_channels": [3, 3], "teacher_channels": [3, 3]},
            [fmap()],
            [fmap()],
            r"1 layer pairs but 2 regressors",
        ),
        # out-of-range layer indices
        ("at", {"layers": [2]}, [fmap(), fmap()], [fmap(), fmap()], r"indices \[2\] are out"),
        ("sp", {"layers": [-3]}, [fmap(), fmap()], [fmap(), fmap()], r"accepted indices are -2..1"),
        (
            "fitnet",
            {"student_channels": [3], "teacher_channels": [3], "layers": [0]},
            [fmap()],
            [],
            r"out of range for 0 teacher stages",
        ),
        # spatial sizes without align
        ("at", {}, [fmap(size=4)], [fmap(size=2)], r"spatial sizes differ.*align=True"),
        (
            "fitnet",
            FITNET_3,
            [fmap(size=4)],
            [fmap(size=2)],
            r"spatial sizes differ",
        ),
    ],
)
def test_bad_inputs_raise_value_error(name, params, student, teacher, match):
    loss = build_loss(name, **params)
    with pytest.raises(ValueError, match=match):
        loss(student, teacher)


@pytest.mark.parametrize(
    ("logits", "target", "match"),
    [
        (torch.ones(2, 3), torch.tensor([0, 3]), r"labels must be in \[0, 2\] for 3 classes"),
        (torch.ones(2, 3), torch.tensor([-1, 0]), r"labels must be in \[0, 2\]"),
        (torch.ones(2, 3), torch.tensor([0.0, 1.0]), r"integer class labels"),
        (torch.ones(2, 3), torch.tensor([0, 1, 2]), r"2 logits rows but 3 labels"),
        (torch.ones(2, 3, 1), torch.tensor([0, 1]), r"logits must be 2-D"),
        (torch.ones(0, 3), torch.zeros(0, dtype=torch.long), r"empty batch"),
    ],
)
def test_ce_bad_inputs_raise_value_error(logits, target, match):
    with pytest.raises(ValueError, match=match):
        build_loss("ce")(logits, target)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("kd", {"temperature": 0}, r"temperature must be in \(0.0, inf\]"),
        ("kd", {"temperature": float("nan")}, r"temperature must be finite"),
        ("kd", {"temperature": "4"}, r"temperature must be a number"),
        ("ce", {"label_smoothing": 1.5}, r"label_smoothing must be in \[0.0, 1.0\]"),
        ("at", {"p": -1.0}, r"p must be in \[1.0, inf\]"),
        ("at", {"p": 0.5}, r"p must be in \[1.0, inf\], got 0.5"),
        ("rkd", {"angle_weight": -1.0}, r"angle_weight must be in \[0.0, inf\]"),
        ("rkd", {"distance_weight": float("inf")}, r"distance_weight must be finite"),
        (
            "fitnet",
            {"student_channels": [3, 4], "teacher_channels": [3]},
            r"2 student and 1 teacher channel counts",
        ),
        ("fitnet", {"student_channels": [], "teacher_channels": []}, r"0 student and 0 teacher"),
        (
            "fitnet",
            {"student_channels": [0], "teacher_channels": [3]},
            r"channel counts must be positive integers",
        ),
    ],
)
def test_bad_parameters_raise_value_error(name, params, match):
    with pytest.raises(ValueError, match=match):
        build_loss(name, **params)


@pytest.mark.parametrize("name", ["pkt", "rkd"])
def test_relational_losses_need_pooled_features(name):
    with_pooled = ModelOutputs(logits=torch.ones(2, 3), pooled=torch.ones(2, 4))
    without = ModelOutputs(logits=torch.ones(2, 3))
    with pytest.raises(ValueError, match=rf"{name}: needs the pooled"):
        build_loss(name).from_outputs(with_pooled, without, torch.tensor([0, 1]))
