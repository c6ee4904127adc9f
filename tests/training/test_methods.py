"""Named methods and method sets (kd_core.training.methods)."""

from __future__ import annotations

import pytest

from kd_core.losses import Objective
from kd_core.training.methods import METHOD_SETS, METHODS, method_set


def test_sets_name_registered_methods_and_the_classroom_starts_from_training_alone():
    assert all(name in METHODS for names in METHOD_SETS.values() for name in names)
    assert method_set("classroom") == ["vanilla", "kd", "at", "amd"]
    assert method_set("paper") == ["kd", "at", "amd", "amd_local", "amd_kd"]
    assert method_set(" vanilla, amd ") == ["vanilla", "amd"]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_builds_its_objective(name):
    method = METHODS[name]
    objective = Objective(method.objective, params=method.params)
    assert objective.needs_teacher == method.uses_teacher == (name != "vanilla")
