"""Confusion matrix, per-class and top-k accuracy: hand-computed cases and the bundled models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.evaluation import (
    confusion_matrix,
    evaluate_model,
    evaluation_summary,
    per_class_accuracy,
)
from kd_core.analysis.extraction import extract_feature_set
from kd_core.analysis.feature_set import FeatureSet
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.data.shapes_render import CLASS_NAMES
from kd_core.models import create_model

CHECKPOINTS = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep the shapes data out of ``~/.cache``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_CORE_CACHE", str(tmp_path_factory.mktemp("kd_core_cache")))
        yield


@pytest.fixture(scope="module")
def test_split():
    return create_dataset("shapes", split="test")


@pytest.fixture(scope="module")
def vanilla():
    return load_checkpoint(CHECKPOINTS / "student_resnet8_vanilla.pt").model


def _feature_set(logits: torch.Tensor, labels: list[int], names=()) -> FeatureSet:
    n = len(labels)
    return FeatureSet(
        name="m",
        arch="a",
        indices=torch.arange(n),
        labels=torch.tensor(labels),
        logits=logits,
        pooled=torch.zeros(n, 2),
        attention={},
        class_names=tuple(names),
    )


# --------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_confusion_matrix_rows_are_true_classes():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 0, 1, 2, 2, 1])
    expected = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 2]])
    assert torch.equal(confusion_matrix(predictions, labels, 3), expected)
    assert confusion_matrix(predictions, labels, 3).dtype == torch.int64
    # Unused classes add zero rows and columns.
    wide = confusion_matrix(predictions, labels, 5)
    assert wide.shape == (5, 5) and torch.equal(wide[:3, :3], expected) and wide[3:].sum() == 0


def test_confusion_matrix_matches_a_counting_loop():
    generator = torch.Generator().manual_seed(3)
    predictions = torch.randint(0, 7, (500,), generator=generator)
    labels = torch.randint(0, 7, (500,), generator=generator)
    reference = np.zeros((7, 7), dtype=np.int64)
    for p, t in zip(predictions.tolist(), labels.tolist(), strict=True):
        reference[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(predictions, labels, 7).numpy(), reference)


def test_per_class_accuracy_leaves_out_classes_without_samples():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 0, 1, 2, 2, 1])
    accuracy = per_class_accuracy(predictions, labels, num_classes=4)
    assert accuracy == {0: 50.0, 1: 50.0, 2: 100.0}  # class 3: no samples, absent
    assert all(math.isfinite(v) for v in accuracy.values())
    assert per_class_accuracy([1, 1], [1, 1], 3) == {1: 100.0}  # lists are accepted


@pytest.mark.parametrize(
    ("predictions", "labels", "num_classes", "match"),
    [
        ([0, 1], [0], 2, "2 predictions for 1 labels"),
        ([0, 3], [0, 1], 3, "predictions holds class 3, outside 0 to 2"),
        ([0, 1], [-1, 1], 3, "labels holds class -1"),
        ([0.0, 1.0], [0, 1], 2, "flat integer tensor"),
        ([[0, 1]], [[0, 1]], 2, "flat integer tensor"),
        ([0], [0], 0, "num_classes must be a positive integer"),
    ],
)
def test_bad_class_inputs_are_analysis_errors(predictions, labels, num_classes, match):
    with pytest.raises(AnalysisError, match=match):
        confusion_matrix(torch.tensor(predictions), torch.tensor(labels), num_classes)


def test_summary_top5_counts_the_rank_of_the_true_class():
    # Seven classes; each row lists the classes from highest to lowest logit.
    orders = [
        [0, 1, 2, 3, 4, 5, 6],
        [1, 2, 0, 3, 4, 5, 6],
        [1, 2, 3, 4, 0, 5, 6],
        [6, 5, 1, 2, 3, 4, 0],
    ]
    logits = torch.zeros(4, 7)
    for row, order in enumerate(orders):
        logits[row, order] = torch.arange(7, 0, -1, dtype=torch.float32)
    summary = evaluation_summary(_feature_set(logits, [0, 0, 0, 0], names="abcdefg"))
    # The true class 0 is ranked 1st, 3rd, 5th and 7th.
    assert summary.top1 == 25.0 and summary.top5 == 75.0 and summary.top_k == 5
    assert summary.count == 4 and summary.class_names == tuple("abcdefg")
    assert summary.per_class_accuracy == {0: 25.0}
    assert summary.confusion[0].tolist() == [1, 2, 0, 0, 0, 0, 1]


def test_summary_with_fewer_than_five_classes_uses_all_of_them():
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    summary = evaluation_summary(_feature_set(logits, [0, 2, 1]))
    assert summary.top_k == 3 and summary.top5 == 100.0
    assert summary.top1 == pytest.approx(100.0 / 3)
    assert summary.per_class_accuracy == {0: 100.0, 1: 0.0, 2: 0.0}


def test_summary_of_no_samples_is_an_analysis_error():
    with pytest.raises(AnalysisError, match="No samples were evaluated"):
        evaluation_summary(_feature_set(torch.zeros(0, 3), []))


# --------------------------------------------------------------------------------------------
# On the bundled models.


def test_streamed_evaluation_reproduces_the_recorded_accuracy(vanilla, test_split):
    """make_assets recorded the shipped file's top-1 on the whole test split in the manifest."""
    manifest = json.loads((CHECKPOINTS / "manifest.json").read_text())
    recorded = next(c for c in manifest["checkpoints"] if c["name"] == "student_resnet8_vanilla")
    calls = []
    summary = evaluate_model(
        vanilla, test_split, batch_size=500, progress=lambda *a: calls.append(a)
    )
    assert summary.count == 10_000 and summary.class_names == CLASS_NAMES
    assert summary.top1 == pytest.approx(recorded["top1"], abs=0.1)
    assert summary.top1 <= summary.top5 <= 100.0
    assert calls == [(500 * k, 10_000) for k in range(1, 21)]
    labels = test_split.labels
    assert summary.confusion.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()
    overall = sum(acc * int((labels == k).sum()) for k, acc in summary.per_class_accuracy.items())
    assert overall / 10_000 == pytest.approx(summary.top1)


def test_streamed_and_extracted_evaluations_agree(vanilla):
    subset = create_dataset("shapes", split="test", limit=64)
    vanilla.train()
    streamed = evaluate_model(vanilla, subset, batch_size=24)
    assert vanilla.training  # mode restored
    features = extract_feature_set(vanilla, subset, name="v", arch="resnet8")
    from_features = evaluation_summary(features)
    assert torch.equal(streamed.confusion, from_features.confusion)
    assert (streamed.top1, streamed.top5, streamed.count) == (
        from_features.top1,
        from_features.top5,
        from_features.count,
    )
    with torch.no_grad():
        logits = vanilla.eval()(torch.stack([subset[i][0] for i in range(64)]))
    assert streamed.top1 == pytest.approx(
        100.0 * float((logits.argmax(1) == subset.labels).float().mean())
    )


def test_evaluating_a_model_for_other_classes_is_an_analysis_error():
    subset = create_dataset("shapes", split="test", limit=8)
    with pytest.raises(AnalysisError, match="outputs 100 classes but the dataset has 10"):
        evaluate_model(create_model("resnet8", num_classes=100), subset)
    with pytest.raises(AnalysisError, match="No samples are selected"):
        evaluate_model(create_model("resnet8", num_classes=10), [])
