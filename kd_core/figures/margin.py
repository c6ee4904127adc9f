r"""The geometry of the angular margin: where AMD puts the positive/negative boundary.

Every entry ``q`` of an AMD attention map is the cosine of an angle :math:`\theta \in [0°, 90°]`.
The loss compares :math:`\mathrm{pos} = s\cos(m\theta)` with :math:`\mathrm{neg} = s(1 - q)`;
a position is *positive* where ``pos > neg``. With no margin (``m = 1``) the boundary is at
:math:`\cos\theta = 1/2`, i.e. 60°; a margin ``m > 1`` moves it to smaller angles, so fewer,
more strongly attended positions count as positive. The attentive weight
:math:`e^{\mathrm{amd}} = \sigma(\mathrm{pos} - \mathrm{neg})` is a soft step at that boundary,
sharper for a larger scale ``s``.

The values follow :func:`kd_core.losses.amd.angular_terms`, the function the loss itself uses,
written again in NumPy float64 (same clamp of ``q``, same softplus threshold) so that the app's
home page draws this figure before torch has loaded; a test holds the two to 1e-12 on a grid of
margins and scales, so the figure cannot drift from the loss.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from kd_core.figures.style import BLUE as _BLUE
from kd_core.figures.style import GREEN as _GREEN
from kd_core.figures.style import ORANGE as _ORANGE
from kd_core.figures.svg_chart import Axis, Line, Panel, VerticalLine, line_chart_svg
from kd_core.losses.amd_constants import ARCCOS_EPS, DEFAULT_SCALE

SOFTPLUS_THRESHOLD = 20.0
"""Above this, ``torch.nn.functional.softplus(x)`` returns ``x`` itself (its default)."""

THETA_AXIS_TITLE = "angle θ between attention vector and position axis (degrees)"
FEATURE_AXIS_TITLE = "feature / s (dimensionless)"
WEIGHT_AXIS_TITLE = "σ(pos − neg) (weight, 0 to 1)"


@dataclass(frozen=True)
class MarginCurves:
    """The AMD terms along the angle grid ``theta_deg``, for one margin and scale.

    Attributes:
        margin: the angular margin ``m``.
        scale: the scale ``s``.
        theta_deg: the angle grid in degrees, from 0 to 90 inclusive.
        cos_margin: ``pos / s = cos(m * theta)``.
        one_minus_cos: ``neg / s = 1 - cos(theta)``.
        weight: ``exp(amd) = sigmoid(pos - neg)``, the attentive weight in ``(0, 1)``.
    """

    margin: float
    scale: float
    theta_deg: np.ndarray
    cos_margin: np.ndarray
    one_minus_cos: np.ndarray
    weight: np.ndarray


def _require_positive(name: str, value: object, hint: str) -> float:
    """``value`` as a float if it is a finite real number > 0, otherwise a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0 ({hint}), got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0 ({hint}), got {number}.")
    return number


def _require_margin(margin: object) -> float:
    return _require_positive("margin", margin, "1 means no margin; the paper uses 1.35")


def _require_scale(scale: object) -> float:
    return _require_positive("scale", scale, "the paper uses 64")


def angular_terms(
    q: np.ndarray, margin: float, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(pos, neg, amd)`` of the loss for the attention entries ``q``, in NumPy float64:
    :math:`\theta = \arccos q` (``q`` clamped to ``1 - 10^{-7}``), :math:`\mathrm{pos} =
    s\cos(m\theta)`, :math:`\mathrm{neg} = s(1 - q)`, :math:`\mathrm{amd} =
    -\operatorname{softplus}(\mathrm{neg} - \mathrm{pos})`, as
    :func:`kd_core.losses.amd.angular_terms` computes them (no checks: callers check)."""
    q = np.asarray(q, dtype=np.float64)
    theta = np.arccos(np.clip(q, -1.0 + ARCCOS_EPS, 1.0 - ARCCOS_EPS))
    pos = scale * np.cos(margin * theta)
    neg = scale * (1.0 - q)
    gap = neg - pos
    softplus = np.where(
        gap > SOFTPLUS_THRESHOLD, gap, np.log1p(np.exp(np.minimum(gap, SOFTPLUS_THRESHOLD)))
    )
    return pos, neg, -softplus


def margin_curves(margin: float, scale: float = DEFAULT_SCALE, num: int = 361) -> MarginCurves:
    """``pos / s``, ``neg / s`` and ``exp(amd)`` on ``num`` angles from 0° to 90°.

    The values are computed by :func:`angular_terms` from ``q = cos(theta)`` in float64, as the
    loss computes them (including its clamp of
    ``q`` to ``1 - 1e-7``, which only moves the point at 0° by about 0.03°).

    Raises:
        ValueError: if ``margin`` or ``scale`` is not a finite number > 0, or ``num`` is not an
            integer >= 2.
    """
    margin, scale = _require_margin(margin), _require_scale(scale)
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 2:
        raise ValueError(f"num (the number of angles) must be an integer >= 2, got {num!r}.")
    theta_deg = np.linspace(0.0, 90.0, int(num))
    pos, neg, attentive = angular_terms(np.cos(np.deg2rad(theta_deg)), margin, scale)
    return MarginCurves(
        margin=margin,
        scale=scale,
        theta_deg=theta_deg,
        cos_margin=pos / scale,
        one_minus_cos=neg / scale,
        weight=np.exp(attentive),
    )


def _pos_minus_neg(theta_rad: float, margin: float) -> float:
    """``pos - neg`` at one angle, from the loss's own formula (``s = 1``: the sign is all that
    matters, and it does not depend on ``s``)."""
    pos, neg, _ = angular_terms(np.array(math.cos(theta_rad)), margin, 1.0)
    return float(pos - neg)


def boundary_angle(margin: float) -> float:
    """The angle in degrees where ``cos(m * theta) = 1 - cos(theta)``: positions at a smaller
    angle are positive (``pos > neg``), those at a larger one negative.

    ``m = 1`` gives 60°; the angle decreases as the margin grows (about 50.7° for ``m = 1.35``)
    and approaches 90° as ``m`` goes to 0 (it is 90.0 once ``cos(m * 90°)`` rounds to 1,
    ``m`` below about 1e-8). Solved by bisection on ``pos - neg`` computed by
    :func:`angular_terms`. On ``[0, 90° / max(m, 1)]`` the difference is
    strictly decreasing, positive at 0 and negative at the right end, so the root found is the
    first (for ``m > 2`` the cosine oscillates and later crossings exist, but only the first
    separates the strongly attended positions from the rest).

    Raises:
        ValueError: if ``margin`` is not a finite number > 0, or so large (about 3500) that the
            loss counts even ``q = 1`` as negative.
    """
    return _boundary_angle(_require_margin(margin))


@functools.lru_cache(maxsize=256)
def _boundary_angle(margin: float) -> float:
    """:func:`boundary_angle` of a checked margin, remembered (about 55 bisection steps of the
    loss's formula, asked for by every figure and page that draws a boundary)."""
    lo, hi = 0.0, math.pi / (2.0 * max(margin, 1.0))
    if _pos_minus_neg(lo, margin) <= 0.0:
        raise ValueError(
            f"margin {margin} is too large: the loss counts every position as negative "
            "(pos <= neg even at theta = 0); use a margin below about 3500."
        )
    for _ in range(200):  # stops once the interval cannot shrink (about 55 halvings)
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if _pos_minus_neg(mid, margin) > 0.0:
            lo = mid
        else:
            hi = mid
    return math.degrees(0.5 * (lo + hi))


def _fmt(value: float) -> str:
    return f"{value:g}"


def margin_figure(margin: float, scale: float = DEFAULT_SCALE) -> str:
    """Two stacked panels sharing the angle axis (0° to 90°), as SVG text
    (:func:`~kd_core.figures.svg_chart.line_chart_svg`).

    Top: ``cos(m theta)`` (``pos / s``) for ``margin`` and for ``m = 1`` (dashed, reference),
    and ``1 - cos(theta)`` (``neg / s``), with the two boundary angles as vertical lines.
    Bottom: the attentive weight ``sigmoid(pos - neg) = exp(amd)`` for both margins at scale
    ``scale``.

    Raises:
        ValueError: if ``margin`` or ``scale`` is not a finite number > 0.
    """
    margin, scale = _require_margin(margin), _require_scale(scale)
    chosen = margin_curves(margin, scale)
    reference = margin_curves(1.0, scale)
    chosen_boundary = boundary_angle(margin)
    reference_boundary = boundary_angle(1.0)
    m = _fmt(margin)
    theta = chosen.theta_deg

    # Boundary lines on both panels, labelled once (top panel). The label of the smaller angle
    # sits left of its line, the other right of its line, so the two never overlap.
    same = abs(chosen_boundary - reference_boundary) < 1e-9
    boundaries = [(chosen_boundary, _BLUE, f"m = {m}: {chosen_boundary:.1f}°")]
    if not same:
        boundaries.append((reference_boundary, _ORANGE, f"m = 1: {reference_boundary:.1f}°"))
    smallest = min(b for b, _, _ in boundaries)
    side = {
        angle: "left" if angle == smallest and not same else "right" for angle, _, _ in boundaries
    }
    labelled = [
        VerticalLine(angle, colour, f"boundary {label}", side[angle])
        for angle, colour, label in boundaries
    ]
    plain = [VerticalLine(angle, colour) for angle, colour, _ in boundaries]

    top = Panel(
        title="pos / s = cos(mθ) against neg / s = 1 − cos θ",
        y_title=FEATURE_AXIS_TITLE,
        y_range=(-1.05, 1.05),
        y_ticks=(-1.0, -0.5, 0.0, 0.5, 1.0),
        height=300,
        lines=(
            Line(theta, chosen.cos_margin, f"cos(mθ), m = {m} (pos / s)", _BLUE),
            Line(theta, reference.cos_margin, "cos(θ), m = 1 (reference)", _ORANGE, dashed=True),
            Line(theta, chosen.one_minus_cos, "1 − cos(θ) (neg / s)", _GREEN),
        ),
        verticals=labelled,
    )
    bottom = Panel(
        title=f"attentive weight exp(amd) = σ(pos − neg), scale s = {_fmt(scale)}",
        y_title=WEIGHT_AXIS_TITLE,
        y_range=(-0.05, 1.05),
        y_ticks=(0.0, 0.25, 0.5, 0.75, 1.0),
        height=190,
        lines=(
            Line(theta, chosen.weight, f"σ(pos − neg), m = {m}", _BLUE),
            Line(theta, reference.weight, "σ(pos − neg), m = 1 (reference)", _ORANGE, dashed=True),
        ),
        verticals=plain,
    )
    title = f"Angular margin m = {m}: positions with θ below {chosen_boundary:.1f}° count as "
    title += (
        "positive (pos > neg), as without a margin"
        if same
        else f"positive (pos > neg); without a margin, below {reference_boundary:.1f}°"
    )
    axis = Axis((0.0, 90.0), ticks=range(0, 91, 15), title=THETA_AXIS_TITLE, tick_suffix="°")
    return line_chart_svg(title, axis, (top, bottom))
