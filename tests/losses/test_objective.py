"""The weighted objective: term weighting, skipped zero-weight terms, the teacher requirement,
learnable parameters and the checks on weights and parameters."""

from __future__ import annotations

import math

import pytest
import torch

from kd_core.losses import ModelOutputs, Objective, build_loss

LN = math.log


def outputs(seed: int, channels: tuple[int, int], dim: int, classes: int = 5) -> ModelOutputs:
    gen = torch.Generator().manual_seed(seed)
    return ModelOutputs(
        logits=torch.randn(4, classes, generator=gen, requires_grad=True),
        stages={
            "stage1": torch.randn(4, channels[0], 4, 4, generator=gen, requires_grad=True),
            "stage2": torch.randn(4, channels[1], 2, 2, generator=gen, requires_grad=True),
        },
        pooled=torch.randn(4, dim, generator=gen, requires_grad=True),
    )


@pytest.fixture
def batch():
    student = outputs(0, channels=(3, 4), dim=6)
    teacher = outputs(1, channels=(5, 6), dim=8)
    return student, teacher, torch.tensor([0, 1, 4, 2])


WEIGHTS = {"ce": 1, "kd": 0.9, "at": 1000, "fitnet": 10, "sp": 3000, "pkt": 2.5, "rkd": 0.5}
PARAMS = {
    "ce": {"label_smoothing": 0.1},
    "kd": {"temperature": 2},
    "fitnet": {"student_channels": [3, 4], "teacher_channels": [5, 6]},
    "rkd": {"distance_weight": 1, "angle_weight": 2},
}


def direct_value(name: str, loss, student: ModelOutputs, teacher: ModelOutputs, target) -> float:
    """The loss called on the inputs of its paper, not through ``from_outputs``."""
    if name == "ce":
        return loss(student.logits, target).item()
    if name == "kd":
        return loss(student.logits, teacher.logits).item()
    if name in ("pkt", "rkd"):
        return loss(student.pooled, teacher.pooled).item()
    return loss(student.stage_list, teacher.stage_list).item()


def test_terms_are_weight_times_the_individual_losses(batch):
    student, teacher, target = batch
    objective = Objective(WEIGHTS, params=PARAMS)
    total, terms = objective(student, teacher, target)
    assert list(terms) == list(WEIGHTS)
    for name, weight in WEIGHTS.items():
        alone = build_loss(name, **PARAMS.get(name, {}))
        alone.load_state_dict(objective.terms[name].state_dict())  # FitNet's random regressors
        expected = weight * direct_value(name, alone, student, teacher, target)
        assert expected != 0
        assert terms[name].item() == pytest.approx(expected, rel=1e-6), name
    assert total.item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)


def test_weighted_sum_matches_hand_values():
    # Student logits (0, 0), label 0 -> softmax (1/2, 1/2) -> CE = ln 2
    # KD at T = 1 with teacher logits (ln 3, 0) -> (3/4, 1/4):
    #   KL = 3/4 ln((3/4)/(1/2)) + 1/4 ln((1/4)/(1/2)) = 3/4 ln(3/2) + 1/4 ln(1/2)
    # L = 2 CE + 0.5 KD
    ce = LN(2)
    kd = 0.75 * LN(1.5) + 0.25 * LN(0.5)
    student = ModelOutputs(logits=torch.zeros(1, 2))
    teacher = ModelOutputs(logits=torch.tensor([[LN(3), 0.0]]))
    objective = Objective({"ce": 2, "kd": 0.5}, params={"kd": {"temperature": 1}})
    total, terms = objective(student, teacher, torch.tensor([0]))
    assert terms["ce"].item() == pytest.approx(2 * ce, rel=1e-6)
    assert terms["kd"].item() == pytest.approx(0.5 * kd, rel=1e-6)
    assert total.item() == pytest.approx(2 * ce + 0.5 * kd, rel=1e-6)


def test_gradient_of_the_total_reaches_the_student_only(batch):
    student, teacher, target = batch
    total, _ = Objective(WEIGHTS, params=PARAMS)(student, teacher, target)
    total.backward()
    for tensor in (student.logits, student.pooled, *student.stage_list):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0
    for tensor in (teacher.logits, teacher.pooled, *teacher.stage_list):
        assert tensor.grad is None


def test_zero_weight_terms_are_skipped(batch):
    student, teacher, target = batch
    # pkt would raise without pooled features: weight 0 means it is never computed.
    teacher_without_pooled = ModelOutputs(logits=teacher.logits, stages=teacher.stages)
    objective = Objective({"ce": 1, "kd": 0.5, "pkt": 0})
    total, terms = objective(student, teacher_without_pooled, target)
    assert set(terms) == {"ce", "kd"}
    assert total.item() == pytest.approx(terms["ce"].item() + terms["kd"].item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"pkt: needs the pooled"):
        Objective({"ce": 1, "pkt": 1})(student, teacher_without_pooled, target)


@pytest.mark.parametrize(
    ("weights", "needs"),
    [
        ({"ce": 1}, False),
        ({"ce": 1, "kd": 1}, True),
        ({"ce": 1, "kd": 0}, False),
        ({"at": 1}, True),
        ({"pkt": 1, "ce": 0}, True),
    ],
)
def test_needs_teacher(weights, needs):
    assert Objective(weights).needs_teacher is needs


def test_ce_alone_works_without_a_teacher():
    # logits (ln 3, 0, 0), label 0 -> -ln(3/5); weight 3
    student = ModelOutputs(logits=torch.tensor([[LN(3), 0.0, 0.0]]))
    total, terms = Objective({"ce": 3})(student, None, torch.tensor([0]))
    assert list(terms) == ["ce"]
    assert total.item() == pytest.approx(-3 * LN(3 / 5), rel=1e-6)
    # a zero-weight teacher term does not make the teacher necessary
    total, terms = Objective({"ce": 3, "kd": 0})(student, None, torch.tensor([0]))
    assert list(terms) == ["ce"]


def test_missing_teacher_for_a_teacher_term_raises(batch):
    student, _, target = batch
    with pytest.raises(ValueError, match=r"the terms \['kd'\] need the teacher's outputs"):
        Objective({"ce": 1, "kd": 0.9})(student, None, target)


def test_fitnet_regressors_are_parameters_of_the_objective(batch):
    student, teacher, target = batch
    objective = Objective({"ce": 1, "fitnet": 10}, params={"fitnet": PARAMS["fitnet"]})
    regressors = objective.terms["fitnet"].regressors
    expected = [p for r in regressors for p in (r.weight, r.bias)]
    assert [id(p) for p in objective.parameters()] == [id(p) for p in expected]
    total, _ = objective(student, teacher, target)
    total.backward()
    for p in expected:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert list(Objective({"ce": 1, "kd": 1, "at": 1}).parameters()) == []


@pytest.mark.parametrize(
    ("weights", "params", "match"),
    [
        ({}, None, r"give at least one weighted term.*accepted names: "),
        ([("ce", 1)], None, r"give at least one weighted term"),
        ({"nope": 1}, None, r"Unknown loss 'nope'; accepted names: .*kd"),
        ({"ce": -1}, None, r"weight of 'ce' must be finite and >= 0, got -1"),
        ({"ce": 1, "kd": float("nan")}, None, r"weight of 'kd' must be finite and >= 0, got nan"),
        ({"ce": float("inf")}, None, r"weight of 'ce' must be finite and >= 0, got inf"),
        ({"ce": "1"}, None, r"weight of 'ce' must be a number, got '1'"),
        ({"ce": True}, None, r"weight of 'ce' must be a number, got True"),
        ({"ce": 0, "kd": 0.0}, None, r"every weight is 0"),
        (
            {"ce": 1},
            {"kd": {"temperature": 4}},
            r"parameters given for \['kd'\], which are not terms of the objective \(ce\)",
        ),
        (
            {"kd": 1},
            {"kd": {"temp": 4}},
            r"'kd' has no parameter \['temp'\]; accepted parameters: temperature",
        ),
        ({"kd": 1}, {"kd": {"temperature": -4}}, r"temperature must be in \(0.0, inf\]"),
        ({"fitnet": 1}, None, r"needs the parameter\(s\) \['student_channels'"),
    ],
)
def test_bad_objectives_raise_value_error(weights, params, match):
    with pytest.raises(ValueError, match=match):
        Objective(weights, params=params)
