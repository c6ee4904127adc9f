"""timm checkpoints as Hugging Face hub folders: a folder (or a hub cache snapshot) with timm's
``config.json`` (``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``) beside
its weights in ``model.safetensors`` or ``pytorch_model.bin``, as ``timm.models.save_for_hf``
writes and ``huggingface_hub`` downloads them.

:func:`hub_folder` finds the snapshot a path names (the folder itself, or a cache repository
``models--org--name`` through ``refs/main``), :func:`read_hub_config` reads its config and
weights file, :func:`list_hub_checkpoints` lists the timm checkpoints of a hub cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``). Nothing is
downloaded: a folder without weights is refused with a sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kd_core.checkpoints.errors import CheckpointError
from kd_core.models.timm_models import PREFIX, timm_name_problem

if TYPE_CHECKING:
    from kd_core.checkpoints.registry import _Found

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weights files of a hub folder, in the order they are looked for."""


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_folder(path: Path) -> Path | None:
    """The folder holding the ``config.json`` that ``path`` names: ``path`` itself, or for a hub
    cache repository (``models--org--name``) the snapshot of ``refs/main`` (else the newest);
    ``None`` when ``path`` is neither."""
    if (path / CONFIG_FILE).is_file():
        return path
    snapshots = path / "snapshots"
    if not snapshots.is_dir():
        return None
    main = path / "refs" / "main"
    if main.is_file() and (snapshots / main.read_text().strip() / CONFIG_FILE).is_file():
        return snapshots / main.read_text().strip()
    folders = [f for f in snapshots.iterdir() if (f / CONFIG_FILE).is_file()]
    return max(folders, key=lambda f: f.stat().st_mtime) if folders else None


def _read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{label}: its config.json cannot be read as JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{label}: its config.json holds no settings object.")
    return config


def _is_timm_config(config: dict[str, Any]) -> bool:
    return isinstance(config.get("architecture"), str)


def read_hub_config(folder: Path, label: str) -> tuple[Path, dict[str, Any]]:
    """The weights file of hub folder ``folder`` and its timm config; a :class:`CheckpointError`
    for a config that is not timm's, names a model the installed timm lacks, or a folder
    without weights."""
    config = _read_json(folder / CONFIG_FILE, label)
    if not _is_timm_config(config):
        named = config.get("architectures") or config.get("model_type") or "no architecture"
        raise CheckpointError(
            f"{label}: its config.json is not timm's (it names {named}, not an 'architecture'); "
            "kd_core reads timm hub folders, or pass the weights file with --arch."
        )
    if timm_name_problem(PREFIX + config["architecture"]):
        import timm

        raise CheckpointError(
            f"{label}: its config.json names the architecture {config['architecture']!r}, which "
            f"the installed timm ({timm.__version__}) does not have; upgrade timm, or load the "
            "weights file with arch='timm:<name>' (--arch) naming a model it has."
        )
    for file_name in WEIGHT_FILES:
        if (folder / file_name).is_file():
            return folder / file_name, config
    raise CheckpointError(
        f"{label} has a config.json for {config['architecture']} but no weights "
        f"({' or '.join(WEIGHT_FILES)}); download them into that folder (nothing is downloaded "
        "here) or pass the weights file itself."
    )


def apply_hub_config(found: _Found, config: dict[str, Any]) -> None:
    """Name the architecture, class count, timm ``model_args`` and pretrained config that a
    timm ``config.json`` records on the weights ``found`` (older single-dict configs hold the
    pretrained config at the top level)."""
    pretrained = config.get("pretrained_cfg")
    if not isinstance(pretrained, dict):
        pretrained = {k: v for k, v in config.items() if k not in ("architecture", "model_args")}
    found.arch = PREFIX + config["architecture"]
    classes = config.get("num_classes", pretrained.get("num_classes"))
    found.num_classes = classes if isinstance(classes, int) else None
    found.model_args = dict(config.get("model_args") or {})
    found.pretrained_cfg = dict(pretrained)
    found.metadata["timm_config"] = config


@dataclass(frozen=True)
class HubCheckpoint:
    """A timm checkpoint in a hub cache: its repository id (``org/name``, or the folder name),
    the snapshot folder, the architecture and class count its config names."""

    repo: str
    folder: Path
    architecture: str
    num_classes: int | None


def list_hub_checkpoints(cache: Path | None = None) -> list[HubCheckpoint]:
    """The timm checkpoints with weights in the hub cache ``cache`` (default
    :func:`hub_cache_dir`): its repositories ``models--org--name`` and plain folders with a
    timm ``config.json``, sorted by repository id. Unreadable or non-timm folders are left out."""
    cache = hub_cache_dir() if cache is None else Path(cache).expanduser()
    if not cache.is_dir():
        return []
    found = []
    for path in sorted(cache.iterdir()):
        folder = hub_folder(path) if path.is_dir() else None
        if folder is None:
            continue
        try:
            config = _read_json(folder / CONFIG_FILE, str(folder))
        except CheckpointError:
            continue
        if not _is_timm_config(config) or not any((folder / f).is_file() for f in WEIGHT_FILES):
            continue
        repo = path.name.removeprefix("models--").replace("--", "/")
        classes = config.get("num_classes")
        classes = classes if isinstance(classes, int) else None
        found.append(HubCheckpoint(repo, folder, PREFIX + config["architecture"], classes))
    return found
