"""kd_core.checkpoints: every community layout we read, arch/num_classes inference, our own
format and safetensors round trips, and a clear CheckpointError for every bad input (with
nothing ever executed from a file)."""

from __future__ import annotations

import argparse
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from kd_core import checkpoints
from kd_core.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    export_safetensors,
    load_checkpoint,
    save_checkpoint,
    summarize,
)
from kd_core.models import create_model, list_models

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPDISTILLER_CKPT = FIXTURES / "repdistiller_golden" / "resnet20_random_ckpt.pth"


def _model(name: str = "resnet8", num_classes: int = 100, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes)
    # Non-trivial batch-norm statistics, so that a forgotten buffer would show in the outputs.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _save(tmp_path: Path, obj: object, name: str = "ckpt.pth", **kwargs) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kwargs)
    return path


def _assert_same_outputs(a: nn.Module, b: nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


@pytest.fixture(scope="module")
def resnet8() -> nn.Module:
    return _model("resnet8")


# --------------------------------------------------------------------------------------------
# Formats.


def test_bare_state_dict_infers_arch_and_classes(tmp_path, resnet8):
    loaded = load_checkpoint(_save(tmp_path, resnet8.state_dict()))
    assert isinstance(loaded, LoadedCheckpoint)
    assert (loaded.arch, loaded.num_classes, loaded.source_format) == ("resnet8", 100, "state_dict")
    assert loaded.weights_key is None and loaded.metadata == {} and not loaded.model.training
    _assert_same_outputs(loaded.model, resnet8)


def test_the_community_repdistiller_checkpoint(tmp_path):
    loaded = load_checkpoint(REPDISTILLER_CKPT)
    assert (loaded.arch, loaded.num_classes) == ("resnet20", 100)
    assert loaded.source_format == "repdistiller" and loaded.weights_key == "model"
    assert loaded.metadata == {"epoch": 240, "best_acc": 71.5}  # best_acc was a tensor
    json.dumps(loaded.metadata)
    state = torch.load(REPDISTILLER_CKPT, weights_only=True)["model"]
    reference = create_model("resnet20", num_classes=100)
    reference.load_state_dict(state)
    _assert_same_outputs(loaded.model, reference)


def test_repdistiller_last_checkpoint_with_namespace_opt(tmp_path, resnet8):
    opt = argparse.Namespace(
        model="resnet8", dataset="cifar100", learning_rate=0.05, lr_decay_epochs=[150, 180, 210]
    )
    optimizer = torch.optim.SGD(resnet8.parameters(), lr=0.05, momentum=0.9)
    path = _save(
        tmp_path,
        {"opt": opt, "model": resnet8.state_dict(), "optimizer": optimizer.state_dict()},
        "resnet8_last.pth",
    )
    loaded = load_checkpoint(path)
    assert loaded.source_format == "repdistiller" and loaded.arch == "resnet8"
    assert loaded.metadata["opt"] == {
        "model": "resnet8",
        "dataset": "cifar100",
        "learning_rate": 0.05,
        "lr_decay_epochs": [150, 180, 210],
    }
    assert loaded.skipped == ("optimizer (training state)",)
    # Namespace is allowed only while reading: the global allow-list is untouched.
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_repdistiller_epoch_checkpoint_and_cifar_teacher_layout(tmp_path, resnet8):
    # RepDistiller's ckpt_epoch_240.pth, also what mdistiller downloads as cifar_teachers.
    path = _save(
        tmp_path, {"epoch": 240, "model": resnet8.state_dict(), "accuracy": torch.tensor(70.25)}
    )
    loaded = load_checkpoint(path)
    assert loaded.source_format == "repdistiller"
    assert loaded.metadata == {"epoch": 240, "accuracy": 70.25}


@pytest.mark.parametrize(
    ("wrap", "weights_key", "source_format"),
    [
        (lambda sd: {"state_dict": sd, "epoch": 3}, "state_dict", "checkpoint"),
        (lambda sd: {"net": sd, "acc": 91.0}, "net", "checkpoint"),
        (lambda sd: {"student": sd}, "student", "checkpoint"),
        (lambda sd: {"ema": sd}, "ema", "checkpoint"),
        (lambda sd: {"model": {"state_dict": sd, "step": 7}}, "model/state_dict", "checkpoint"),
        (lambda sd: {"model": sd}, "model", "repdistiller"),  # also mdistiller's student_best
    ],
)
def test_weights_under_common_keys(tmp_path, resnet8, wrap, weights_key, source_format):
    loaded = load_checkpoint(_save(tmp_path, wrap(resnet8.state_dict())))
    assert (loaded.arch, loaded.weights_key, loaded.source_format) == (
        "resnet8",
        weights_key,
        source_format,
    )
    _assert_same_outputs(loaded.model, resnet8)


def test_nested_metadata_is_kept(tmp_path, resnet8):
    loaded = load_checkpoint(_save(tmp_path, {"model": {"state_dict": resnet8.state_dict()}}))
    assert loaded.metadata == {}
    loaded = load_checkpoint(
        _save(tmp_path, {"model": {"state_dict": resnet8.state_dict(), "step": 7}})
    )
    assert loaded.metadata == {"model/step": 7}


@pytest.mark.parametrize("prefix", ["module.", "module.module.", "_orig_mod.module."])
def test_wrapper_prefixes_are_removed(tmp_path, resnet8, prefix):
    state = {prefix + k: v for k, v in resnet8.state_dict().items()}
    loaded = load_checkpoint(_save(tmp_path, {"state_dict": state}))
    assert loaded.arch == "resnet8" and loaded.weights_key == f"state_dict/{prefix}"
    _assert_same_outputs(loaded.model, resnet8)


def test_data_parallel_state_dict(tmp_path, resnet8):
    state = nn.DataParallel(resnet8).state_dict()
    assert next(iter(state)).startswith("module.")
    loaded = load_checkpoint(_save(tmp_path, state))
    assert loaded.arch == "resnet8" and loaded.weights_key == "module."
    _assert_same_outputs(loaded.model, resnet8)


class _MdistillerDistiller(nn.Module):
    """The shape of mdistiller's Distiller: student, teacher and the method's extra modules."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.conv_reg = nn.Conv2d(64, 64, 1)


def test_mdistiller_training_state(tmp_path):
    # mdistiller's trainer saves {"epoch", "model": DataParallel(distiller).state_dict(),
    # "optimizer", "best_acc"} as latest / best / epoch_N.
    student, teacher = _model("resnet8", 10, seed=1), _model("resnet20", 10, seed=2)
    distiller = nn.DataParallel(_MdistillerDistiller(student, teacher))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    state = {
        "epoch": 240,
        "model": distiller.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_acc": torch.tensor(73.5),
    }
    loaded = load_checkpoint(_save(tmp_path, state, "best"))
    assert (loaded.arch, loaded.num_classes, loaded.source_format) == ("resnet8", 10, "mdistiller")
    assert loaded.weights_key == "model/module.student."
    assert loaded.metadata == {"epoch": 240, "best_acc": 73.5}
    assert "optimizer (training state)" in loaded.skipped
    assert any(s.startswith("teacher.*") for s in loaded.skipped)
    assert any(s.startswith("conv_reg.*") for s in loaded.skipped)
    _assert_same_outputs(loaded.model, student)


def test_mdistiller_vanilla_state_has_only_a_student(tmp_path):
    student = _model("resnet8", 10, seed=3)
    state = {"epoch": 1, "model": nn.DataParallel(nn.ModuleDict({"student": student})).state_dict()}
    loaded = load_checkpoint(_save(tmp_path, state))
    assert (loaded.arch, loaded.source_format) == ("resnet8", "mdistiller")
    _assert_same_outputs(loaded.model, student)


def test_torchdistill_save_ckpt_layout(tmp_path, resnet8):
    # torchdistill.common.main_util.save_ckpt: {"model", "optimizer", "best_value",
    # "lr_scheduler", "args"} with the unwrapped student's state dict.
    optimizer = torch.optim.SGD(resnet8.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 225])
    args = argparse.Namespace(config="configs/kd.yaml", device="cuda", world_size=1, seed=None)
    state = {
        "model": resnet8.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_value": 71.25,
        "lr_scheduler": scheduler.state_dict(),
        "args": args,
    }
    loaded = load_checkpoint(_save(tmp_path, state))
    assert (loaded.arch, loaded.source_format, loaded.weights_key) == (
        "resnet8",
        "torchdistill",
        "model",
    )
    assert loaded.metadata == {
        "best_value": 71.25,
        "args": {"config": "configs/kd.yaml", "device": "cuda", "world_size": 1, "seed": None},
    }
    assert set(loaded.skipped) == {"optimizer (training state)", "lr_scheduler (training state)"}


def test_legacy_torch_save_format(tmp_path, resnet8):
    path = _save(tmp_path, resnet8.state_dict(), _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == b"\x80\x02"
    loaded = load_checkpoint(path)
    assert loaded.arch == "resnet8"
    _assert_same_outputs(loaded.model, resnet8)


def test_old_checkpoints_without_num_batches_tracked(tmp_path, resnet8):
    state = {k: v for k, v in resnet8.state_dict().items() if "num_batches_tracked" not in k}
    loaded = load_checkpoint(_save(tmp_path, state))
    assert loaded.arch == "resnet8"
    _assert_same_outputs(loaded.model, resnet8)


def test_bytes_source_like_an_upload(resnet8):
    buffer = io.BytesIO()
    torch.save({"model": resnet8.state_dict(), "epoch": 5}, buffer)
    loaded = load_checkpoint(buffer.getvalue(), name="student.pth")
    assert loaded.source == "student.pth" and loaded.metadata == {"epoch": 5}
    _assert_same_outputs(loaded.model, resnet8)
    with pytest.raises(CheckpointError, match=r"^uploaded file is a text file"):
        load_checkpoint(b"not a checkpoint\n")


def test_third_party_safetensors_infers_the_network(tmp_path, resnet8):
    path = tmp_path / "weights.safetensors"
    tensors = {k: v.contiguous() for k, v in resnet8.state_dict().items()}
    safetensors.torch.save_file(tensors, path, metadata={"epoch": "12", "note": "hello"})
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.num_classes) == ("resnet8", 100)
    assert loaded.source_format == "safetensors"
    assert loaded.metadata == {"epoch": "12", "note": "hello"}
    _assert_same_outputs(loaded.model, resnet8)
    # Recognised by its header, whatever the name; from bytes too.
    renamed = path.rename(tmp_path / "weights.pth")
    assert load_checkpoint(renamed.read_bytes()).source_format == "safetensors"


# --------------------------------------------------------------------------------------------
# Inference and its errors.


def test_another_number_of_classes_is_inferred(tmp_path):
    model = _model("resnet8", num_classes=10)
    loaded = load_checkpoint(_save(tmp_path, model.state_dict()))
    assert (loaded.arch, loaded.num_classes) == ("resnet8", 10)
    assert loaded.model.fc.out_features == 10
    _assert_same_outputs(loaded.model, model)
    assert load_checkpoint(_save(tmp_path, model.state_dict()), num_classes=10).num_classes == 10


def test_explicit_num_classes_that_does_not_match(tmp_path):
    path = _save(tmp_path, _model("resnet8", num_classes=10).state_dict())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, num_classes=100)
    message = str(info.value)
    assert "10 classes" in message and "fc.weight is 10x64" in message
    assert "num_classes=100" in message and "pass num_classes=10" in message


def test_explicit_arch_that_fits(tmp_path, resnet8):
    loaded = load_checkpoint(_save(tmp_path, resnet8.state_dict()), arch="resnet8")
    assert loaded.arch == "resnet8"


def test_explicit_arch_that_does_not_fit_lists_the_mismatches(tmp_path):
    path = _save(tmp_path, _model("resnet20").state_dict())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, arch="resnet32")
    message = str(info.value)
    assert "does not fit architecture 'resnet32'" in message
    assert "missing, first: layer1.3.conv1.weight" in message
    assert "It fits resnet20" in message
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, arch="resnet8x4")
    assert "with another shape, first: conv1.weight is 16x3x3x3 in the checkpoint" in str(
        info.value
    )


def test_unknown_arch_name(tmp_path, resnet8):
    with pytest.raises(CheckpointError, match=r"unknown architecture 'resnet9'.*resnet8"):
        load_checkpoint(_save(tmp_path, resnet8.state_dict()), arch="resnet9")


def test_unrelated_network_names_the_closest_entries(tmp_path):
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_save(tmp_path, tiny.state_dict()))
    message = str(info.value)
    assert "match no registered architecture" in message
    assert "'0.weight'" in message and "closest: " in message


def test_closest_entry_and_what_differs(tmp_path):
    state = _model("resnet20").state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer1.2.")}
    total = len(create_model("resnet20").state_dict())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_save(tmp_path, state))
    message = str(info.value)
    # The two num_batches_tracked buffers of the block are tolerated (BatchNorm fills them in).
    assert f"closest: resnet20 ({total - 10}/{total} keys match; 10 missing, first: " in message
    assert "first: layer1.2.conv1.weight" in message


def test_inference_builds_nothing_real(monkeypatch, tmp_path, resnet8):
    checkpoints._signature.cache_clear()
    built = []
    real = checkpoints.models.create_model

    def spy(name, num_classes=100, **kwargs):
        model = real(name, num_classes=num_classes, **kwargs)
        built.append((name, next(model.parameters()).device.type))
        return model

    monkeypatch.setattr(checkpoints.models, "create_model", spy)
    load_checkpoint(_save(tmp_path, resnet8.state_dict()))
    signatures = [device for name, device in built[:-1]]
    assert signatures and set(signatures) == {"meta"}  # one meta build per registry entry
    assert built[-1] == ("resnet8", "cpu")  # and one real model
    checkpoints._signature.cache_clear()


# --------------------------------------------------------------------------------------------
# Bad inputs: one CheckpointError each, nothing executed.


class _WritesMarker:
    """A pickle payload that, if ever unpickled without weights_only, creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "code-ran"
    path = _save(tmp_path, {"model": _WritesMarker(marker)}, "evil.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "contains Python objects that are not allowed" in message
    assert "weights_only" in message and "never executes" in message
    assert "io.open" in message  # what the payload would have called
    assert not marker.exists()


def test_plain_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    # The payload is live: plain pickle.loads creates the marker ...
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_WritesMarker(live))).close()
    assert live.exists()
    # ... while load_checkpoint refuses the same payload without running it.
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": _WritesMarker(marker)}))
    with pytest.raises(CheckpointError, match=r"not allowed.*io\.open.*never executes"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="never executes"):
        load_checkpoint(path.read_bytes())
    assert not marker.exists()


def test_pickled_whole_model_is_refused(tmp_path, resnet8):
    path = _save(tmp_path, resnet8, "whole_model.pth")
    with pytest.raises(CheckpointError, match=r"not allowed .*CifarResNet.*state_dict\(\)"):
        load_checkpoint(path)


def _zip_truncated(tmp_path: Path, model: nn.Module) -> Path:
    data = _save(tmp_path, model.state_dict()).read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    return path


def _legacy_truncated(tmp_path: Path, model: nn.Module) -> Path:
    data = _save(tmp_path, model.state_dict(), _use_new_zipfile_serialization=False).read_bytes()
    path = tmp_path / "truncated_legacy.pth"
    path.write_bytes(data[:200])
    return path


def _safetensors_truncated(tmp_path: Path, model: nn.Module) -> Path:
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(dict(model.state_dict()), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path


def _write(name: str, data: bytes):
    def make(tmp_path: Path, _model: nn.Module) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def _not_torch_zip(tmp_path: Path, _model: nn.Module) -> Path:
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return path


def _saved(obj: object, name: str):
    def make(tmp_path: Path, _model: nn.Module) -> Path:
        return _save(tmp_path, obj, name)

    return make


_RANDOM = bytes(
    torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_zip_truncated, "is truncated or corrupted"),
        (_legacy_truncated, "is truncated"),
        (_safetensors_truncated, "is a truncated safetensors file"),
        (_write("random.pth", b"\x13" + _RANDOM), "is not a checkpoint: its first bytes"),
        (_write("empty.pth", b""), r"is empty \(0 bytes\)"),
        (_write("notes.pth", b"epoch 240, top-1 71.5 %\n" * 5), "is a text file"),
        (
            _write("lfs.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"),
            "is a Git LFS pointer",
        ),
        (_write("page.pth", b"<!DOCTYPE html><html><body>404</body></html>"), "HTML page"),
        (_write("bad.safetensors", struct.pack("<Q", 20) + b'{"a": nonsense json}'), "not valid"),
        (_write("plain.pkl", pickle.dumps({"epoch": 1}, protocol=4)), "plain Python pickle"),
        (_not_torch_zip, "ZIP archive but not a PyTorch checkpoint"),
        (_saved(torch.zeros(3, 4), "tensor.pth"), "holds a single tensor"),
        (_saved([1, 2, 3], "list.pth"), "holds a list"),
        (_saved({}, "empty_dict.pth"), "holds an empty dict"),
        (_saved({"epoch": 3, "best_acc": 1.0}, "no_weights.pth"), "but no weights"),
        (
            _saved({"format": "kd_core", "format_version": 99}, "future.pth"),
            "newer kd_core",
        ),
    ],
)
def test_bad_files(tmp_path, resnet8, make, expected):
    path = make(tmp_path, resnet8)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    # The same bytes as an upload give the same kind of message.
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path.read_bytes(), name=path.name)


def test_missing_file_directory_and_wrong_type(tmp_path, resnet8):
    with pytest.raises(CheckpointError, match="no such file; check the path"):
        load_checkpoint(tmp_path / "missing.pth")
    _save(tmp_path, resnet8.state_dict(), "best.pth")
    with pytest.raises(CheckpointError, match=r"is a directory; .*\(it holds best\.pth\)"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"must be a path .* or bytes, got int"):
        load_checkpoint(42)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="num_classes must be a positive integer"):
        load_checkpoint(tmp_path / "best.pth", num_classes=0)


def test_size_limit_is_checked_before_reading(monkeypatch, tmp_path, resnet8):
    path = _save(tmp_path, resnet8.state_dict())
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("read a file over the limit"))
    with pytest.raises(CheckpointError, match=r"over the 1\.0 KiB limit; pass a larger max_bytes"):
        load_checkpoint(path, max_bytes=1024)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"over the 1\.0 KiB limit"):
        load_checkpoint(path.read_bytes(), max_bytes=1024)
    assert checkpoints.MAX_CHECKPOINT_BYTES == 2 * 1024**3


# --------------------------------------------------------------------------------------------
# Our own format and safetensors export.


def test_save_and_load_round_trip(tmp_path):
    model = _model("resnet8", num_classes=10, seed=4)
    metadata = {"epoch": 30, "best_acc": torch.tensor(66.5), "opt": argparse.Namespace(lr=0.1)}
    path = save_checkpoint(tmp_path / "student.pth", model, "resnet8", 10, metadata=metadata)
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.num_classes, loaded.source_format) == ("resnet8", 10, "kd_core")
    assert loaded.metadata == {"epoch": 30, "best_acc": 66.5, "opt": {"lr": 0.1}}
    _assert_same_outputs(loaded.model, model)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "kd_core" and raw["format_version"] == 1
    assert set(raw) == {"format", "format_version", "arch", "num_classes", "state_dict", "metadata"}
    assert [p.name for p in tmp_path.iterdir()] == ["student.pth"]  # no temporary file left


def test_save_refuses_weights_that_do_not_fit(tmp_path):
    model = _model("resnet8", num_classes=10)
    with pytest.raises(CheckpointError, match="does not fit architecture 'resnet20'"):
        save_checkpoint(tmp_path / "x.pth", model, "resnet20", 10)
    with pytest.raises(CheckpointError, match="not num_classes=100"):
        save_checkpoint(tmp_path / "x.pth", model, "resnet8", 100)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_when_the_write_fails(monkeypatch, tmp_path):
    path = tmp_path / "student.pth"
    save_checkpoint(path, _model("resnet8", 10, seed=5), "resnet8", 10, metadata={"epoch": 1})
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial data")  # the temporary file is open and half written ...
        raise OSError(28, "No space left on device")  # ... when the disk fills up

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, _model("resnet8", 10, seed=6), "resnet8", 10, metadata={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["student.pth"]
    assert load_checkpoint(path).metadata == {"epoch": 1}


def test_training_state_round_trip(tmp_path):
    model = _model("resnet8", num_classes=10, seed=7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    state = {
        "student": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": {"scale": 65536.0, "_growth_tracker": 3},
        "epoch": 4,
        "best_top1": 51.5,
        "step": 1200,
    }
    path = save_checkpoint(tmp_path / "last.pt", model, "resnet8", 10, training_state=state)
    restored = checkpoints.load_training_state(path)
    assert {k: restored[k] for k in ("scaler", "epoch", "best_top1", "step")} == {
        "scaler": {"scale": 65536.0, "_growth_tracker": 3},
        "epoch": 4,
        "best_top1": 51.5,
        "step": 1200,
    }
    again = torch.optim.SGD(_model("resnet8", 10).parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(restored["optimizer"])
    momentum = restored["optimizer"]["state"][0]["momentum_buffer"]
    torch.testing.assert_close(momentum, optimizer.state_dict()["state"][0]["momentum_buffer"])
    loaded = load_checkpoint(path)  # the model loads as usual; the training state is skipped
    assert loaded.skipped == ("training_state (training state)",)
    _assert_same_outputs(loaded.model, model)


def test_training_state_errors(tmp_path, resnet8):
    with pytest.raises(CheckpointError, match=r"training_state\['bad'\] has type object"):
        save_checkpoint(
            tmp_path / "x.pt", resnet8, "resnet8", 100, training_state={"bad": object()}
        )
    assert list(tmp_path.iterdir()) == []
    inference_only = save_checkpoint(tmp_path / "best.pt", resnet8, "resnet8", 100)
    with pytest.raises(CheckpointError, match="holds no training state"):
        checkpoints.load_training_state(inference_only)
    with pytest.raises(CheckpointError, match="is not a kd_core checkpoint"):
        checkpoints.load_training_state(REPDISTILLER_CKPT)
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoints.load_training_state(tmp_path / "missing.pt")


def test_export_safetensors_round_trip_needs_no_inference(monkeypatch, tmp_path):
    loaded = load_checkpoint(REPDISTILLER_CKPT)
    path = export_safetensors(loaded, tmp_path / "resnet20.safetensors", metadata={"note": "x"})
    header = safetensors.safe_open(str(path), "pt").metadata()
    assert header["arch"] == "resnet20" and header["num_classes"] == "100"
    assert header["format"] == "kd_core"

    def no_inference(*args, **kwargs):
        raise AssertionError("the architecture should come from the metadata")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints.architecture, "_infer_arch", no_inference)
        again = load_checkpoint(path)
    assert (again.arch, again.num_classes, again.source_format) == ("resnet20", 100, "safetensors")
    assert again.metadata == {"epoch": 240, "best_acc": 71.5, "note": "x"}
    _assert_same_outputs(again.model, loaded.model)
    # A bare model: arch and classes are inferred for the header.
    model = _model("resnet8", num_classes=10)
    export_safetensors(model, tmp_path / "bare.safetensors")
    assert load_checkpoint(tmp_path / "bare.safetensors").arch == "resnet8"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bare.safetensors", "resnet20.safetensors"]


def test_safetensors_metadata_naming_an_arch_that_does_not_fit(tmp_path, resnet8):
    path = tmp_path / "liar.safetensors"
    safetensors.torch.save_file(
        dict(resnet8.state_dict()), path, metadata={"arch": "resnet20", "num_classes": "100"}
    )
    with pytest.raises(CheckpointError, match=r"does not fit architecture 'resnet20' \(as its"):
        load_checkpoint(path)
    assert load_checkpoint(path, arch="resnet8").arch == "resnet8"  # an explicit arch wins


# --------------------------------------------------------------------------------------------
# Summary.


def test_summary_of_a_cifar_model():
    loaded = load_checkpoint(REPDISTILLER_CKPT)
    summary = summarize(loaded)
    assert summary["architecture"] == "resnet20" and summary["num_classes"] == 100
    assert summary["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert summary["input_shape"] == [1, 3, 32, 32]
    assert summary["stages"] == {
        "layer1": [1, 16, 32, 32],
        "layer2": [1, 32, 16, 16],
        "layer3": [1, 64, 8, 8],
    }
    assert summary["pooled_shape"] == [1, 64] and summary["logits_shape"] == [1, 100]
    assert summary["metadata"] == {"epoch": 240, "best_acc": 71.5}
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert not loaded.model.training


def test_summary_input_size():
    assert checkpoints._input_size("resnet20") == 32
    assert checkpoints._input_size("tv_made_up_model") == 224


def test_metadata_is_json_friendly():
    value = {
        "a": torch.tensor([1.0, 2.0]),
        "b": torch.zeros(100),
        "c": float("nan"),
        "d": (1, "x"),
        "e": argparse.Namespace(f=object),
        "g": torch.tensor(73.2),  # float32: 73.19999694824219 as a double
        "h": torch.tensor([[0.1, 2.5]], dtype=torch.float16),
    }
    out = checkpoints._jsonable(value)
    json.dumps(out, allow_nan=False)
    assert out["a"] == [1.0, 2.0] and out["b"] == "<tensor 100 float32>" and out["c"] == "nan"
    assert out["d"] == [1, "x"] and out["e"]["f"].startswith("<class")
    assert out["g"] == 73.2 and out["h"] == [[0.1, 2.5]]


def test_every_zoo_layout_is_recognised_from_names_and_shapes():
    # The community zoo's key -> shape maps (RepDistiller/mdistiller), for every registry entry.
    zoo = json.loads((FIXTURES / "repdistiller_cifar_zoo.json").read_text())
    registered = set(list_models())
    checked = 0
    for name, entry in zoo.items():
        if name not in registered:
            continue
        shapes = {key: tuple(shape) for key, shape in entry["state_dict"].items()}
        match, others = checkpoints._infer_arch(shapes, name)
        assert (match.arch, match.num_classes, others) == (name, entry["num_classes"], []), name
        checked += 1
    assert checked >= 9  # at least the CIFAR ResNets


def test_torchvision_models_are_summarised_at_224(tmp_path):
    if "tv_resnet18" not in list_models():
        pytest.skip("the registry has no tv_resnet18")
    model = create_model("tv_resnet18", num_classes=1000).eval()
    loaded = load_checkpoint(_save(tmp_path, model.state_dict()))
    assert (loaded.arch, loaded.num_classes) == ("tv_resnet18", 1000)
    summary = summarize(loaded)
    assert summary["input_shape"] == [1, 3, 224, 224]
    assert summary["logits_shape"] == [1, 1000]


class _ExecPayload:
    def __reduce__(self):
        return (exec, ("raise SystemExit('ran')",))


def test_a_torch_file_calling_a_builtin_is_named_as_refused_not_corrupt():
    buffer = io.BytesIO()
    torch.save({"weights": _ExecPayload()}, buffer)
    with pytest.raises(CheckpointError, match=r"not allowed when loading weights only \(exec\)"):
        load_checkpoint(buffer.getvalue(), name="payload.pt")
