"""Attention overlays (kd_core.figures.attention): traces, shared colour scales, the values
drawn (maps divided by their peak, student - teacher differences) and the input checks."""

from __future__ import annotations

import base64
import io
import itertools

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

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


def _pixels(source: str) -> np.ndarray:
    """The pixels of an image trace's PNG data URI."""
    header, data = source.split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def _outlines(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if isinstance(t, go.Scatter) and t.name == "object mask"]


def _unit_edges(xs, ys) -> set[tuple[tuple[float, float], tuple[float, float]]]:
    """The unit pixel edges covered by the segments of a ``None``-separated path."""
    edges = set()
    points = list(zip(xs, ys, strict=True))
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if None in (x0, y0, x1, y1):
            continue
        steps = round(abs(x1 - x0) + abs(y1 - y0))
        dx, dy = (x1 - x0) / steps, (y1 - y0) / steps
        for k in range(steps):
            a = (x0 + k * dx, y0 + k * dy)
            b = (x0 + (k + 1) * dx, y0 + (k + 1) * dy)
            edges.add(tuple(sorted([a, b])))
    return edges


def test_images_are_drawn_in_colour_then_in_grey():
    image = _image()
    fig = attention_overlay_figure(image, {"teacher": np.ones((8, 8))})
    colour, grey = (_pixels(trace.source) for trace in fig.data[:2])
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
    mask[5, 3] = True  # a step in the outline
    fig = attention_overlay_figure(_image(), _maps(), mask=mask)
    outlines = _outlines(fig)
    assert len(outlines) == 6
    assert [c.line.color for c in outlines] == ["white"] * 4 + ["black"] * 2
    # every edge between a pixel of the object and one outside it (pixel i spans i ± 0.5)
    expected = set()
    for row, col in zip(*np.nonzero(mask), strict=True):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + dr, col + dc
            if 0 <= r < 8 and 0 <= c < 8 and mask[r, c]:
                continue
            if dr:  # a horizontal edge between rows
                y = row + dr / 2
                expected.add(((col - 0.5, y), (col + 0.5, y)))
            else:
                x = col + dc / 2
                expected.add(((x, row - 0.5), (x, row + 0.5)))
    for outline in outlines:
        assert _unit_edges(outline.x, outline.y) == expected
    assert not _outlines(attention_overlay_figure(_image(), _maps()))


def test_an_object_on_the_border_is_outlined_along_the_border():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True  # the left half, touching three borders
    fig = attention_overlay_figure(_image(4), {"teacher": np.ones((4, 4))}, mask=mask)
    edges = _unit_edges(_outlines(fig)[0].x, _outlines(fig)[0].y)
    assert len(edges) == 4 + 4 + 2 + 2  # left border, the cut, the top and bottom halves
    assert ((1.5, -0.5), (1.5, 0.5)) in edges and ((-0.5, 3.5), (0.5, 3.5)) in edges


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
