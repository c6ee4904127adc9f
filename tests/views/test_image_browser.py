"""The page logic of "Attention maps": filters, pages, thumbnails, stage pairing, predictions,
targets and the agreement table, against hand-made answers and numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from kd_core.analysis.errors import AnalysisError
from kd_core.views.image_browser import (
    SampleFilter,
    agreement_rows,
    class_labels,
    distinct_names,
    filter_samples,
    image_predictions,
    paginate,
    paired_stage_rows,
    sample_filters,
    target_classes,
    thumbnails,
)

LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
PREDICTIONS = {
    "T": torch.tensor([0, 1, 0, 0, 2, 2, 1, 1]),  # wrong at 2, 4, 6
    "S": torch.tensor([0, 2, 0, 1, 2, 2, 0, 0]),  # wrong at 1, 2, 3, 4, 7
}


# ---------------------------------------------------------------- filters


def test_sample_filters_cover_teacher_and_each_student():
    filters = sample_filters("T", ["S1", "S2"])
    assert [f.label for f in filters] == [
        "all samples", "teacher correct", "teacher wrong",
        "S1 wrong", "teacher and S1 disagree", "S2 wrong", "teacher and S2 disagree",
    ]  # fmt: skip
    assert [(f.kind, f.models) for f in filters[3:5]] == [
        ("wrong", ("S1",)),
        ("disagree", ("T", "S1")),
    ]


@pytest.mark.parametrize(
    ("kind", "models", "expected"),
    [
        ("all", (), [0, 1, 2, 3, 4, 5, 6, 7]),
        ("correct", ("T",), [0, 1, 3, 5, 7]),
        ("wrong", ("T",), [2, 4, 6]),
        ("wrong", ("S",), [1, 2, 3, 4, 7]),
        ("disagree", ("T", "S"), [1, 3, 6, 7]),
    ],
)
def test_filter_samples_known_positions(kind, models, expected):
    chosen = SampleFilter("f", kind, models)
    positions = filter_samples(LABELS, PREDICTIONS, chosen)
    assert positions.dtype == torch.int64 and positions.tolist() == expected


def test_filter_samples_with_a_class_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    teacher, student = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    predictions = {"T": torch.from_numpy(teacher), "S": torch.from_numpy(student)}
    for chosen, keep in (
        (SampleFilter("f", "wrong", ("S",)), student != labels),
        (SampleFilter("f", "disagree", ("T", "S")), teacher != student),
    ):
        for class_index in range(4):
            got = filter_samples(
                torch.from_numpy(labels), predictions, chosen, class_index=class_index
            )
            expected = np.flatnonzero(keep & (labels == class_index))
            assert got.tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("labels", "predictions", "chosen", "class_index", "message"),
    [
        (LABELS, {"T": PREDICTIONS["T"]}, SampleFilter("S wrong", "wrong", ("S",)), None, "'S'"),
        (LABELS, {"T": PREDICTIONS["T"][:5]}, SampleFilter("f", "wrong", ("T",)), None, "5"),
        (LABELS.float(), PREDICTIONS, SampleFilter("f", "all"), None, "integer"),
        (LABELS, PREDICTIONS, SampleFilter("f", "all"), -1, ">= 0"),
        (LABELS, PREDICTIONS, SampleFilter("f", "all"), 1.5, "integer"),
    ],
)
def test_filter_samples_refuses_bad_input(labels, predictions, chosen, class_index, message):
    with pytest.raises(AnalysisError, match=message):
        filter_samples(labels, predictions, chosen, class_index=class_index)


@pytest.mark.parametrize(("kind", "models"), [("best", ()), ("wrong", ()), ("all", ("T",))])
def test_sample_filter_checks_its_kind_and_models(kind, models):
    with pytest.raises(AnalysisError, match="not valid"):
        SampleFilter("f", kind, models)


# ---------------------------------------------------------------- pages and thumbnails


def test_paginate_cuts_and_clamps():
    items = torch.arange(10, 30)
    page = paginate(items, 2, 6)
    assert page.items.tolist() == list(range(16, 22))
    assert (page.number, page.count, page.first, page.total) == (2, 4, 6, 20)
    assert paginate(items, 99, 6).items.tolist() == [28, 29]  # the last page
    assert paginate(items, 99, 6).number == 4
    assert paginate(items, -3, 6).number == 1
    pages = [paginate(items, n, 7).items for n in range(1, paginate(items, 1, 7).count + 1)]
    assert torch.equal(torch.cat(pages), items)  # every item exactly once, in order


def test_paginate_empty_list_has_one_empty_page():
    page = paginate([], 1, 12)
    assert (list(page.items), page.number, page.count, page.total) == ([], 1, 1, 0)


@pytest.mark.parametrize(("page", "per_page"), [(1, 0), (1, 2.0), (True, 3), ("1", 3)])
def test_paginate_refuses_bad_numbers(page, per_page):
    with pytest.raises(AnalysisError):
        paginate([1, 2, 3], page, per_page)


def test_thumbnails_enlarge_by_repeating_pixels():
    images = torch.rand(2, 3, 4, 5)
    pictures = thumbnails(images, min_side=10)  # factor ceil(10 / 4) = 3
    assert [p.shape for p in pictures] == [(12, 15, 3), (12, 15, 3)]
    assert all(p.dtype == np.uint8 for p in pictures)
    reference = np.rint(images[1].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pictures[1], np.kron(reference, np.ones((3, 3, 1), np.uint8)))


def test_thumbnails_keep_large_images_and_map_values():
    images = torch.full((1, 3, 80, 70), 0.5)
    images[0, 0] = 1.0
    [picture] = thumbnails(images, min_side=64)
    assert picture.shape == (80, 70, 3)
    assert picture[0, 0].tolist() == [255, 128, 128]


@pytest.mark.parametrize(
    "images",
    [torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8), torch.full((1, 3, 8, 8), 1.5), "image"],
)
def test_thumbnails_refuse_bad_images(images):
    with pytest.raises(AnalysisError):
        thumbnails(images)


# ---------------------------------------------------------------- names and stages


def test_distinct_names_number_repeats():
    assert distinct_names(["a", "b", "a", "a"]) == ["a", "b", "a (2)", "a (3)"]
    assert distinct_names(["a (2)", "a", "a"]) == ["a (2)", "a", "a (3)"]


def test_paired_stage_rows_pair_from_the_deepest():
    rows = paired_stage_rows(
        {"T": ["layer1", "layer2", "layer3", "layer4"], "S": ["block1", "block2", "block3"]}
    )
    assert [r.stages for r in rows] == [
        {"T": "layer2", "S": "block1"},
        {"T": "layer3", "S": "block2"},
        {"T": "layer4", "S": "block3"},
    ]
    assert rows[-1].label == "layer4 / block3"
    same = paired_stage_rows({"T": ["layer1", "layer2"], "S": ["layer1", "layer2"], "U": ["x"]})
    assert [r.label for r in same] == ["layer2 / x"]
    assert list(same[0].stages) == ["T", "S", "U"]


@pytest.mark.parametrize("stages", [{}, {"T": ["layer1"], "S": []}])
def test_paired_stage_rows_need_stages(stages):
    with pytest.raises(AnalysisError):
        paired_stage_rows(stages)


def test_class_labels_fall_back_to_numbers():
    assert class_labels(["cat", "dog"], 2) == ("cat", "dog")
    assert class_labels(["cat"], 3) == ("class 0", "class 1", "class 2")


# ---------------------------------------------------------------- predictions and targets


class _FixedLogits(nn.Module):
    """Logits = the mean of each channel (3 classes), with a dropout that would show train
    mode."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.9)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(images.mean(dim=(2, 3)) * self.scale)


def test_image_predictions_softmax_of_eval_logits_and_modes_restored():
    model = _FixedLogits().train()
    image = torch.zeros(3, 4, 4)
    image[0], image[1], image[2] = 1.0, 3.0, 2.0
    predictions = image_predictions({"m": model, "n": model}, image, ["red", "green", "blue"])
    expected = np.exp(3.0) / np.exp([1.0, 3.0, 2.0]).sum()
    assert predictions["m"].class_index == 1 and predictions["m"].class_name == "green"
    assert predictions["m"].confidence == pytest.approx(expected, rel=1e-6)  # dropout was off
    assert model.training and model.dropout.training
    assert image_predictions({"m": model}, image)["m"].class_name == "class 1"


@pytest.mark.parametrize("image", [torch.zeros(1, 3, 4, 4), torch.zeros(3, 4, 4).long()])
def test_image_predictions_refuse_bad_images(image):
    with pytest.raises(AnalysisError, match="3 x H x W"):
        image_predictions({"m": _FixedLogits()}, image)


def test_target_classes_three_modes():
    predicted = {"T": 3, "S1": 5, "S2": 3}
    assert target_classes("own", predicted, teacher="T") == predicted
    assert target_classes("teacher", predicted, teacher="T") == {"T": 3, "S1": 3, "S2": 3}
    assert target_classes("chosen", predicted, teacher="T", chosen=7) == dict.fromkeys(predicted, 7)


@pytest.mark.parametrize(
    ("mode", "teacher", "chosen"),
    [("best", "T", None), ("own", "X", None), ("chosen", "T", None), ("chosen", "T", -1)],
)
def test_target_classes_refuse_bad_choices(mode, teacher, chosen):
    with pytest.raises(AnalysisError):
        target_classes(mode, {"T": 1}, teacher=teacher, chosen=chosen)


# ---------------------------------------------------------------- agreement


def _top(values: np.ndarray, count: int) -> set[int]:
    return set(np.argsort(values.ravel())[-count:].tolist())


def test_agreement_rows_match_numpy_and_scipy():
    rng = np.random.default_rng(1)
    teacher, student = rng.random((5, 5)), rng.random((5, 5))
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:3] = True  # 6 of 25 pixels
    maps = {"T": torch.from_numpy(teacher), "S": torch.from_numpy(student)}
    rows = agreement_rows(maps, mask=torch.from_numpy(mask))
    assert [row["model"] for row in rows] == ["T", "S"]
    assert rows[0]["cosine vs teacher"] is None and rows[0]["top-20% IoU vs teacher"] is None

    t, s = teacher.ravel(), student.ravel()
    cosine = t @ s / np.linalg.norm(t) / np.linalg.norm(s)
    assert rows[1]["cosine vs teacher"] == pytest.approx(cosine, abs=1e-6)
    assert rows[1]["rank correlation vs teacher"] == pytest.approx(
        spearmanr(t, s).statistic, abs=1e-6
    )
    top_t, top_s = _top(teacher, 5), _top(student, 5)
    assert rows[1]["top-20% IoU vs teacher"] == pytest.approx(
        len(top_t & top_s) / len(top_t | top_s)
    )
    inside = set(np.flatnonzero(mask.ravel()).tolist())
    for row, values in zip(rows, (teacher, student), strict=True):
        assert row["attention inside object (%)"] == pytest.approx(
            100 * values[mask].sum() / values.sum(), abs=1e-4
        )
        top = _top(values, 5)
        assert row["top-20% IoU with object"] == pytest.approx(
            len(top & inside) / len(top | inside)
        )
        assert row["object area (%)"] == pytest.approx(24.0)


def test_agreement_rows_without_mask_and_identical_maps():
    values = torch.rand(6, 6)
    rows = agreement_rows({"T": values, "S": 2 * values}, top_fraction=0.25)
    assert set(rows[1]) == {
        "model", "cosine vs teacher", "rank correlation vs teacher", "top-25% IoU vs teacher",
    }  # fmt: skip
    assert rows[1]["cosine vs teacher"] == pytest.approx(1.0, abs=1e-6)
    assert rows[1]["rank correlation vs teacher"] == pytest.approx(1.0)
    assert rows[1]["top-25% IoU vs teacher"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("maps", "mask"),
    [
        ({}, None),
        ({"T": torch.rand(1, 4, 4)}, None),
        ({"T": torch.rand(4, 4)}, torch.ones(1, 4, 4, dtype=torch.bool)),
        ({"T": torch.rand(4, 4), "S": -torch.rand(4, 4)}, None),
    ],
)
def test_agreement_rows_refuse_bad_maps(maps, mask):
    with pytest.raises(AnalysisError):
        agreement_rows(maps, mask=mask)
