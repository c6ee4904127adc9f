"""Data on the device in training: the same (seed, epoch) order as the loader, sharded alike,
deterministic, resumable; ``auto``/``on``/``off`` and the sentences for what cannot be."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kd_core.checkpoints import load_checkpoint
from kd_core.training.data_path import DataPath, resolve_data_on_device
from kd_core.training.distributed import Distributed
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import RunCancelled, train
from tests.data.tiny_shapes import tiny_shapes

CPU = torch.device("cpu")


def _weights(path):
    return load_checkpoint(path).model.state_dict()


@pytest.mark.parametrize("distributed", [Distributed(), Distributed(rank=1, world_size=2)])
def test_both_paths_visit_the_same_items_in_the_same_batches(distributed):
    train_set, test_set = tiny_shapes(50, augment=True), tiny_shapes(9, augment=False)
    paths = [DataPath(train_set, test_set, on, CPU, False, distributed) for on in (False, True)]
    for epoch in (0, 1):
        loader, held = (path.train_batches(3, epoch, 8) for path in paths)
        assert len(loader) == len(held)
        assert [b[1].tolist() for b in loader] == [b[1].tolist() for b in held]
    loader, held = (path.test_batches(4) for path in paths)
    pairs = list(zip(loader, held, strict=True))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


def test_on_trains_on_the_device_path_deterministically(tmp_path, tiny_config):
    tiny_config.data_on_device = "on"
    for name in ("first", "second"):
        train(tiny_config, tmp_path / name)
    assert RunFiles(tmp_path / "first").read_status()["data_path"] == "device"
    first, second = _weights(tmp_path / "first/last.pt"), _weights(tmp_path / "second/last.pt")
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_cancelled_and_resumed_run_ends_as_one_never_interrupted(tmp_path, tiny_config):
    tiny_config.data_on_device = "on"
    train(tiny_config, tmp_path / "whole")
    steps = {"n": 0}

    def stop_in_second_epoch() -> bool:
        steps["n"] += 1
        return steps["n"] == 4  # the first step of epoch 2 (3 steps per epoch)

    with pytest.raises(RunCancelled):
        train(tiny_config, tmp_path / "interrupted", should_stop=stop_in_second_epoch)
    train(tiny_config, tmp_path / "interrupted", resume=True)
    whole = _weights(tmp_path / "whole/last.pt")
    resumed = _weights(tmp_path / "interrupted/last.pt")
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)


def test_auto_is_the_loader_on_cpu_and_off_is_always_the_loader():
    held = tiny_shapes(4, augment=False)
    assert not resolve_data_on_device("auto", [held, held], CPU)
    assert not resolve_data_on_device("off", [held, held], CPU)
    assert resolve_data_on_device("on", [held, held], CPU)


def test_auto_and_on_on_cuda_weigh_the_splits_against_free_memory(monkeypatch):
    held = tiny_shapes(4, augment=False)  # 4 x 3,072 bytes of images + 4 x 8 of labels
    needed = 2 * (4 * 32 * 32 * 3 + 4 * 8)
    free = {"bytes": 4 * needed + 1}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 10**12))
    cuda = torch.device("cuda")
    assert resolve_data_on_device("auto", [held, held], cuda)
    free["bytes"] = 4 * needed - 1  # the splits would take over a quarter of it
    assert not resolve_data_on_device("auto", [held, held], cuda)
    assert resolve_data_on_device("on", [held, held], cuda)
    free["bytes"] = 10 * 2**20
    big = SimpleNamespace(
        images=torch.empty(1, dtype=torch.uint8).expand(20 * 2**20), labels=torch.zeros(1)
    )
    with pytest.raises(ValueError, match=r"needs 20 MiB but only 10 MiB are free.*off"):
        resolve_data_on_device("on", [big], cuda)


def test_on_for_a_data_set_read_from_files_says_what_to_use():
    files = SimpleNamespace(info=SimpleNamespace(name="imagefolder"), samples=[("a.jpg", 0)])
    assert not resolve_data_on_device("auto", [files], CPU)
    with pytest.raises(ValueError, match=r"imagefolder reads its images from files.*off or auto"):
        resolve_data_on_device("on", [files], CPU)
