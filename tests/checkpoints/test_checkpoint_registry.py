"""kd_core.checkpoints' two registries: every registered file format and every registered weights
layout is read back from a small file built here, and the registries hold exactly the names
tested, so a format or layout added without a test here fails."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from kd_core.checkpoints import (
    format_info,
    layout_info,
    list_formats,
    list_layouts,
    load_checkpoint,
    register_format,
    register_layout,
    save_checkpoint,
    summarize,
)
from kd_core.models import create_model

ARCH, CLASSES = "resnet8", 10


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = create_model(ARCH, num_classes=CLASSES)
    for module in net.modules():  # non-trivial buffers, so a forgotten one would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(7)
    return net.eval()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


# One builder per registered name: (model, directory) -> the file written.
Builder = Callable[[nn.Module, Path], Path]


def _torch_file(obj: object, path: Path, **kwargs: object) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def _safetensors_file(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    safetensors.torch.save_file(tensors, path)
    return path


FORMATS: dict[str, Builder] = {
    "torch_zip": lambda m, d: _torch_file(_state(m), d / "zip.pth"),
    "torch_legacy": lambda m, d: _torch_file(
        _state(m), d / "legacy.pth", _use_new_zipfile_serialization=False
    ),
    "safetensors": lambda m, d: _safetensors_file(_state(m), d / "weights.safetensors"),
}

LAYOUTS: dict[str, Builder] = {
    "kd_core": lambda m, d: save_checkpoint(d / "ours.pt", m, ARCH, CLASSES, {"epoch": 3}),
    "state_dict": lambda m, d: _torch_file(_state(m), d / "bare.pth"),
    "torchdistill": lambda m, d: _torch_file(
        {
            "model": _state(m),
            "optimizer": {"state": {}, "param_groups": []},
            "lr_scheduler": {"last_epoch": 3},
            "best_value": 0.5,
            "args": argparse.Namespace(config="kd.yaml"),
        },
        d / "torchdistill.pt",
    ),
    "repdistiller": lambda m, d: _torch_file(
        {"model": _state(m), "epoch": 3, "best_acc": 71.5, "opt": argparse.Namespace(lr=0.05)},
        d / "ckpt_epoch_3.pth",
    ),
    "checkpoint": lambda m, d: _torch_file(
        {"state_dict": _state(m), "step": 12}, d / "lightning_like.ckpt"
    ),
    "mdistiller": lambda m, d: _torch_file(
        {
            "epoch": 3,
            "model": {
                **{f"module.student.{k}": v for k, v in _state(m).items()},
                **{f"module.teacher.{k}": v for k, v in _state(m).items()},
            },
            "best_acc": 71.5,
        },
        d / "mdistiller_student.pth",
    ),
}


def _assert_same_weights(loaded: nn.Module, original: nn.Module) -> None:
    got, want = loaded.state_dict(), original.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_the_registries_hold_exactly_the_tested_names_in_precedence_order():
    assert list_formats() == ["torch_zip", "torch_legacy", "safetensors"]
    assert list_layouts() == [
        "kd_core",
        "state_dict",
        "torchdistill",
        "repdistiller",
        "checkpoint",
        "mdistiller",
    ]
    assert list(FORMATS) == list_formats() and list(LAYOUTS) == list_layouts()
    for name in list_formats():
        assert format_info(name).name == name and format_info(name).description.strip()
    for name in list_layouts():
        assert layout_info(name).name == name and layout_info(name).description.strip()
    assert [layout_info(n).refines for n in list_layouts()] == [False] * 5 + [True]


def test_unknown_and_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="Unknown checkpoint file format 'pickle'; known: torch"):
        format_info("pickle")
    with pytest.raises(ValueError, match="Unknown checkpoint layout 'keras'; known: kd_core"):
        layout_info("keras")
    with pytest.raises(ValueError, match="'safetensors' is already registered"):
        register_format("safetensors", "again", detect=lambda src: False)(lambda src: None)
    with pytest.raises(ValueError, match="'state_dict' is already registered"):
        register_layout("state_dict", "again")(lambda obj, name: None)
    assert len(list_formats()) == 3 and len(list_layouts()) == 6


@pytest.mark.parametrize("file_format", list(FORMATS))
def test_every_format_is_read_back(file_format, model, tmp_path):
    path = FORMATS[file_format](model, tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.file_format == file_format
    expected_layout = "safetensors" if file_format == "safetensors" else "state_dict"
    assert loaded.source_format == expected_layout
    assert (loaded.arch, loaded.num_classes) == (ARCH, CLASSES)
    _assert_same_weights(loaded.model, model)
    # The same bytes, given as an upload, are recognised the same way.
    again = load_checkpoint(path.read_bytes(), name=path.name)
    assert (again.file_format, again.source_format) == (file_format, expected_layout)
    summary = summarize(loaded)
    assert (summary["file_format"], summary["source_format"]) == (file_format, expected_layout)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_is_read_back(layout, model, tmp_path):
    path = LAYOUTS[layout](model, tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.source_format == layout
    assert loaded.file_format == "torch_zip"
    assert (loaded.arch, loaded.num_classes) == (ARCH, CLASSES)
    _assert_same_weights(loaded.model, model)
    assert summarize(loaded)["source_format"] == layout


def test_what_each_layout_records_beside_the_weights(model, tmp_path):
    loaded = {name: load_checkpoint(build(model, tmp_path)) for name, build in LAYOUTS.items()}
    assert loaded["kd_core"].weights_key == "state_dict"
    assert loaded["kd_core"].metadata == {"epoch": 3}
    assert loaded["state_dict"].weights_key is None
    assert loaded["torchdistill"].metadata["args"] == {"config": "kd.yaml"}
    assert set(loaded["torchdistill"].skipped) == {
        "optimizer (training state)",
        "lr_scheduler (training state)",
    }
    assert loaded["repdistiller"].metadata == {"epoch": 3, "best_acc": 71.5, "opt": {"lr": 0.05}}
    assert loaded["checkpoint"].weights_key == "state_dict"
    assert loaded["checkpoint"].metadata == {"step": 12}
    assert loaded["mdistiller"].weights_key == "model/module.student."
    assert loaded["mdistiller"].skipped[-1].startswith("teacher.* (")
