r"""Does the student look where the teacher looks? Agreement of two sets of maps, and of a map
with the object mask.

Maps are ``B x H x W``, non-negative (attribution maps, AMD attention maps ``q``); sample ``i``
of the teacher is compared with sample ``i`` of the student. Every measure is per sample; the
``mean()`` of a result averages over samples. With ``t, s`` the two maps of one sample, flattened
to ``N = H W`` positions:

* difference: :math:`\hat s - \hat t` with :math:`\hat x = x / \max x` (the normalisation of
  :func:`~kd_core.analysis.attribution.normalize_maps`), in ``[-1, 1]``; positive where the
  student attends more.
* cosine: :math:`\langle t, s \rangle / (\lVert t \rVert \lVert s \rVert)`, in ``[0, 1]`` for
  non-negative maps.
* rank correlation (Spearman): the Pearson correlation of the positions' ranks (ties get their
  average rank), in ``[-1, 1]``: do both maps order the positions the same way?
* top-k IoU: :math:`|T_k \cap S_k| / |T_k \cup S_k|` of the top regions (:func:`top_region`,
  the ``k = 20%`` most attended positions by default).

With an object mask ``M`` (one map at a time): the share of the map's mass inside the mask,
:math:`\sum_{M} x / \sum x` (a uniform map scores the mask's area fraction, a map inside the
mask 1), and the IoU of the map's top region with the mask.

Degenerate maps get a defined value, never NaN: an all-zero map has no direction, so its
cosine is 1 with another all-zero map and 0 otherwise; a constant map has no ranking, so its
rank correlation is 1 with another constant map and 0 otherwise; two empty regions (only
all-zero maps have one) have IoU 1; an all-zero map's mass inside the mask is the mask's area
fraction, as for a uniform map.

Maps of different sizes are compared at the smaller size: the larger map is average-pooled
(:func:`kd_core.losses.validation.align_spatial`, what AMD's ``align=True`` does). Against a
mask, the map is resized bilinearly to the mask's size, so the mask keeps its exact outline.

Example::

    agreement = compare_maps(teacher_maps, student_maps)          # MapAgreement
    agreement.mean()    # {"cosine": 0.93, "rank_correlation": 0.88, "top_iou": 0.61}
    compare_with_mask(student_maps, dataset.masks[:B]).mean()["mass_inside"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.analysis.attribution import normalize_maps
from kd_core.analysis.errors import AnalysisError
from kd_core.losses.validation import align_spatial

DEFAULT_TOP_FRACTION = 0.2
"""Share of positions in a map's top region (the most attended 20%)."""


@dataclass(frozen=True)
class MapAgreement:
    """Teacher vs student, per sample.

    Attributes:
        difference: ``B x H x W`` student minus teacher, both divided by their maximum.
        cosine: ``B`` cosine similarities.
        rank_correlation: ``B`` Spearman rank correlations.
        top_iou: ``B`` IoUs of the two top regions.
        top_fraction: the share of positions in a top region.
    """

    difference: Tensor
    cosine: Tensor
    rank_correlation: Tensor
    top_iou: Tensor
    top_fraction: float

    def mean(self) -> dict[str, float]:
        """Each measure averaged over the samples."""
        return _means(
            cosine=self.cosine, rank_correlation=self.rank_correlation, top_iou=self.top_iou
        )


@dataclass(frozen=True)
class MaskAgreement:
    """One set of maps against the object masks, per sample.

    Attributes:
        mass_inside: ``B`` share of each map's mass inside the mask.
        top_iou: ``B`` IoU of each map's top region with the mask.
        mask_fraction: ``B`` area fraction of each mask: the ``mass_inside`` of a uniform map
            (chance level).
        top_fraction: the share of positions in a top region.
    """

    mass_inside: Tensor
    top_iou: Tensor
    mask_fraction: Tensor
    top_fraction: float

    def mean(self) -> dict[str, float]:
        """Each measure averaged over the samples."""
        return _means(
            mass_inside=self.mass_inside, top_iou=self.top_iou, mask_fraction=self.mask_fraction
        )


def _means(**values: Tensor) -> dict[str, float]:
    return {name: float(value.double().mean()) for name, value in values.items()}


# ---------------------------------------------------------------- checks


def _maps(name: str, maps: object) -> Tensor:
    """``maps`` as a float64 ``B x H x W`` tensor, checked: non-empty, finite, non-negative."""
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, Tensor) or maps.dim() != 3 or 0 in maps.shape:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise AnalysisError(
            f"{name} must be a non-empty B x H x W tensor of maps, got {shape}; add a batch "
            "dimension with map[None] for a single map."
        )
    maps = maps.detach().cpu().double()
    if not bool(torch.isfinite(maps).all()):
        raise AnalysisError(f"{name} contain NaN or infinite values; pass finite maps.")
    if bool((maps < 0).any()):
        raise AnalysisError(
            f"{name} have negative values (min {float(maps.min()):.3g}); pass non-negative "
            "maps, e.g. from attribution_maps or AMD attention maps."
        )
    return maps


def _pair(teacher: object, student: object) -> tuple[Tensor, Tensor]:
    """Checked teacher and student maps, at the smaller of the two sizes."""
    teacher, student = _maps("teacher maps", teacher), _maps("student maps", student)
    if len(teacher) != len(student):
        raise AnalysisError(
            f"Got {len(teacher)} teacher maps and {len(student)} student maps; compare the "
            "same samples of both models."
        )
    if teacher.shape != student.shape:
        student, teacher = align_spatial(student.unsqueeze(1), teacher.unsqueeze(1))
        student, teacher = student.squeeze(1), teacher.squeeze(1)
    return teacher, student


def _fraction(top_fraction: float) -> float:
    valid = isinstance(top_fraction, (int, float)) and not isinstance(top_fraction, bool)
    if not valid or not 0.0 < top_fraction <= 1.0:
        raise AnalysisError(
            f"top_fraction must be a number in (0, 1] (0.2 = the top 20% of positions), got "
            f"{top_fraction!r}."
        )
    return float(top_fraction)


# ---------------------------------------------------------------- measures


def difference_map(teacher: Tensor, student: Tensor) -> Tensor:
    """``B x H x W`` float32: student minus teacher, each divided by its maximum, in [-1, 1]
    (at the smaller size when the sizes differ)."""
    teacher, student = _pair(teacher, student)
    return (normalize_maps(student) - normalize_maps(teacher)).float()


def cosine_similarity(teacher: Tensor, student: Tensor) -> Tensor:
    """``B`` float32 cosines of the flattened maps; 1 when both are all zero, 0 when one is."""
    teacher, student = _pair(teacher, student)
    t, s = teacher.flatten(1), student.flatten(1)
    t_norm, s_norm = t.norm(dim=1), s.norm(dim=1)
    both_zero = (t_norm == 0) & (s_norm == 0)
    cosine = (t * s).sum(dim=1) / (t_norm * s_norm).clamp_min(torch.finfo(t.dtype).tiny)
    return torch.where(both_zero, 1.0, cosine).clamp(-1.0, 1.0).float()


def rank_correlation(teacher: Tensor, student: Tensor) -> Tensor:
    """``B`` float32 Spearman correlations (Pearson of average ranks); 1 when both maps are
    constant, 0 when one is.

    >>> t = torch.tensor([[[0.1, 0.2, 0.4]]])
    >>> rank_correlation(t, t ** 2).item(), rank_correlation(t, 1 - t).item()
    (1.0, -1.0)
    """
    from scipy.stats import rankdata  # here: scipy.stats takes ~0.5 s to import, and the
    # trainer (hence every page's import of the run manager) needs only the cosine of this module

    teacher, student = _pair(teacher, student)
    ranks = [rankdata(maps.flatten(1).numpy(), axis=1) for maps in (teacher, student)]
    t, s = (r - r.mean(axis=1, keepdims=True) for r in ranks)
    t_norm, s_norm = np.linalg.norm(t, axis=1), np.linalg.norm(s, axis=1)
    correlation = (t * s).sum(axis=1) / np.maximum(t_norm * s_norm, np.finfo(np.float64).tiny)
    correlation = np.where((t_norm == 0) & (s_norm == 0), 1.0, correlation)
    return torch.from_numpy(np.clip(correlation, -1.0, 1.0)).float()


def top_region(maps: Tensor, top_fraction: float = DEFAULT_TOP_FRACTION) -> Tensor:
    """``B x H x W`` bool: the positions whose value is positive and at least the
    ``ceil(top_fraction * H * W)``-th largest value of their map.

    Ties at that value are all kept, so a map with many equal values can have a larger
    region (a constant positive map: all of it); an all-zero map has an empty region.

    >>> top_region(torch.tensor([[[0.0, 0.1, 0.9, 0.5]]]), 0.5).tolist()
    [[[False, False, True, True]]]
    """
    maps = _maps("maps", maps)
    top_fraction = _fraction(top_fraction)
    flat = maps.flatten(1)
    count = math.ceil(top_fraction * flat.shape[1])
    threshold = flat.topk(count, dim=1).values[:, -1]
    return ((flat >= threshold[:, None]) & (flat > 0)).view_as(maps)


def region_iou(first: Tensor, second: Tensor) -> Tensor:
    """``B`` float32 intersection over union of two ``B x H x W`` bool regions; 1 when both are
    empty."""
    first, second = first.flatten(1).bool(), second.flatten(1).bool()
    intersection = (first & second).sum(dim=1)
    union = (first | second).sum(dim=1)
    return torch.where(union == 0, 1.0, intersection / union.clamp_min(1)).float()


def _on_masks(maps: object, masks: object) -> tuple[Tensor, Tensor]:
    """Checked maps resized (bilinearly) to the size of the checked bool masks."""
    maps = _maps("maps", maps)
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(masks)
    if not isinstance(masks, Tensor) or masks.dim() != 3 or len(masks) != len(maps):
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise AnalysisError(
            f"masks must be a B x H x W tensor with one mask per map ({len(maps)}), got "
            f"{shape}; select the masks of the same samples."
        )
    masks = masks.detach().cpu().bool()
    if maps.shape[1:] != masks.shape[1:]:
        resized = F.interpolate(
            maps.unsqueeze(1), masks.shape[1:], mode="bilinear", align_corners=False, antialias=True
        )
        maps = resized.squeeze(1).clamp_min(0.0)
    return maps, masks


def mass_inside(maps: Tensor, masks: Tensor) -> Tensor:
    """``B`` float32 share of each map's mass inside its mask, ``sum(x * M) / sum(x)``; an
    all-zero map scores the mask's area fraction (as a uniform map does)."""
    maps, masks = _on_masks(maps, masks)
    flat, inside = maps.flatten(1), masks.flatten(1).double()
    total = flat.sum(dim=1)
    share = (flat * inside).sum(dim=1) / total.clamp_min(torch.finfo(flat.dtype).tiny)
    return torch.where(total == 0, inside.mean(dim=1), share).float()


def compare_maps(
    teacher: Tensor, student: Tensor, *, top_fraction: float = DEFAULT_TOP_FRACTION
) -> MapAgreement:
    """Difference map, cosine, rank correlation and top-region IoU of teacher and student
    maps (``B x H x W`` each, same samples in the same order).

    Raises:
        AnalysisError: maps not ``B x H x W``, negative or non-finite, different sample
            counts, ``top_fraction`` outside ``(0, 1]``.
    """
    teacher, student = _pair(teacher, student)
    top_fraction = _fraction(top_fraction)
    return MapAgreement(
        difference=difference_map(teacher, student),
        cosine=cosine_similarity(teacher, student),
        rank_correlation=rank_correlation(teacher, student),
        top_iou=region_iou(top_region(teacher, top_fraction), top_region(student, top_fraction)),
        top_fraction=top_fraction,
    )


def compare_with_mask(
    maps: Tensor, masks: Tensor, *, top_fraction: float = DEFAULT_TOP_FRACTION
) -> MaskAgreement:
    """Mass inside the mask and top-region IoU with the mask, for ``B x H x W`` maps and
    ``B x H' x W'`` bool masks (maps are resized bilinearly to the masks' size).

    Raises:
        AnalysisError: maps or masks malformed, a mask count different from the map count,
            ``top_fraction`` outside ``(0, 1]``.
    """
    maps, masks = _on_masks(maps, masks)
    top_fraction = _fraction(top_fraction)
    return MaskAgreement(
        mass_inside=mass_inside(maps, masks),
        top_iou=region_iou(top_region(maps, top_fraction), masks),
        mask_fraction=masks.flatten(1).float().mean(dim=1),
        top_fraction=top_fraction,
    )
