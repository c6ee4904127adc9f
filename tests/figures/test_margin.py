"""The margin geometry (kd_core.figures.margin) against independent numpy transcriptions."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from kd_core.figures.margin import (
    FEATURE_AXIS_TITLE,
    THETA_AXIS_TITLE,
    WEIGHT_AXIS_TITLE,
    angular_terms,
    boundary_angle,
    margin_curves,
    margin_figure,
)
from kd_core.losses import amd
from tests.figures.test_svg_chart import SVG, polylines, texts

BAD_NUMBERS = [0.0, -1.0, -0.5, math.nan, math.inf, -math.inf, True, "1.35", None]


def _expected(margin: float, scale: float, num: int) -> dict[str, np.ndarray]:
    """The AMD terms from the spec, written independently in numpy float64: q = cos(theta),
    theta' = arccos(clip(q, -1 + 1e-7, 1 - 1e-7)), pos = s cos(m theta'), neg = s (1 - q)."""
    theta = np.deg2rad(np.linspace(0.0, 90.0, num))
    q = np.cos(theta)
    clamped = np.arccos(np.clip(q, -1.0 + 1e-7, 1.0 - 1e-7))
    pos = scale * np.cos(margin * clamped)
    neg = scale * (1.0 - q)
    return {
        "theta": theta,
        "cos_margin": np.cos(margin * clamped),
        "one_minus_cos": 1.0 - q,
        "weight": 1.0 / (1.0 + np.exp(-(pos - neg))),
    }


@pytest.mark.parametrize("margin", [0.5, 1.0, 1.35, 2.5, 7.0])
@pytest.mark.parametrize("scale", [1.0, 16.0, 64.0, 128.0])
def test_the_figures_numpy_terms_are_the_losss(margin, scale):
    """The figure's NumPy transcription (drawn before torch loads) against the loss's own
    ``angular_terms`` in float64, on every q from 0 to 1 (the ends, where the clamp acts, and
    gaps beyond softplus's threshold included)."""
    q = np.concatenate([np.linspace(0.0, 1.0, 2001), [1.0 - 1e-9, 1e-9]])
    pos, neg, attentive = angular_terms(q, margin, scale)
    terms = amd.angular_terms(torch.from_numpy(q), margin=margin, scale=scale)
    for ours, theirs in ((pos, terms.pos), (neg, terms.neg), (attentive, terms.attentive)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)
    if scale >= 64.0 and margin >= 1.0:  # softplus's threshold is crossed, and was compared
        assert (neg - pos).max() > 20.0


def test_boundary_without_margin_is_60_degrees():
    assert boundary_angle(1.0) == pytest.approx(60.0, abs=1e-9)
    assert boundary_angle(1) == pytest.approx(60.0, abs=1e-9)


@pytest.mark.parametrize("margin", [0.5, 1.0, 1.2, 1.35, 2.0, 2.5, 3.7])
def test_boundary_solves_the_equation(margin):
    t = math.radians(boundary_angle(margin))
    assert 0.0 < t < math.pi / 2
    assert math.cos(margin * t) == pytest.approx(1.0 - math.cos(t), abs=1e-12)
    # It is the first crossing: pos > neg just before it, pos < neg just after.
    assert math.cos(margin * (t - 1e-6)) > 1.0 - math.cos(t - 1e-6)
    assert math.cos(margin * (t + 1e-6)) < 1.0 - math.cos(t + 1e-6)
    grid = np.linspace(0.0, t, 2001)[:-1]
    assert np.all(np.cos(margin * grid) > 1.0 - np.cos(grid))


def test_boundary_decreases_as_the_margin_grows():
    margins = [0.5, 1.0, 1.1, 1.35, 1.5, 2.0, 2.5]
    angles = [boundary_angle(m) for m in margins]
    assert np.all(np.diff(angles) < 0), angles
    assert boundary_angle(1.35) < 60.0
    assert boundary_angle(0.5) > 60.0


@pytest.mark.parametrize(("margin", "scale"), [(1.0, 64.0), (1.35, 64.0), (2.5, 8.0), (0.7, 1.0)])
def test_curves_match_numpy_transcription(margin, scale):
    num = 181
    curves = margin_curves(margin, scale, num=num)
    expected = _expected(margin, scale, num)
    assert curves.theta_deg.shape == (num,)
    assert curves.theta_deg[0] == 0.0
    assert curves.theta_deg[-1] == 90.0
    for name in ("cos_margin", "one_minus_cos", "weight"):
        actual = getattr(curves, name)
        assert actual.dtype == np.float64, name
        np.testing.assert_allclose(actual, expected[name], rtol=0.0, atol=1e-9, err_msg=name)
    # Small weights (down to about 1e-43 here) agree relatively, not only absolutely.
    np.testing.assert_allclose(curves.weight, expected["weight"], rtol=1e-8, atol=0.0)


def test_curves_are_cos_m_theta_away_from_the_clamp():
    """The clamp of q to 1 - 1e-7 only affects theta = 0 (about 0.026 degrees)."""
    margin = 1.35
    curves = margin_curves(margin, num=361)
    theta = np.deg2rad(curves.theta_deg)
    np.testing.assert_allclose(curves.cos_margin[1:], np.cos(margin * theta[1:]), atol=1e-9)
    assert curves.cos_margin[0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(curves.one_minus_cos, 1.0 - np.cos(theta), atol=1e-12)


def test_weight_is_a_step_at_the_boundary():
    curves = margin_curves(1.35, 64.0, num=901)
    boundary = boundary_angle(1.35)
    at_boundary = np.interp(boundary, curves.theta_deg, curves.weight)
    assert at_boundary == pytest.approx(0.5, abs=0.05)
    assert np.all(curves.weight[curves.theta_deg < boundary - 5.0] > 0.99)
    assert np.all(curves.weight[curves.theta_deg > boundary + 5.0] < 0.01)


def _boundary_labels(svg: str) -> list[str]:
    return [text for text in texts(svg) if text.startswith("boundary")]


def test_figure_lines_and_axes():
    svg = margin_figure(1.35, 64.0)
    lines = polylines(svg)
    assert list(lines) == [
        "cos(mθ), m = 1.35 (pos / s)",
        "cos(θ), m = 1 (reference)",
        "1 − cos(θ) (neg / s)",
        "σ(pos − neg), m = 1.35",
        "σ(pos − neg), m = 1 (reference)",
    ]
    labels = texts(svg)
    for title in (THETA_AXIS_TITLE, FEATURE_AXIS_TITLE, WEIGHT_AXIS_TITLE):
        assert labels.count(title) == 1, title
    assert "(degrees)" in THETA_AXIS_TITLE
    assert "m = 1.35" in labels[0] and "scale s = 64" in " ".join(labels)
    # The drawn values are the ones margin_curves computes: the top panel spans y in
    # [-1.05, 1.05], so the pixel distance between two of its curves is proportional to theirs.
    curves = margin_curves(1.35, 64.0)
    pos, neg = lines["cos(mθ), m = 1.35 (pos / s)"], lines["1 − cos(θ) (neg / s)"]
    np.testing.assert_array_equal(pos[:, 0], neg[:, 0])
    gap = (neg[:, 1] - pos[:, 1]) / (curves.cos_margin - curves.one_minus_cos + 1e-300)
    away = np.abs(curves.cos_margin - curves.one_minus_cos) > 0.05
    np.testing.assert_allclose(gap[away], gap[away].mean(), rtol=1e-3)
    # The curves cross at the boundary angle.
    x_of = np.interp(boundary_angle(1.35), curves.theta_deg, pos[:, 0])
    crossing = pos[:, 0][np.argmin(np.abs(pos[:, 1] - neg[:, 1]))]
    assert crossing == pytest.approx(x_of, abs=2.5)
    # One dotted vertical line per boundary and panel, labelled on the top panel.
    assert _boundary_labels(svg) == [
        f"boundary m = 1.35: {boundary_angle(1.35):.1f}°",
        "boundary m = 1: 60.0°",
    ]
    verticals = [
        n for n in ET.fromstring(svg).iter(f"{SVG}line") if n.get("stroke-dasharray") == "2 3"
    ]
    assert len(verticals) == 4
    assert sum(abs(float(n.get("x1")) - x_of) < 0.02 for n in verticals) == 2


def test_figure_without_margin_labels_one_boundary():
    assert _boundary_labels(margin_figure(1.0)) == ["boundary m = 1: 60.0°"]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_margin_raises(bad):
    for call in (boundary_angle, margin_curves, margin_figure):
        with pytest.raises(ValueError, match=r"margin must be a finite number > 0"):
            call(bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_scale_raises(bad):
    for call in (margin_curves, margin_figure):
        with pytest.raises(ValueError, match=r"scale must be a finite number > 0"):
            call(1.35, bad)


@pytest.mark.parametrize("bad", [0, 1, -5, 2.5, True])
def test_bad_num_raises(bad):
    with pytest.raises(ValueError, match=r"integer >= 2"):
        margin_curves(1.35, num=bad)


def test_huge_margin_is_refused():
    with pytest.raises(ValueError, match="too large"):
        boundary_angle(1e4)
