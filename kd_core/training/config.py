"""The full, resolved configuration of one training run, and the named presets.

A run is defined by a :class:`TrainConfig` alone: it is written to the run folder as JSON,
read back on resume, and built from presets, files (JSON or YAML) and command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kd_core.losses.objective import check_weights
from kd_core.losses.registry import loss_class
from kd_core.training.device import DATA_ON_DEVICE, PRECISIONS
from kd_core.training.optim import OptimizerConfig


@dataclass
class TrainConfig:
    """Everything that defines a run (see :data:`PRESETS` for complete examples).

    ``seed`` drives initialisation, batch order and augmentation; ``data_seed`` picks the
    generated data (``shapes``), fixed across runs by default so that seeds compare models on
    the same images. ``teacher`` is a checkpoint path (any format that
    :func:`kd_core.checkpoints.load_checkpoint` reads) or ``None`` for a student trained alone;
    ``objective`` maps loss names to weights and ``loss_params`` holds per-loss parameters
    (e.g. ``{"amd": {"local": True}}``). ``data_on_device`` (``auto``/``on``/``off``) picks
    where batches are prepared (:mod:`kd_core.training.data_path`); ``compile`` runs student and
    teacher through ``torch.compile`` (uncompiled, with one logged sentence, where it fails).
    """

    student: str = "resnet8"
    teacher: str | None = None
    dataset: str = "shapes"
    data_root: str | None = None
    objective: dict[str, float] = field(default_factory=lambda: {"ce": 1.0})
    loss_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    log_every: int = 20
    name: str | None = None
    data_on_device: str = "auto"
    compile: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data; those of :data:`WRITTEN_WHEN_SET` only when they differ
        from their defaults, so a configuration written before they existed reads back to the
        same dict (runs and recorded results keyed by it are found again)."""
        data = dataclasses.asdict(self)
        data["optimizer"]["milestones"] = list(self.optimizer.milestones)
        for name, default in WRITTEN_WHEN_SET.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain mapping (a config file); unknown keys are an error that lists the
        known ones."""
        _reject_unknown_keys(data, cls, "configuration")
        values = dict(data)
        if "optimizer" in values:
            values["optimizer"] = _optimizer_from(values["optimizer"])
        return cls(**values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with top-level or ``optimizer.``-prefixed (e.g. ``lr``) fields replaced."""
        data = self.to_dict()
        optimizer_fields = {f.name for f in dataclasses.fields(OptimizerConfig)}
        for key, value in overrides.items():
            if key in optimizer_fields:
                data["optimizer"][key] = value
            else:
                data[key] = value
        return TrainConfig.from_dict(data)

    def check(self) -> None:
        """Every field that can be checked without loading anything; a ``ValueError`` whose
        message names the field and what is accepted."""
        for name in ("epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or empty, got {value!r}.")
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        for name in ("teacher", "data_root", "name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be text or empty, got {value!r}.")
        if not isinstance(self.device, str):
            raise ValueError(
                f"device must be text (auto, cpu, cuda, cuda:N, mps), got {self.device!r}."
            )
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if self.data_on_device not in DATA_ON_DEVICE:
            raise ValueError(
                f"data_on_device must be one of {', '.join(DATA_ON_DEVICE)}, got "
                f"{self.data_on_device!r}."
            )
        _check_loss_params(self.loss_params)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}."
            )
        weights = check_weights(self.objective)
        if self.teacher is None:
            needing = [
                name for name, w in weights.items() if w > 0 and loss_class(name).needs_teacher
            ]
            if needing:
                raise ValueError(
                    f"The objective terms {needing} need a teacher checkpoint; "
                    "give one (--teacher PATH) or use ce alone."
                )
        self.optimizer.check(self.epochs)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


WRITTEN_WHEN_SET = {"data_on_device": "auto", "compile": False}
"""Fields added after runs and results were recorded: written by :meth:`TrainConfig.to_dict`
only when set to something else than these defaults."""


def _check_loss_params(loss_params: object) -> None:
    """``loss_params`` must map loss names to mappings of parameters (values are checked when
    the losses are built)."""
    if not isinstance(loss_params, Mapping):
        raise ValueError(
            f"loss_params must map loss names to their parameters, e.g. "
            f"{{'amd': {{'margin': 1.35}}}}, got {loss_params!r}."
        )
    for name, params in loss_params.items():
        loss_class(name)  # unknown names raise with the list of accepted ones
        if not isinstance(params, Mapping):
            raise ValueError(
                f"loss_params[{name!r}] must be a mapping of parameters, got {params!r}."
            )


def _reject_unknown_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {what} keys {unknown}; known keys: {sorted(known)}.")


def _optimizer_from(value: Any) -> OptimizerConfig:
    if isinstance(value, OptimizerConfig):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"optimizer must be a mapping of optimiser settings, got {value!r}.")
    _reject_unknown_keys(value, OptimizerConfig, "optimizer")
    values = dict(value)
    if isinstance(values.get("milestones"), (list, tuple)):
        values["milestones"] = tuple(values["milestones"])
    return OptimizerConfig(**values)


# The bundled students' recipe (scripts/shapes_recipe.py, docs/results.md): 3 epochs of the
# 50,000 embedded images, about 2.5 minutes for a resnet8 alone and 4 distilled on 2 cores.
_SHAPES_SHORT = TrainConfig(
    dataset="shapes",
    epochs=3,
    batch_size=128,
    optimizer=OptimizerConfig(lr=0.1, schedule="cosine", warmup_epochs=0.2),
    loss_params={"kd": {"temperature": 4.0}},
)
PRESETS: dict[str, TrainConfig] = {
    # The community CIFAR-100 recipe (RepDistiller): 240 epochs, step decay, KD T = 4.
    "cifar100": TrainConfig(
        dataset="cifar100",
        epochs=240,
        batch_size=64,
        optimizer=OptimizerConfig(
            lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="step", milestones=(150, 180, 210)
        ),
        loss_params={"kd": {"temperature": 4.0}},
    ),
    "shapes-short": _SHAPES_SHORT,
    # A live demo: the classroom group (vanilla, KD, AT, AMD) side by side in at most about
    # 4 minutes on 2 cores: the same recipe for one epoch of the first 30,000 images.
    "shapes-classroom": dataclasses.replace(_SHAPES_SHORT, epochs=1, limit_train=30_000),
}


def preset(name: str) -> TrainConfig:
    """A fresh copy of preset ``name``."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; accepted presets: {', '.join(PRESETS)}.")
    return TrainConfig.from_dict(PRESETS[name].to_dict())
