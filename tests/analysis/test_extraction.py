"""Feature extraction and its cache, on the bundled teacher and a student with 64 test images."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.extraction import extract_feature_set, select_indices
from kd_core.analysis.feature_cache import (
    FeatureCache,
    feature_key,
    feature_set_for,
    file_fingerprint,
    model_fingerprint,
)
from kd_core.analysis.feature_set import FeatureSet, check_same_samples
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.data.shapes_render import CLASS_NAMES
from kd_core.models import create_model, extract_features

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "assets" / "checkpoints"
TEACHER = CHECKPOINTS / "teacher_resnet20.pt"
STUDENT = CHECKPOINTS / "student_resnet8_amd.pt"
COUNT = 64
BATCH = 24  # 64 = 24 + 24 + 16: three batches, the last one short


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep the shapes data and the feature files out of ``~/.cache``."""
    folder = tmp_path_factory.mktemp("kd_core_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_CORE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def dataset():
    return create_dataset("shapes", split="test", limit=COUNT)


@pytest.fixture(scope="module")
def teacher():
    return load_checkpoint(TEACHER).model


@pytest.fixture(scope="module")
def student():
    return load_checkpoint(STUDENT).model


@pytest.fixture(scope="module")
def teacher_set(teacher, dataset) -> FeatureSet:
    return extract_feature_set(
        teacher, dataset, name="teacher", arch="resnet20", batch_size=BATCH, keep_stages=True
    )


@pytest.fixture(scope="module")
def images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(COUNT)])


class ForwardCounter:
    """Counts the forward passes of a model (a pre-hook, removed on exit)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.calls = model, 0

    def __enter__(self) -> ForwardCounter:
        self.handle = self.model.register_forward_pre_hook(self._count)
        return self

    def _count(self, *_args) -> None:
        self.calls += 1

    def __exit__(self, *_exc) -> None:
        self.handle.remove()


def _assert_same_features(a: FeatureSet, b: FeatureSet) -> None:
    for field in ("indices", "labels", "logits", "pooled", "masks"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)
    assert list(a.attention) == list(b.attention) and list(a.stages) == list(b.stages)
    for stage in a.attention:
        torch.testing.assert_close(a.attention[stage], b.attention[stage], rtol=0, atol=0)
    for stage in a.stages:
        torch.testing.assert_close(a.stages[stage], b.stages[stage], rtol=0, atol=0)
    assert a.class_names == b.class_names


# --------------------------------------------------------------------------------------------
# What is extracted.


def test_fields_have_the_documented_shapes_and_types(teacher_set, dataset):
    fs = teacher_set
    assert len(fs) == COUNT and fs.name == "teacher" and fs.arch == "resnet20"
    torch.testing.assert_close(fs.indices, torch.arange(COUNT))
    torch.testing.assert_close(fs.labels, dataset.labels[:COUNT])
    assert fs.logits.shape == (COUNT, 10) and fs.logits.dtype == torch.float32
    assert fs.pooled.shape == (COUNT, 64) and fs.pooled.dtype == torch.float32
    assert fs.stage_names == ["layer1", "layer2", "layer3"]
    sides = {"layer1": 32, "layer2": 16, "layer3": 8}
    channels = {"layer1": 16, "layer2": 32, "layer3": 64}
    for stage, side in sides.items():
        assert fs.attention[stage].shape == (COUNT, side, side)
        assert fs.attention[stage].dtype == torch.float32
        assert fs.stages[stage].shape == (COUNT, channels[stage], side, side)
        assert fs.stages[stage].dtype == torch.float16
    assert fs.masks.dtype == torch.bool and fs.masks.shape == (COUNT, 32, 32)
    torch.testing.assert_close(fs.masks, dataset.masks[:COUNT])
    assert fs.class_names == CLASS_NAMES


def test_attention_is_the_amd_map_of_a_direct_forward(teacher_set, teacher, images):
    with torch.no_grad():
        direct = extract_features(teacher.eval(), images)
    for stage, q in teacher_set.attention.items():
        torch.testing.assert_close(q.flatten(1).norm(dim=1), torch.ones(COUNT), rtol=0, atol=1e-5)
        # Reference in float64 numpy: a = sum_c f_c^2, q = a / (||a|| + 1e-6).
        f = direct.stages[stage].double().numpy()
        a = (f**2).sum(axis=1)
        norms = np.sqrt((a.reshape(COUNT, -1) ** 2).sum(axis=1))
        expected = a / (norms + 1e-6)[:, None, None]
        np.testing.assert_allclose(q.numpy(), expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            teacher_set.stages[stage].float(), direct.stages[stage], rtol=1e-3, atol=1e-2
        )
    torch.testing.assert_close(teacher_set.pooled, direct.pooled, rtol=1e-5, atol=1e-5)


def test_logits_predictions_and_correct_match_a_direct_forward(teacher_set, teacher, images):
    with torch.no_grad():
        logits = teacher.eval()(images)
    torch.testing.assert_close(teacher_set.logits, logits, rtol=1e-5, atol=1e-5)
    predictions = logits.argmax(dim=1)
    assert torch.equal(teacher_set.predictions, predictions)
    assert torch.equal(teacher_set.correct, predictions == teacher_set.labels)
    assert teacher_set.correct.float().mean() > 0.5  # an 84.8% model, not random weights


def test_raw_stages_are_kept_only_when_asked(student, dataset):
    fs = extract_feature_set(student, dataset, name="s", arch="resnet8", samples=8)
    assert fs.stages == {} and fs.stage_names == ["layer1", "layer2", "layer3"]


def test_teacher_and_student_get_the_same_random_subset(teacher, student, teacher_set, dataset):
    t = extract_feature_set(teacher, dataset, name="t", arch="resnet20", samples=20)
    s = extract_feature_set(student, dataset, name="s", arch="resnet8", samples=20)
    check_same_samples(t, s)
    indices = t.indices.tolist()
    assert len(indices) == 20 and indices == sorted(set(indices))
    assert indices != list(range(20))  # a seeded random subset, not the first 20
    # A larger selection keeps every sample of a smaller one.
    assert set(select_indices(COUNT, samples=10).tolist()) <= set(indices)
    # The same images as in the full run: rows of the full set at those indices.
    torch.testing.assert_close(t.logits, teacher_set.logits[t.indices], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t.masks, dataset.masks[t.indices])


def test_explicit_indices_are_run_in_the_given_order(teacher, teacher_set, dataset):
    fs = extract_feature_set(teacher, dataset, name="t", arch="resnet20", indices=[5, 0, 63])
    assert fs.indices.tolist() == [5, 0, 63]
    torch.testing.assert_close(fs.labels, dataset.labels[[5, 0, 63]])
    torch.testing.assert_close(fs.pooled, teacher_set.pooled[[5, 0, 63]], rtol=1e-5, atol=1e-5)
    cut = select_indices(COUNT, samples=2, indices=[5, 0, 63])
    assert len(cut) == 2 and set(cut.tolist()) <= {5, 0, 63}


def test_every_module_mode_is_restored(student, dataset):
    student.train()
    student.layer1.eval()  # a mixed state (e.g. a frozen block) must survive too
    modes = {name: module.training for name, module in student.named_modules()}
    extract_feature_set(student, dataset, name="s", arch="resnet8", samples=4)
    assert {name: module.training for name, module in student.named_modules()} == modes
    with pytest.raises(AnalysisError):
        extract_feature_set(student, dataset, name="s", arch="resnet8", indices=[COUNT])
    assert {name: module.training for name, module in student.named_modules()} == modes
    student.eval()


def test_progress_reports_samples_after_each_batch(student, dataset):
    calls = []
    extract_feature_set(
        student,
        dataset,
        name="s",
        arch="resnet8",
        batch_size=BATCH,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [(24, COUNT), (48, COUNT), (COUNT, COUNT)]


def test_datasets_without_usable_masks_or_class_names(student, isolated_cache):
    augmented = create_dataset("shapes", split="test", limit=8, augment=True)
    fs = extract_feature_set(student, augmented, name="s", arch="resnet8")
    assert fs.masks is None and fs.class_names == CLASS_NAMES  # masks refuse augmented data

    plain = [(augmented[i][0], i % 10) for i in range(6)]  # a bare list: no masks, no names
    fs = extract_feature_set(student, plain, name="s", arch="resnet8")
    assert fs.masks is None and fs.class_names == () and fs.labels.tolist() == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"indices": []}, "No samples are selected"),
        ({"samples": 0}, "positive integer, got 0"),
        ({"samples": -3}, "positive integer, got -3"),
        ({"samples": 2.5}, "positive integer, got 2.5"),
        ({"indices": [0, COUNT]}, f"index {COUNT} is outside the dataset, which has {COUNT}"),
        ({"indices": [0.5, 1.0]}, "flat sequence of integers"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_selections_are_analysis_errors(student, dataset, options, match):
    with pytest.raises(AnalysisError, match=match):
        extract_feature_set(student, dataset, name="s", arch="resnet8", **options)


def test_class_count_mismatch_names_both_numbers(dataset):
    model = create_model("resnet8", num_classes=100)
    with pytest.raises(AnalysisError, match="outputs 100 classes but the dataset has 10"):
        extract_feature_set(model, dataset, name="cifar100 model", arch="resnet8", samples=4)


def test_a_model_that_fails_on_the_images_is_an_analysis_error(dataset):
    model = create_model("resnet8", num_classes=10)
    model.conv1 = nn.Conv2d(1, 16, 3, padding=1)  # expects grey images
    model.train()
    with pytest.raises(AnalysisError, match=r"failed on images of shape \(3, 32, 32\)"):
        extract_feature_set(model, dataset, name="grey model", arch="resnet8", samples=4)
    assert model.training


def test_a_model_without_stage_names_is_an_analysis_error(dataset):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(AnalysisError, match="does not declare its stages"):
        extract_feature_set(model, dataset, name="mlp", arch="mlp", samples=4)


# --------------------------------------------------------------------------------------------
# Fingerprints and the cache.


def test_file_fingerprint_is_the_sha256_of_the_bytes():
    manifest = json.loads((CHECKPOINTS / "manifest.json").read_text())
    recorded = {Path(c["file"]).name: c["sha256"] for c in manifest["checkpoints"]}
    assert file_fingerprint(TEACHER) == hashlib.sha256(TEACHER.read_bytes()).hexdigest()
    assert file_fingerprint(TEACHER) == recorded[TEACHER.name]


def test_model_fingerprint_follows_the_weights_not_the_object(student):
    twin = copy.deepcopy(student)
    assert model_fingerprint(twin) == model_fingerprint(student)
    assert model_fingerprint(load_checkpoint(STUDENT).model) == model_fingerprint(student)
    with torch.no_grad():
        twin.fc.bias[0] += 1e-3
    assert model_fingerprint(twin) != model_fingerprint(student)
    buffered = copy.deepcopy(student)
    buffered.bn1.running_mean[0] += 1.0  # buffers count too
    assert model_fingerprint(buffered) != model_fingerprint(student)


def test_key_depends_on_every_part():
    base = feature_key("abc", "shapes/test", 64, torch.arange(4), keep_stages=False)
    assert base == feature_key("abc", "shapes/test", 64, torch.arange(4), keep_stages=False)
    others = [
        feature_key("abd", "shapes/test", 64, torch.arange(4), keep_stages=False),
        feature_key("abc", "shapes/train", 64, torch.arange(4), keep_stages=False),
        feature_key("abc", "shapes/test", 65, torch.arange(4), keep_stages=False),
        feature_key("abc", "shapes/test", 64, torch.arange(1, 5), keep_stages=False),
        feature_key("abc", "shapes/test", 64, torch.arange(4), keep_stages=True),
    ]
    assert len({base, *others}) == 6


def test_a_cache_hit_does_not_run_the_model(student, dataset, tmp_path):
    cache = FeatureCache(tmp_path)
    options = {"arch": "resnet8", "samples": 40, "keep_stages": True, "cache": cache}
    with ForwardCounter(student) as counter:
        first = feature_set_for(student, dataset, "shapes/test", name="first", **options)
        assert counter.calls == 1  # 40 samples, one batch of 256
        second = feature_set_for(student, dataset, "shapes/test", name="second", **options)
        assert counter.calls == 1
        assert second.name == "second" and first.name == "first"
        _assert_same_features(first, second)
        # A new process (a new cache object on the same folder) reads the file back.
        from_disk = feature_set_for(
            student,
            dataset,
            "shapes/test",
            name="third",
            **{**options, "cache": FeatureCache(tmp_path)},
        )
        assert counter.calls == 1
        _assert_same_features(first, from_disk)
        # Other samples or changed weights are other keys: computed again.
        feature_set_for(student, dataset, "shapes/test", name="n", **{**options, "samples": 41})
        assert counter.calls == 2
    changed = copy.deepcopy(student)
    with torch.no_grad():
        changed.fc.weight.mul_(2.0)
    with ForwardCounter(changed) as counter:
        again = feature_set_for(changed, dataset, "shapes/test", name="changed", **options)
        assert counter.calls == 1
    # Doubling the classifier's weights: logits' = 2 (logits - bias) + bias.
    bias = student.fc.bias.detach()
    torch.testing.assert_close(again.logits, 2.0 * first.logits - bias, rtol=1e-4, atol=1e-4)
    assert len(list(tmp_path.glob("*.pt"))) == 3


@pytest.mark.parametrize(
    "content",
    [
        b"not a torch file",
        b"",
        "wrong payload",  # a readable file that does not hold a feature set
        "wrong key",  # a feature file saved under another key
    ],
)
def test_an_unusable_cache_file_is_recomputed(student, dataset, tmp_path, content):
    options = {"name": "s", "arch": "resnet8", "samples": 16}
    expected = feature_set_for(
        student, dataset, "shapes/test", cache=FeatureCache(tmp_path), **options
    )
    (path,) = tmp_path.glob("*.pt")
    if content == "wrong payload":
        torch.save({"format": 1, "key": path.stem, "logits": torch.zeros(2)}, path)
    elif content == "wrong key":
        payload = torch.load(path, weights_only=True)
        torch.save({**payload, "key": "another"}, path)
    else:
        path.write_bytes(content)
    with ForwardCounter(student) as counter:
        recomputed = feature_set_for(
            student, dataset, "shapes/test", cache=FeatureCache(tmp_path), **options
        )
        assert counter.calls == 1
    _assert_same_features(expected, recomputed)
    reloaded = FeatureCache(tmp_path).get(path.stem)  # the file was rewritten and is usable
    assert reloaded is not None
    _assert_same_features(expected, reloaded)


def test_memory_cache_is_a_bounded_lru(teacher_set):
    cache = FeatureCache(persist=False, max_items=2)
    for key in ("a", "b"):
        cache.put(key, teacher_set)
    assert cache.get("a") is teacher_set  # "a" is now the most recent
    cache.put("c", teacher_set)
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") is teacher_set
    with pytest.raises(AnalysisError, match="max_items"):
        FeatureCache(max_items=-1)


def test_default_cache_folder_follows_the_environment(isolated_cache, tmp_path, monkeypatch):
    assert FeatureCache().root == isolated_cache / "features"
    monkeypatch.setenv("KD_CORE_CACHE", str(tmp_path))
    assert FeatureCache().path("k") == tmp_path / "features" / "k.pt"
