"""Transfer measures (kd_core.analysis.transfer) on maps whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.transfer import transfer_measures
from kd_core.losses.amd import attention_map

N, SIDE = 6, 8


def make_set(name, attention, masks=None):
    return FeatureSet(
        name=name, arch="test", indices=torch.arange(N), labels=torch.arange(N) % 2,
        logits=torch.zeros(N, 2), pooled=torch.ones(N, 3), attention=attention, masks=masks,
    )  # fmt: skip


def object_masks() -> torch.Tensor:
    """A 2 x 2 object in the top-left corner of an 8 x 8 image (the deepest maps' grid)."""
    masks = torch.zeros(N, SIDE, SIDE, dtype=torch.bool)
    masks[:, :2, :2] = True
    return masks


def maps(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer1": attention_map(torch.randn(N, 4, 16, 16, generator=generator)),
        "layer3": attention_map(torch.randn(N, 4, SIDE, SIDE, generator=generator)),
    }


def test_a_student_equal_to_its_teacher_took_everything():
    teacher = make_set("teacher", maps(0), object_masks())
    student = make_set("student", maps(0), object_masks())
    measures = transfer_measures(teacher, student)
    assert measures.stage == measures.teacher_stage == "layer3"
    assert measures.split == "mask"
    assert measures.attention_cosine == pytest.approx(1.0, abs=1e-6)
    assert measures.theta_distance_deg == pytest.approx(0.0, abs=1e-9)
    assert measures.separation == pytest.approx(measures.teacher_separation)
    assert measures.mass_inside == pytest.approx(measures.teacher_mass_inside)


def test_mass_inside_and_separation_of_known_maps():
    inside = torch.zeros(N, SIDE, SIDE)
    inside[:, :2, :2] = 0.5  # all the mass on the object's four cells, unit norm
    uniform = torch.full((N, SIDE, SIDE), 1.0 / SIDE)
    teacher = make_set("teacher", {"layer3": inside}, object_masks())
    student = make_set("student", {"layer3": uniform}, object_masks())
    measures = transfer_measures(teacher, student)
    assert measures.teacher_mass_inside == pytest.approx(1.0)
    assert measures.mass_inside == pytest.approx(4 / 64)  # the object's area share
    assert measures.separation == pytest.approx(0.0, abs=1e-9)  # one angle everywhere
    assert measures.teacher_separation == math.inf or measures.teacher_separation > 10
    assert measures.attention_cosine == pytest.approx(4 * 0.5 / SIDE)
    # theta of the teacher: 60° on 4 cells, 90° on 60; the student's: arccos(1/8) everywhere
    uniform_deg = math.degrees(math.acos(1 / SIDE))
    expected = (4 * abs(60 - uniform_deg) + 60 * abs(90 - uniform_deg)) / 64
    assert measures.theta_distance_deg == pytest.approx(expected, abs=0.01)


def test_without_masks_the_teacher_picks_the_positives():
    teacher = make_set("teacher", maps(0))
    student = make_set("student", maps(1))
    measures = transfer_measures(teacher, student, stage="layer1")
    assert measures.split == "teacher_topk"
    assert measures.mass_inside is None and measures.teacher_mass_inside is None
    assert measures.stage == "layer1"
    assert 0 < measures.attention_cosine < 1
    assert measures.as_dict()["theta_distance_deg"] > 0


def test_an_unknown_stage_is_named():
    teacher = make_set("teacher", maps(0))
    with pytest.raises(AnalysisError, match=r"no stage 'layer9'.*layer1, layer3"):
        transfer_measures(teacher, make_set("student", maps(1)), stage="layer9")
