"""The projector export, read back with TensorBoard's own projector config reader."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.views.projector import projector_zip, write_projector

N = 20


def feature_set(name: str, dims: int, seed: int) -> FeatureSet:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, 3, generator=generator)
    return FeatureSet(
        name=name, arch="test", indices=torch.arange(N) * 5, labels=torch.arange(N) % 3,
        logits=logits, pooled=torch.randn(N, dims, generator=generator),
        attention={}, class_names=("circle", "square", "star"),
    )  # fmt: skip


@pytest.fixture
def sets() -> list[FeatureSet]:
    return [feature_set("teacher", 8, 0), feature_set("student AMD", 4, 1)]


def test_every_model_is_an_embedding_with_its_metadata_and_the_sprite(tmp_path, sets):
    images = torch.rand(N, 3, 32, 32)
    folder = write_projector(tmp_path / "projector", sets, images)
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["teacher:00000", "student AMD:00000"]
    for embedding, fs in zip(config.embeddings, sets, strict=True):
        tensors = np.loadtxt(folder / embedding.tensor_path, delimiter="\t", ndmin=2)
        np.testing.assert_allclose(tensors, fs.pooled.numpy(), rtol=1e-5, atol=1e-6)
        rows = (folder / embedding.metadata_path).read_text().splitlines()
        assert rows[0].split("\t") == ["model", "class", "predicted", "correct", "index"]
        first = rows[1].split("\t")
        predicted = fs.class_names[int(fs.predictions[0])]
        assert first == [
            fs.name,
            "circle",
            predicted,
            "yes" if predicted == "circle" else "no",
            "0",
        ]
        assert len(rows) == N + 1
        assert list(embedding.sprite.single_image_dim) == [32, 32]
        assert (folder / embedding.sprite.image_path).stat().st_size > 0


def test_the_zip_holds_the_same_folder(sets):
    data = projector_zip(sets, torch.rand(N, 3, 32, 32))
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "projector/projector_config.pbtxt" in names
    assert sum(name.endswith("tensors.tsv") for name in names) == 2


def test_bad_exports_write_nothing(tmp_path, sets):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(AnalysisError, match="not an empty folder"):
        write_projector(taken, sets, torch.rand(N, 3, 32, 32))
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    with pytest.raises(AnalysisError, match="20 x 3 x H x W"):
        write_projector(tmp_path / "new", sets, torch.rand(N - 1, 3, 32, 32))
    with pytest.raises(AnalysisError, match="share a name"):
        write_projector(tmp_path / "new", [sets[0], sets[0]], torch.rand(N, 3, 32, 32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
