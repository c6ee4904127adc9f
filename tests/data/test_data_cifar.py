"""CIFAR-10/100 from local files: the missing-files message, and a real load from a tiny fake
folder written in the format of the official python archives."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchvision.datasets import cifar as tv_cifar

from kd_core.data import create_dataset
from kd_core.data.catalog import CIFAR10_MEAN, CIFAR10_STD

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


def _dump(path, obj) -> None:
    with open(path, "wb") as file:
        pickle.dump(obj, file)


def fake_cifar10(root, per_batch: int = 4, test: int = 6):
    """``root/cifar-10-batches-py`` with 5 x ``per_batch`` training and ``test`` test images:
    rows of 3072 uint8 (channel-major), labels 0..9, as in the official archive."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, name in enumerate([*CIFAR10_FILES, "test_batch"]):
        count = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = [(index + i) % 10 for i in range(count)]
        _dump(folder / name, {"batch_label": name, "labels": labels, "data": data})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    _dump(folder / "batches.meta", {"label_names": [*names, "truck"], "num_vis": 3072})
    return folder


def fake_cifar100(root, train: int = 12, test: int = 5):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, count in (("train", train), ("test", test)):
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        fine = [(7 * i) % 100 for i in range(count)]
        _dump(folder / name, {"data": data, "fine_labels": fine, "coarse_labels": [0] * count})
    _dump(folder / "meta", {"fine_label_names": [f"class{i:02d}" for i in range(100)]})
    return folder


@pytest.mark.parametrize(
    ("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_missing_files_say_where_to_put_them(tmp_path, name, folder):
    with pytest.raises(ValueError) as raised:
        create_dataset(name, root=tmp_path)
    message = str(raised.value)
    assert f"expected the folder {tmp_path / folder}" in message
    assert "download=True (an explicit opt-in)" in message and "online" in message
    assert message.endswith(".")


def test_the_default_root_is_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CORE_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match=str(tmp_path / "elsewhere" / "cifar-10-batches-py")):
        create_dataset("cifar10")


def test_a_partial_folder_lists_the_missing_files(tmp_path):
    folder = fake_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="missing: data_batch_3"):
        create_dataset("cifar10", root=tmp_path)


def test_fake_cifar10_loads_for_real(tmp_path):
    folder = fake_cifar10(tmp_path)
    train = create_dataset("cifar10", "train", root=tmp_path)
    test = create_dataset("cifar10", "test", root=tmp_path)
    assert len(train) == 20 and len(test) == 6
    assert train.class_names[0] == "airplane" and train.info.num_classes == 10
    image, label = test[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int) and label == 7  # (5 + 2) % 10 for the test batch
    with open(folder / "test_batch", "rb") as file:
        raw = pickle.load(file)["data"][2].reshape(3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    expected = (torch.from_numpy(raw).float() / 255 - mean) / std
    assert torch.allclose(image, expected, atol=1e-5)
    # Training items are augmented (random crop with padding, flip): same shape, random.
    torch.manual_seed(0)
    draws = [train[0][0] for _ in range(6)]
    assert all(d.shape == (3, 32, 32) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(test[2][0], image)


def test_root_may_name_the_extracted_folder_and_limit_applies(tmp_path):
    folder = fake_cifar10(tmp_path)
    data = create_dataset("cifar10", "train", root=folder, limit=7, augment=False)
    assert len(data) == 7 and len(data.targets) == 7


def test_fake_cifar100_loads_fine_labels(tmp_path):
    fake_cifar100(tmp_path)
    data = create_dataset("cifar100", "train", root=tmp_path, augment=False)
    assert len(data) == 12 and data.info.num_classes == 100
    assert [data[i][1] for i in range(3)] == [0, 7, 14]
    assert data.class_names[7] == "class07"


def test_corrupt_files_give_a_clear_error(tmp_path):
    folder = fake_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match=r"delete the folder and extract cifar-10-python\.tar\.gz"):
        create_dataset("cifar10", "train", root=tmp_path)


def test_wrong_shapes_are_refused(tmp_path):
    folder = fake_cifar10(tmp_path)
    _dump(folder / "test_batch", {"labels": [0], "data": np.zeros((1, 100), np.uint8)})
    with pytest.raises(ValueError, match="not in the expected format"):
        create_dataset("cifar10", "test", root=tmp_path)


def test_download_failure_is_reported(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(ValueError, match=r"Could not download CIFAR-100 .*network is unreachable"):
        create_dataset("cifar100", root=tmp_path, download=True)


class _RunsCode:
    """Unpickling this would create ``path``: a stand-in for any code in a data file."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_batch_file_that_would_run_code_is_refused_unread(tmp_path, protocol):
    fake_cifar10(tmp_path)
    sentinel = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": _RunsCode(sentinel)}, protocol=protocol))
    with pytest.raises(ValueError, match="not a genuine CIFAR batch: reading it would import"):
        create_dataset("cifar10", split="test", root=tmp_path)
    assert not sentinel.exists()
    assert len(create_dataset("cifar10", split="train", root=tmp_path)) > 0  # other split fine
