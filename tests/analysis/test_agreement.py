"""Teacher/student map agreement (kd_core.analysis.agreement): known answers on constructed
maps, float64 numpy / scipy references, and the values defined for degenerate maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from kd_core.analysis.agreement import (
    compare_maps,
    compare_with_mask,
    cosine_similarity,
    difference_map,
    mass_inside,
    rank_correlation,
    region_iou,
    top_region,
)
from kd_core.analysis.errors import AnalysisError


def _random_maps(count: int = 4, size: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, size, size, generator=generator)


# ---------------------------------------------------------------- teacher vs student


def test_identical_maps_agree_perfectly():
    maps = _random_maps()
    agreement = compare_maps(maps, maps)
    torch.testing.assert_close(agreement.cosine, torch.ones(4))
    torch.testing.assert_close(agreement.rank_correlation, torch.ones(4))
    torch.testing.assert_close(agreement.top_iou, torch.ones(4))
    assert torch.equal(agreement.difference, torch.zeros(4, 6, 6))
    assert agreement.mean() == pytest.approx(
        {"cosine": 1.0, "rank_correlation": 1.0, "top_iou": 1.0}
    )


def test_a_rescaled_copy_agrees_perfectly_and_has_no_difference():
    maps = _random_maps()
    agreement = compare_maps(maps, 3.0 * maps)
    torch.testing.assert_close(agreement.difference, torch.zeros(4, 6, 6), atol=1e-6, rtol=0)
    torch.testing.assert_close(agreement.cosine, torch.ones(4))


def test_difference_is_student_minus_teacher_after_dividing_by_the_peak():
    teacher = torch.tensor([[[1.0, 2.0], [0.0, 4.0]]])
    student = torch.tensor([[[3.0, 0.0], [1.5, 1.5]]])
    expected = torch.tensor([[[1.0 - 0.25, 0.0 - 0.5], [0.5 - 0.0, 0.5 - 1.0]]])
    torch.testing.assert_close(difference_map(teacher, student), expected)
    assert difference_map(teacher, student).dtype == torch.float32


def test_cosine_against_numpy():
    teacher, student = _random_maps(seed=1).double(), _random_maps(seed=2).double()
    t, s = teacher.flatten(1).numpy(), student.flatten(1).numpy()
    expected = (t * s).sum(1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(s, axis=1))
    np.testing.assert_allclose(cosine_similarity(teacher, student).numpy(), expected, rtol=1e-6)


def test_rank_correlation_against_scipy_with_ties():
    teacher = (_random_maps(seed=3) * 4).round()  # values 0..4: many ties
    student = (_random_maps(seed=4) * 4).round()
    expected = [
        spearmanr(t.flatten().numpy(), s.flatten().numpy()).statistic
        for t, s in zip(teacher, student, strict=True)
    ]
    np.testing.assert_allclose(rank_correlation(teacher, student).numpy(), expected, atol=1e-6)


def test_rank_correlation_of_monotone_transforms():
    maps = _random_maps()
    torch.testing.assert_close(rank_correlation(maps, maps.pow(3) + 1.0), torch.ones(4))
    torch.testing.assert_close(rank_correlation(maps, 1.0 - maps), -torch.ones(4))


def test_disjoint_top_regions_have_iou_zero_and_half_overlap_one_third():
    positions = torch.arange(50.0)
    teacher = positions.view(1, 5, 10)  # top 20% = positions 40..49
    student = positions.flip(0).view(1, 5, 10)  # top 20% = positions 0..9
    assert compare_maps(teacher, student).top_iou.tolist() == [0.0]
    shifted = torch.roll(positions, -5).view(1, 5, 10)  # top 20% = positions 35..44
    assert compare_maps(teacher, shifted).top_iou.item() == pytest.approx(5 / 15)


def test_top_region_size_ties_and_zero_maps():
    maps = _random_maps(count=3, size=7)  # distinct values
    region = top_region(maps, 0.2)
    assert region.dtype == torch.bool
    assert region.flatten(1).sum(1).tolist() == [math.ceil(0.2 * 49)] * 3
    threshold = maps.flatten(1).sort(dim=1, descending=True).values[:, 9]
    assert bool((maps[region] >= threshold.repeat_interleave(10)).all())
    constant, zero = torch.full((1, 4, 4), 0.3), torch.zeros(1, 4, 4)
    assert bool(top_region(constant).all())  # every position ties with the threshold
    assert not bool(top_region(zero).any())  # nothing is attended
    gradcam_like = torch.zeros(1, 4, 4)
    gradcam_like[0, 0, :2] = 1.0  # 2 positive positions, fewer than 20% of 16 = 4
    assert top_region(gradcam_like).sum().item() == 2


def test_region_iou():
    first = torch.tensor([[True, True, False, False], [False, False, False, False]])
    second = torch.tensor([[False, True, True, False], [False, False, False, False]])
    torch.testing.assert_close(region_iou(first, second), torch.tensor([1 / 3, 1.0]))


def test_constant_and_zero_maps_get_defined_values_not_nan():
    constant, zero, varied = torch.full((1, 3, 3), 0.5), torch.zeros(1, 3, 3), _random_maps(1, 3)
    assert rank_correlation(constant, constant * 2).item() == 1.0
    assert rank_correlation(constant, varied).item() == 0.0
    assert cosine_similarity(zero, zero).item() == 1.0
    assert cosine_similarity(zero, varied).item() == 0.0
    agreement = compare_maps(torch.cat([constant, zero]), torch.cat([varied, zero]))
    for value in agreement.mean().values():
        assert math.isfinite(value)
    assert agreement.top_iou[1].item() == 1.0  # two empty regions


def test_maps_of_different_sizes_are_compared_at_the_smaller_size():
    teacher = torch.arange(16.0).view(1, 4, 4)
    student = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    pooled = teacher.view(1, 2, 2, 2, 2).mean(dim=(2, 4))  # 2 x 2 average pool
    expected = student / student.max() - pooled / pooled.max()
    torch.testing.assert_close(difference_map(teacher, student), expected)
    torch.testing.assert_close(difference_map(student, teacher), -expected)


def test_means_average_the_samples():
    teacher, student = _random_maps(seed=5), _random_maps(seed=6)
    agreement = compare_maps(teacher, student, top_fraction=0.3)
    assert agreement.top_fraction == 0.3
    for name, value in agreement.mean().items():
        assert value == pytest.approx(getattr(agreement, name).double().mean().item())


# ---------------------------------------------------------------- against the object mask


def _mask() -> torch.Tensor:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:6, 1:4] = True  # 12 of 64 positions
    return mask


def test_a_map_inside_the_mask_has_all_its_mass_inside():
    mask = _mask()
    maps = torch.rand(1, 8, 8) * mask
    assert mass_inside(maps, mask).item() == pytest.approx(1.0)


def test_uniform_and_zero_maps_score_the_mask_area_fraction():
    mask = _mask()
    for maps in (torch.full((1, 8, 8), 0.7), torch.zeros(1, 8, 8)):
        assert mass_inside(maps, mask).item() == pytest.approx(12 / 64)
    agreement = compare_with_mask(torch.full((1, 8, 8), 0.7), mask)
    assert agreement.mask_fraction.item() == pytest.approx(12 / 64)


def test_mass_inside_against_numpy():
    maps, masks = _random_maps(3, 8, seed=7), torch.rand(3, 8, 8) > 0.6
    m, k = maps.double().numpy(), masks.numpy()
    expected = (m * k).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    np.testing.assert_allclose(mass_inside(maps, masks).numpy(), expected, rtol=1e-6)


def test_top_region_equal_to_the_mask_has_iou_one():
    mask = _mask()
    maps = mask.float() + 0.01  # the mask's 12 positions tie at the top; 20% of 64 = 13
    agreement = compare_with_mask(maps, mask, top_fraction=12 / 64)
    assert agreement.top_iou.item() == pytest.approx(1.0)
    assert agreement.mean()["mass_inside"] == pytest.approx(12 * 1.01 / (12 * 1.01 + 52 * 0.01))


def test_coarse_maps_are_resized_to_the_mask():
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, :16] = True
    uniform = torch.full((1, 8, 8), 0.2)
    assert mass_inside(uniform, mask).item() == pytest.approx(0.5)
    top_half = torch.zeros(1, 8, 8)
    top_half[0, :4] = 1.0  # bilinear resizing blurs one row of cells across the edge
    assert mass_inside(top_half, mask).item() > 0.9


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("teacher", "student", "match"),
    [
        (torch.rand(2, 4, 4), torch.rand(3, 4, 4), "same samples"),
        (torch.rand(4, 4), torch.rand(4, 4), "B x H x W"),
        (torch.rand(0, 4, 4), torch.rand(0, 4, 4), "non-empty"),
        (-torch.rand(1, 4, 4), torch.rand(1, 4, 4), "negative"),
        (torch.full((1, 4, 4), math.nan), torch.rand(1, 4, 4), "NaN"),
        ([[0.0]], torch.rand(1, 4, 4), "B x H x W"),
    ],
)
def test_bad_maps(teacher, student, match):
    with pytest.raises(AnalysisError, match=match):
        compare_maps(teacher, student)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, math.nan, "0.2", True])
def test_bad_top_fraction(fraction):
    with pytest.raises(AnalysisError, match="top_fraction"):
        compare_maps(torch.rand(1, 4, 4), torch.rand(1, 4, 4), top_fraction=fraction)


def test_bad_masks():
    with pytest.raises(AnalysisError, match="one mask per map"):
        compare_with_mask(torch.rand(2, 8, 8), torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(AnalysisError, match="one mask per map"):
        compare_with_mask(torch.rand(1, 8, 8), torch.ones(8, 8, dtype=torch.bool))
