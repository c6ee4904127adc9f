"""Attention overlays (kd_core.figures.attention): traces, shared colour scales, the values
drawn (maps divided by their peak, student - teacher differences) and the input checks."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.attention import attention_overlay_figure, stage_overlay_figure


def _image(size: int = 8) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))


def _maps(size: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    scales = {"teacher": 2.0, "student A": 0.5, "student B": 1.0}
    return {name: rng.random((size, size)) * scale for name, scale in scales.items()}


def _heatmaps(fig: go.Figure) -> list[go.Heatmap]:
    return [trace for trace in fig.data if isinstance(trace, go.Heatmap)]


def _peak_one(values: np.ndarray) -> np.ndarray:
    return values / values.max()


def test_one_row_image_maps_then_differences():
    maps = _maps()
    fig = attention_overlay_figure(_image(), maps, title="Grad-CAM")
    types = [type(trace).__name__ for trace in fig.data]
    # image | 3 maps | 2 differences, each map/difference a heatmap over a greyscale image
    assert types == ["Image"] + ["Image", "Heatmap"] * 5
    assert [h.name for h in _heatmaps(fig)] == [
        "teacher",
        "student A",
        "student B",
        "student A − teacher",
        "student B − teacher",
    ]
    assert fig.layout.title.text == "Grad-CAM"
    axes = {trace.xaxis for trace in fig.data}
    assert len(axes) == 6  # six panels


def test_maps_share_one_scale_from_0_to_1_and_differences_one_from_minus_1_to_1():
    fig = attention_overlay_figure(_image(), _maps())
    heatmaps = _heatmaps(fig)
    assert [h.coloraxis for h in heatmaps] == ["coloraxis"] * 3 + ["coloraxis2"] * 2
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    assert (fig.layout.coloraxis2.cmin, fig.layout.coloraxis2.cmax) == (-1.0, 1.0)
    viridis = go.Figure(layout={"coloraxis": {"colorscale": "Viridis"}}).layout.coloraxis
    assert fig.layout.coloraxis.colorscale == viridis.colorscale
    rdbu_r = go.Figure(layout={"coloraxis": {"colorscale": "RdBu_r"}}).layout.coloraxis
    assert fig.layout.coloraxis2.colorscale == rdbu_r.colorscale
    assert all(h.zmin is None and h.zmax is None for h in heatmaps)  # the axes rule


def test_values_drawn_are_peak_normalised_maps_and_their_differences():
    maps = _maps()
    heatmaps = _heatmaps(attention_overlay_figure(_image(), maps))
    for heatmap, values in zip(heatmaps[:3], maps.values(), strict=True):
        np.testing.assert_allclose(np.asarray(heatmap.z), _peak_one(values), atol=1e-12)
    teacher = _peak_one(maps["teacher"])
    for heatmap, student in zip(heatmaps[3:], ("student A", "student B"), strict=True):
        expected = _peak_one(maps[student]) - teacher
        np.testing.assert_allclose(np.asarray(heatmap.z), expected, atol=1e-6)


def test_difference_of_one_chosen_pair():
    maps = _maps()
    fig = attention_overlay_figure(_image(), maps, difference_of=("student A", "student B"))
    heatmaps = _heatmaps(fig)
    assert len(heatmaps) == 4 and heatmaps[-1].name == "student B − student A"
    expected = _peak_one(maps["student B"]) - _peak_one(maps["student A"])
    np.testing.assert_allclose(np.asarray(heatmaps[-1].z), expected, atol=1e-6)


def test_a_single_map_has_no_difference_and_no_diverging_scale():
    fig = attention_overlay_figure(_image(), {"teacher": np.ones((8, 8))})
    assert [type(t).__name__ for t in fig.data] == ["Image", "Image", "Heatmap"]
    assert "coloraxis2" not in fig.layout.to_plotly_json()


def test_images_are_drawn_in_colour_then_in_grey():
    image = _image()
    fig = attention_overlay_figure(image, {"teacher": np.ones((8, 8))})
    colour, grey = (np.asarray(trace.z) for trace in fig.data[:2])
    expected = np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(colour, expected)
    assert grey.shape == (8, 8, 3) and np.all(grey[..., 0] == grey[..., 2])


def test_coarse_maps_cover_the_image_cell_by_cell():
    fig = attention_overlay_figure(_image(32), {"teacher": np.ones((8, 8))})
    (heatmap,) = _heatmaps(fig)
    np.testing.assert_allclose(heatmap.x, np.arange(8) * 4 + 1.5)  # cell centres, in pixels
    np.testing.assert_allclose(heatmap.y, np.arange(8) * 4 + 1.5)
    assert "8×8" in fig.layout.annotations[1].text


def test_mask_is_outlined_on_every_panel():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 3:6] = True
    fig = attention_overlay_figure(_image(), _maps(), mask=mask)
    contours = [trace for trace in fig.data if isinstance(trace, go.Contour)]
    assert len(contours) == 6
    np.testing.assert_array_equal(np.asarray(contours[0].z), mask.astype(float))
    assert [c.line.color for c in contours] == ["white"] * 4 + ["black"] * 2
    assert not any(
        isinstance(t, go.Contour) for t in attention_overlay_figure(_image(), _maps()).data
    )


def test_stage_figure_has_one_row_per_stage():
    stages = {
        "layer1": {"teacher": np.ones((8, 8)), "student": np.eye(8)},
        "layer2": {"teacher": np.ones((4, 4)), "student": np.eye(4)},
        "layer3": {"teacher": np.ones((2, 2)), "student": np.eye(2)},
    }
    fig = stage_overlay_figure(_image(), stages, title="AMD attention per stage")
    assert len(fig.data) == 3 * (1 + 3 * 2)
    heatmaps = _heatmaps(fig)
    assert [np.asarray(h.z).shape for h in heatmaps[::3]] == [(8, 8), (4, 4), (2, 2)]
    np.testing.assert_allclose(np.asarray(heatmaps[5].z), np.eye(4) - 1.0)  # layer2 difference
    row_titles = [fig.layout[axis].title.text for axis in ("yaxis", "yaxis5", "yaxis9")]
    assert row_titles == ["layer1", "layer2", "layer3"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (torch.rand(3, 8, 8) * 2 - 0.5, "denormalize"),
        (torch.rand(8, 8), "3 x H x W"),
        (torch.rand(4, 8, 8), "3 x H x W"),
        (torch.full((3, 8, 8), float("nan")), "finite"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(AnalysisError, match=match):
        attention_overlay_figure(image, _maps())


def test_bad_maps_mask_and_names():
    with pytest.raises(AnalysisError, match="at least one"):
        attention_overlay_figure(_image(), {})
    with pytest.raises(AnalysisError, match="non-negative"):
        attention_overlay_figure(_image(), {"teacher": -np.ones((8, 8))})
    with pytest.raises(AnalysisError, match="H x W"):
        attention_overlay_figure(_image(), {"teacher": np.ones((1, 8, 8))})
    with pytest.raises(AnalysisError, match=r"among the maps \['teacher', 'student A'"):
        attention_overlay_figure(_image(), _maps(), difference_of=("teacher", "nobody"))
    with pytest.raises(AnalysisError, match="8 x 8 pixels"):
        attention_overlay_figure(_image(), _maps(), mask=np.ones((4, 4), dtype=bool))
    with pytest.raises(AnalysisError, match="same models"):
        stage_overlay_figure(
            _image(), {"a": {"teacher": np.ones((2, 2))}, "b": {"student": np.ones((2, 2))}}
        )
    with pytest.raises(AnalysisError, match="at least one"):
        stage_overlay_figure(_image(), {})
