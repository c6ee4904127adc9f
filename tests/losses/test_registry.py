"""The loss registry: names, construction by name, parameter listing and its error messages."""

from __future__ import annotations

import inspect

import pytest

from kd_core.losses import DistillationLoss, build_loss, list_losses, loss_parameters
from kd_core.losses.registry import register_loss
from tests.fresh_python import run_fresh_python

NAMES = ("amd", "at", "ce", "fitnet", "kd", "pkt", "rkd", "sp")
REQUIRED = {"fitnet": {"student_channels": [3, 4], "teacher_channels": [5, 6]}}
EMPTY = inspect.Parameter.empty

COMPANION_PARAMETERS = {
    "ce": {"label_smoothing": 0.0},
    "kd": {"temperature": 4.0},
    "at": {"p": 2.0, "align": False, "layers": None},
    "fitnet": {
        "student_channels": EMPTY,
        "teacher_channels": EMPTY,
        "align": False,
        "layers": None,
    },
    "sp": {"layers": (-1,)},
    "pkt": {},
    "rkd": {"distance_weight": 25.0, "angle_weight": 50.0},
}


def test_list_losses_has_exactly_the_eight_methods():
    names = list_losses()
    assert len(names) == len(set(names)) == 8
    assert set(names) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_builds_with_its_defaults(name):
    loss = build_loss(name, **REQUIRED.get(name, {}))
    assert isinstance(loss, DistillationLoss)
    assert loss.name == name
    assert loss.needs_teacher is (name != "ce")


@pytest.mark.parametrize(("name", "expected"), sorted(COMPANION_PARAMETERS.items()))
def test_loss_parameters_lists_the_constructor_parameters(name, expected):
    params = loss_parameters(name)
    assert params == expected
    assert list(params) == list(expected)  # in the constructor's order


def test_amd_parameters_include_its_margin():
    params = loss_parameters("amd")
    assert "self" not in params
    assert "margin" in params and params["margin"] is not EMPTY


@pytest.mark.parametrize("name", NAMES)
def test_every_listed_parameter_is_accepted_by_build_loss(name):
    defaults = {k: v for k, v in loss_parameters(name).items() if v is not EMPTY}
    loss = build_loss(name, **defaults, **REQUIRED.get(name, {}))
    assert loss.name == name


def test_build_loss_passes_parameters_to_the_constructor():
    assert build_loss("kd", temperature=2).temperature == 2.0
    rkd = build_loss("rkd", distance_weight=1, angle_weight=3)
    assert (rkd.distance_weight, rkd.angle_weight) == (1.0, 3.0)
    at = build_loss("at", layers=(0, 2), align=True)
    assert (at.layers, at.align) == ([0, 2], True)


def test_build_loss_makes_independent_instances():
    first, second = (
        build_loss("fitnet", **REQUIRED["fitnet"]),
        build_loss("fitnet", **REQUIRED["fitnet"]),
    )
    assert first is not second
    assert {id(p) for p in first.parameters()}.isdisjoint(id(p) for p in second.parameters())


@pytest.mark.parametrize("call", [build_loss, loss_parameters])
def test_unknown_loss_name_lists_the_accepted_names(call):
    with pytest.raises(ValueError, match=r"Unknown loss 'nope'; accepted names: ") as error:
        call("nope")
    for name in NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        (
            "kd",
            {"temp": 2},
            r"Loss 'kd' has no parameter \['temp'\]; accepted parameters: "
            r"temperature\.",
        ),
        ("pkt", {"eps": 1e-7}, r"Loss 'pkt' has no parameter \['eps'\]; accepted parameters: none"),
        (
            "rkd",
            {"w_d": 1, "w_a": 2},
            r"no parameter \['w_a', 'w_d'\]; accepted parameters: distance_weight, angle_weight",
        ),
    ],
)
def test_unknown_parameter_lists_the_accepted_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        build_loss(name, **params)


def test_missing_required_parameter_is_named():
    with pytest.raises(
        ValueError,
        match=r"'fitnet' needs the parameter\(s\) \['student_channels', 'teacher_channels'\]",
    ):
        build_loss("fitnet")
    with pytest.raises(ValueError, match=r"needs the parameter\(s\) \['teacher_channels'\]"):
        build_loss("fitnet", student_channels=[3])


def test_registering_a_taken_name_is_refused():
    before = list_losses()

    class Impostor(DistillationLoss):
        name = "kd"

        def from_outputs(self, student, teacher, target):
            return student.logits.sum()

    with pytest.raises(ValueError, match=r"A loss named 'kd' is already registered"):
        register_loss(Impostor)
    assert list_losses() == before
    assert type(build_loss("kd")).__name__ == "KnowledgeDistillationLoss"


def test_a_built_in_name_is_refused_before_the_built_in_losses_are_imported():
    """The built-in losses are imported on the first lookup: a class registered before that
    cannot take one of their names, and they all still register."""
    run_fresh_python(
        """
        import sys
        from kd_core.losses.base import DistillationLoss
        from kd_core.losses.registry import list_losses, register_loss

        assert "kd_core.losses.kd" not in sys.modules

        class Impostor(DistillationLoss):
            name = "kd"

        try:
            register_loss(Impostor)
        except ValueError as error:
            assert "already registered" in str(error)
        else:
            raise AssertionError("a second 'kd' was accepted")
        assert list_losses() == ["amd", "at", "ce", "fitnet", "kd", "pkt", "rkd", "sp"]
        """
    )
