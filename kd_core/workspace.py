"""The app's workspace: which checkpoints there are, where files go, and the default choice.

Four sources of checkpoints, each listed as :class:`CheckpointEntry`:

- ``bundled``: ``assets/checkpoints`` (described by its ``manifest.json``), the embedded default;
- ``run``: the ``best.pt`` of every run folder under the runs root;
- ``upload``: files people uploaded, validated and stored under the uploads folder as
  ``<sha256 prefix>.pt`` with a JSON side file (original name, architecture, classes);
- ``hub``: the timm checkpoints of a Hugging Face hub cache (default ``$HF_HUB_CACHE`` or
  ``~/.cache/huggingface/hub``; :func:`kd_core.checkpoints.hub.list_hub_checkpoints`).

Roots: ``$KD_CORE_RUNS`` (default ``<project>/runs``) and ``$KD_CORE_UPLOADS`` (default
``<cache folder>/uploads``). Nothing is ever read or written outside these roots and the assets
folder: keys, not paths, come from the user, and uploads are named by their content hash.

Example::

    entries = list_checkpoints()
    teacher, students = default_selection(entries)
    entry = store_upload(data, "my_resnet.pth")      # CheckpointError if unusable
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from kd_core import checkpoints  # names resolved on use: listing checkpoints needs no torch
from kd_core.checkpoints.errors import MAX_CHECKPOINT_BYTES, CheckpointError
from kd_core.checkpoints.hub import list_hub_checkpoints
from kd_core.data.cache import cache_dir
from kd_core.data.registry import dataset_info, list_datasets
from kd_core.training.run_files import RunFiles, write_json_atomic

PROJECT_DIR = Path(__file__).resolve().parents[1]
ASSETS_DIR = PROJECT_DIR / "assets" / "checkpoints"
RUNS_ENV = "KD_CORE_RUNS"
UPLOADS_ENV = "KD_CORE_UPLOADS"
DEFAULT_STUDENTS = ("student_resnet8_vanilla", "student_resnet8_amd")
"""Bundled students shown by default: the baseline and AMD, the comparison the app is about."""
DEFAULT_SAMPLES = 1000
"""How many images of the split the analyses use by default (the sidebar's and the report's)."""


def runs_root() -> Path:
    """Where runs live: ``$KD_CORE_RUNS`` if set, else ``<project>/runs``."""
    configured = os.environ.get(RUNS_ENV, "").strip()
    return Path(configured).expanduser().resolve() if configured else PROJECT_DIR / "runs"


def dataset_key(dataset: str, split: str, data_root: str | None = None) -> str:
    """What identifies a workspace's data in the feature cache, e.g. ``"shapes/test/default"``
    (the app and the report share cached features through it)."""
    return f"{dataset}/{split}/{data_root or 'default'}"


def uploads_dir() -> Path:
    """Where uploaded checkpoints are kept: ``$KD_CORE_UPLOADS`` if set, else the cache's
    ``uploads`` folder."""
    configured = os.environ.get(UPLOADS_ENV, "").strip()
    return Path(configured).expanduser().resolve() if configured else cache_dir() / "uploads"


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint the app can use.

    Attributes:
        key: stable identifier (``bundled:<name>``, ``run:<run id>``, ``upload:<hash>``,
            ``hub:<repo id>``); what widgets store, never a path.
        label: what people read, e.g. ``"resnet20 teacher · bundled · 84.8%"``.
        path: the file.
        source: ``bundled``, ``run``, ``upload`` or ``file`` (a path given on the command line).
        arch: the architecture's registry name.
        dataset: the dataset it was trained on, when known.
        top1: its test top-1 in percent, when known.
        role: ``teacher``, ``student`` or ``""`` (unknown).
        num_classes: how many classes it classifies, as recorded beside the file (``None``
            when only its weights tell: read them with ``load_checkpoint``).
    """

    key: str
    label: str
    path: Path
    source: str
    arch: str
    dataset: str | None = None
    top1: float | None = None
    role: str = ""
    num_classes: int | None = None


def method_name(objective: dict[str, float], loss_params: dict | None = None) -> str:
    """A short name for an objective: ``vanilla`` (CE alone), else its distillation terms,
    e.g. ``KD``, ``AMD``, ``AMD global+local``, ``AMD+KD``.

    >>> method_name({"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}})
    'AMD global+local'
    """
    local = bool((loss_params or {}).get("amd", {}).get("local"))
    terms = [
        "AMD global+local" if name == "amd" and local else name.upper()
        for name, weight in sorted(objective.items(), key=lambda item: item[0] != "amd")
        if name != "ce" and weight
    ]
    return "+".join(terms) if terms else "vanilla"


def _class_count(recorded: object, dataset: object) -> int | None:
    """A checkpoint's class count: the one recorded beside it, else its dataset's when that
    dataset has a fixed count (``imagefolder`` has none), else ``None``."""
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        return recorded
    if isinstance(dataset, str) and dataset in list_datasets():
        return dataset_info(dataset).num_classes
    return None


def _label(name: str, source: str, top1: float | None) -> str:
    accuracy = f" · {top1:.2f}%" if top1 is not None else ""
    return f"{name} · {source}{accuracy}"


def bundled_checkpoints(folder: Path = ASSETS_DIR) -> list[CheckpointEntry]:
    """The bundled checkpoints listed in ``folder/manifest.json`` whose files exist."""
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        return []
    manifest = json.loads(manifest_file.read_text())
    entries = []
    for item in manifest.get("checkpoints", []):
        path = folder / Path(item["file"]).name
        if not path.is_file():
            continue
        role = item.get("role", "")
        method = method_name(item.get("objective", {}), item.get("loss_params"))
        name = f"{item['arch']} {'teacher' if role == 'teacher' else method}"
        entries.append(
            CheckpointEntry(
                key=f"bundled:{item['name']}",
                label=_label(name, "bundled", item.get("top1")),
                path=path,
                source="bundled",
                arch=item["arch"],
                dataset=item.get("dataset"),
                top1=item.get("top1"),
                role=role,
                num_classes=_class_count(item.get("num_classes"), item.get("dataset")),
            )
        )
    return entries


def run_checkpoints(root: Path | None = None) -> list[CheckpointEntry]:
    """The best checkpoint of every run under ``root`` that has one (newest first)."""
    root = runs_root() if root is None else root
    if not root.is_dir():
        return []
    entries = []
    for run_dir in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        files = RunFiles(run_dir)
        if not files.best.is_file() or not files.config.is_file():
            continue
        try:
            config = json.loads(files.config.read_text())
            status = files.read_status() if files.status.is_file() else {}
        except (OSError, ValueError):
            continue  # a run folder being written or damaged: list it once it reads back
        top1 = status.get("best_top1")
        entries.append(
            CheckpointEntry(
                key=f"run:{run_dir.name}",
                label=_label(
                    f"{config.get('student', '?')} "
                    f"{method_name(config.get('objective', {}), config.get('loss_params'))} "
                    f"({run_dir.name})",
                    "run",
                    top1,
                ),
                path=files.best,
                source="run",
                arch=str(config.get("student", "")),
                dataset=config.get("dataset"),
                top1=top1,
                role="student",
                num_classes=_class_count(None, config.get("dataset")),
            )
        )
    return entries


def uploaded_checkpoints(folder: Path | None = None) -> list[CheckpointEntry]:
    """Checkpoints stored by :func:`store_upload` (newest first)."""
    folder = uploads_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    entries = []
    for side_file in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        path = side_file.with_suffix(".pt")
        try:
            info = json.loads(side_file.read_text())
        except (OSError, ValueError):
            continue
        if not path.is_file():
            continue
        entries.append(
            CheckpointEntry(
                key=f"upload:{path.stem}",
                label=_label(f"{info['arch']} {info['original_name']}", "uploaded", None),
                path=path,
                source="upload",
                arch=info["arch"],
                num_classes=_class_count(info.get("num_classes"), None),
            )
        )
    return entries


def hub_checkpoints(cache: Path | None = None) -> list[CheckpointEntry]:
    """The timm checkpoints of the hub cache ``cache`` (default: Hugging Face's)."""
    return [
        CheckpointEntry(
            key=f"hub:{found.repo}",
            label=_label(f"{found.architecture} {found.repo}", "hub", None),
            path=found.folder,
            source="hub",
            arch=found.architecture,
            num_classes=found.num_classes,
        )
        for found in list_hub_checkpoints(cache)
    ]


def list_checkpoints(
    assets: Path = ASSETS_DIR,
    runs: Path | None = None,
    uploads: Path | None = None,
    hub: Path | None = None,
) -> list[CheckpointEntry]:
    """Every checkpoint the app can use: bundled, then uploads, then runs, then the timm
    checkpoints of the hub cache ``hub`` (default: Hugging Face's)."""
    return (
        bundled_checkpoints(assets)
        + uploaded_checkpoints(uploads)
        + run_checkpoints(runs)
        + hub_checkpoints(hub)
    )


def default_selection(entries: list[CheckpointEntry]) -> tuple[str | None, list[str]]:
    """``(teacher key, student keys)``: the bundled teacher with the vanilla and AMD students,
    or, without bundled files, the first entry as teacher and no students."""
    keys = {entry.key for entry in entries}
    teachers = [e.key for e in entries if e.role == "teacher"]
    teacher = teachers[0] if teachers else (entries[0].key if entries else None)
    students = [f"bundled:{name}" for name in DEFAULT_STUDENTS if f"bundled:{name}" in keys]
    return teacher, students


def store_upload(
    data: bytes,
    original_name: str,
    folder: Path | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
    arch: str | None = None,
) -> CheckpointEntry:
    """Validate an uploaded checkpoint and keep it under the uploads folder.

    The bytes are loaded first (:func:`~kd_core.checkpoints.load_checkpoint`: no pickle code
    runs, the architecture is detected); only a usable checkpoint is written, atomically, as
    ``<first 16 hex of sha256>.pt``: the user's file name is kept as metadata only. ``arch``
    names the architecture (e.g. ``timm:<name>``) when the weights alone do not tell.

    Raises:
        CheckpointError: the bytes are not a usable checkpoint (the message says why).
    """
    display_name = Path(str(original_name)).name[:120] or "uploaded file"
    loaded = checkpoints.load_checkpoint(
        bytes(data), arch=arch, name=display_name, max_bytes=max_bytes
    )
    folder = uploads_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = folder / f"{digest}.pt"
    if not path.is_file():
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)
    info = {"original_name": display_name, "arch": loaded.arch, "num_classes": loaded.num_classes}
    write_json_atomic(path.with_suffix(".json"), info)
    return next(e for e in uploaded_checkpoints(folder) if e.key == f"upload:{digest}")


def find_entry(entries: list[CheckpointEntry], key: str) -> CheckpointEntry:
    """The entry with ``key``; a :class:`CheckpointError` if it is gone (deleted run...)."""
    for entry in entries:
        if entry.key == key:
            return entry
    raise CheckpointError(
        f"The checkpoint {key!r} is no longer available (deleted?); choose another one."
    )


def entry_for_file(path: str | os.PathLike, entries: list[CheckpointEntry]) -> CheckpointEntry:
    """The entry of ``entries`` whose file is ``path`` (a bundled checkpoint keeps its name and
    accuracy), else a new entry of source ``file`` named after the file, its architecture read
    from the weights.

    Raises:
        CheckpointError: ``path`` is not a usable checkpoint (the message says why).
    """
    resolved = Path(path).expanduser().resolve()
    for entry in entries:
        if entry.path.resolve() == resolved:
            return entry
    loaded = checkpoints.load_checkpoint(resolved)
    return CheckpointEntry(
        key=f"file:{resolved}",
        label=_label(f"{loaded.arch} {resolved.stem}", "file", None),
        path=resolved,
        source="file",
        arch=loaded.arch,
        num_classes=loaded.num_classes,
    )
