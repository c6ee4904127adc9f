"""The workspace: listing bundled, run and uploaded checkpoints, storing uploads safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from kd_core.models import create_model
from kd_core.workspace import (
    RUNS_ENV,
    UPLOADS_ENV,
    bundled_checkpoints,
    default_selection,
    find_entry,
    list_checkpoints,
    method_name,
    run_checkpoints,
    runs_root,
    store_upload,
    uploaded_checkpoints,
    uploads_dir,
)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "resnet8.pt"
    save_checkpoint(path, create_model("resnet8", num_classes=10), "resnet8", 10)
    return path.read_bytes()


def test_bundled_checkpoints_are_the_teacher_and_six_students() -> None:
    entries = bundled_checkpoints()
    assert [e.role for e in entries].count("teacher") == 1
    assert len(entries) == 7
    teacher = next(e for e in entries if e.role == "teacher")
    assert teacher.arch == "resnet20" and teacher.dataset == "shapes" and teacher.top1 >= 95
    assert teacher.label == f"resnet20 teacher · bundled · {teacher.top1:.2f}%"
    assert all(e.path.is_file() and e.key.startswith("bundled:") for e in entries)


def test_default_selection_is_teacher_with_vanilla_and_amd_students() -> None:
    teacher, students = default_selection(bundled_checkpoints())
    assert teacher == "bundled:teacher_resnet20"
    assert students == ["bundled:student_resnet8_vanilla", "bundled:student_resnet8_amd"]
    assert default_selection([]) == (None, [])


@pytest.mark.parametrize(
    ("objective", "params", "expected"),
    [
        ({"ce": 1.0}, {}, "vanilla"),
        ({"ce": 0.1, "kd": 0.9}, {}, "KD"),
        ({"ce": 1.0, "amd": 1000.0}, None, "AMD"),
        ({"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}}, "AMD global+local"),
        ({"ce": 0.1, "kd": 0.9, "amd": 1000.0}, {}, "AMD+KD"),
        ({"ce": 1.0, "at": 0.0}, {}, "vanilla"),
    ],
)
def test_method_name(objective: dict, params: dict | None, expected: str) -> None:
    assert method_name(objective, params) == expected


def _fake_run(root: Path, name: str, checkpoint: bytes, top1: float) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"student": "resnet8", "objective": {"ce": 1.0, "amd": 1000.0}})
    )
    (run / "status.json").write_text(json.dumps({"state": "finished", "best_top1": top1}))
    (run / "best.pt").write_bytes(checkpoint)


def test_run_checkpoints_list_runs_with_a_best_checkpoint(
    tmp_path: Path, checkpoint_bytes: bytes
) -> None:
    _fake_run(tmp_path, "amd-1", checkpoint_bytes, 61.5)
    (tmp_path / "queued-run").mkdir()  # no checkpoint yet: not listed
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    (damaged / "best.pt").write_bytes(checkpoint_bytes)
    entries = run_checkpoints(tmp_path)
    assert [e.key for e in entries] == ["run:amd-1"]
    assert entries[0].label == "resnet8 AMD (amd-1) · run · 61.50%"
    assert run_checkpoints(tmp_path / "missing") == []


def test_store_upload_keeps_a_valid_checkpoint_under_its_hash(
    tmp_path: Path, checkpoint_bytes: bytes
) -> None:
    entry = store_upload(checkpoint_bytes, "../../etc/passwd", tmp_path)
    assert entry.path.parent == tmp_path and entry.path.suffix == ".pt"
    assert entry.arch == "resnet8" and entry.source == "upload"
    assert "passwd" in entry.label and not (tmp_path.parent / "etc").exists()
    assert load_checkpoint(entry.path).arch == "resnet8"
    again = store_upload(checkpoint_bytes, "same.pt", tmp_path)
    assert again.key == entry.key and len(list(tmp_path.glob("*.pt"))) == 1


@pytest.mark.parametrize("data", [b"", b"hello, not a checkpoint", b"\x80\x02garbage" * 10])
def test_store_upload_rejects_unusable_bytes_and_writes_nothing(
    tmp_path: Path, data: bytes
) -> None:
    with pytest.raises(CheckpointError):
        store_upload(data, "bad.pt", tmp_path / "uploads")
    assert uploaded_checkpoints(tmp_path / "uploads") == []


def test_store_upload_respects_the_size_limit(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    with pytest.raises(CheckpointError, match="over the"):
        store_upload(checkpoint_bytes, "big.pt", tmp_path, max_bytes=1000)


def test_list_and_find_entries(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    _fake_run(tmp_path / "runs", "r1", checkpoint_bytes, 50.0)
    store_upload(checkpoint_bytes, "mine.pt", tmp_path / "uploads")
    entries = list_checkpoints(runs=tmp_path / "runs", uploads=tmp_path / "uploads")
    assert [e.source for e in entries] == ["bundled"] * 7 + ["upload", "run"]
    assert find_entry(entries, "run:r1").path == tmp_path / "runs" / "r1" / "best.pt"
    with pytest.raises(CheckpointError, match="no longer available"):
        find_entry(entries, "run:deleted")


def test_roots_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "r"))
    monkeypatch.setenv(UPLOADS_ENV, str(tmp_path / "u"))
    assert runs_root() == tmp_path / "r" and uploads_dir() == tmp_path / "u"
