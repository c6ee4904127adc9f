"""Which registered network a state dict belongs to, from parameter names and shapes alone.

Each registry entry's signature (names and shapes, built once on the meta device with a class
count no layer has, so the classifier's axes are known) is compared with the weights; the
exact fits are the candidates (the first wins, the others are ``also_matches``), the class
count is read from the classifier, and a weights file that fits nothing gets the closest
entries and how they differ in its message. :func:`_resolve` checks an explicit or stored
architecture the same way.

Candidates are tried in tiers, each only for weights that fit nothing in the tiers before: the
CIFAR zoo of the registry (:func:`kd_core.models.list_models`), then its torchvision networks
(``tv_*``: building them imports torchvision, about 3 s once), then the curated timm
architectures of the families whose marker key the weights hold
(:data:`kd_core.models.timm_models.CURATED_FAMILIES`: only then is timm imported).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from kd_core import models
from kd_core.checkpoints.errors import CheckpointError, _describe_keys
from kd_core.checkpoints.registry import _Found
from kd_core.models.timm_models import curated_candidates

_CLASS_PROBE = 1009  # a prime no layer width equals: the axes of this size are the head's
_CLOSEST_SHOWN = 3  # closest entries named in an error


@dataclass(frozen=True)
class _Signature:
    shapes: dict[str, tuple[int | None, ...]]  # None marks the axis that is the class count
    class_keys: tuple[str, ...]


@cache
def _signature(name: str, model_args: str = "{}") -> _Signature | None:
    """Parameter/buffer names and shapes of registry model ``name`` (built with the timm
    ``model_args`` given as JSON), built on the meta device (no memory, no weights) with a class
    count no layer has otherwise, so that the axes of that size are the classifier's; ``None``
    when the registry cannot build it."""
    args = {"model_args": json.loads(model_args)} if model_args != "{}" else {}
    try:
        with torch.device("meta"):
            model = models.create_model(name, num_classes=_CLASS_PROBE, **args)
    except Exception:
        try:  # a network whose construction needs real tensors: build it for real, once
            model = models.create_model(name, num_classes=_CLASS_PROBE, **args)
        except Exception:
            return None
    shapes: dict[str, tuple[int | None, ...]] = {}
    class_keys = []
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        if _CLASS_PROBE in shape:
            class_keys.append(key)
            shape = tuple(None if s == _CLASS_PROBE else s for s in shape)
        shapes[key] = shape
    return _Signature(shapes, tuple(class_keys))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "x".join("K" if s is None else str(s) for s in shape) or "scalar"


@dataclass
class _Match:
    arch: str
    total: int
    matching: int
    union: int
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int | None, ...]]]
    classes: set[int]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched) and len(self.classes) <= 1

    @property
    def score(self) -> float:
        return self.matching / max(self.union, 1)

    @property
    def num_classes(self) -> int | None:
        return next(iter(self.classes)) if len(self.classes) == 1 else None

    def differences(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing, first: {self.missing[0]}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected, first: {self.unexpected[0]}")
        if self.mismatched:
            key, got, want = self.mismatched[0]
            parts.append(
                f"{len(self.mismatched)} with another shape, first: {key} is "
                f"{_shape_text(got)} in the checkpoint, {_shape_text(want)} in the model"
            )
        if len(self.classes) > 1:
            parts.append(f"inconsistent class counts {sorted(self.classes)}")
        return "; ".join(parts)

    def describe(self) -> str:
        return f"{self.arch} ({self.matching}/{self.total} keys match; {self.differences()})"


def _compare(arch: str, sig: _Signature, shapes: dict[str, tuple[int, ...]]) -> _Match:
    missing, mismatched, classes = [], [], set()
    matching = 0
    for key, want in sig.shapes.items():
        got = shapes.get(key)
        if got is None:
            if key.endswith(".num_batches_tracked"):
                matching += 1  # old checkpoints lack it; BatchNorm fills it in when loading
            else:
                missing.append(key)
            continue
        same_rank = len(got) == len(want)
        if not same_rank or any(w is not None and g != w for g, w in zip(got, want, strict=True)):
            mismatched.append((key, got, want))
            continue
        classes.update(g for g, w in zip(got, want, strict=True) if w is None)
        matching += 1
    unexpected = [key for key in shapes if key not in sig.shapes]
    return _Match(
        arch,
        total=len(sig.shapes),
        matching=matching,
        union=len(sig.shapes) + len(unexpected),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        classes=classes,
    )


def _shapes(state_dict: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def _registry() -> list[str]:
    return list(models.list_models())


def _check_arch_name(arch: object, name: str) -> str:
    if isinstance(arch, str) and models.is_timm_name(arch):
        try:
            models.model_info(arch)
        except ValueError as error:
            raise CheckpointError(f"{name}: {error}") from None
        return arch
    known = _registry()
    if not isinstance(arch, str) or arch not in known:
        raise CheckpointError(
            f"{name}: unknown architecture {arch!r}; accepted names: {', '.join(known)}, or "
            "timm:<name> for a model of timm.list_models()."
        )
    return arch


def _args_key(model_args: Mapping[str, object] | None) -> str:
    return json.dumps(dict(model_args or {}), sort_keys=True)


def _match_arch(
    arch: str,
    shapes: dict[str, tuple[int, ...]],
    name: str,
    model_args: Mapping[str, object] | None = None,
) -> _Match:
    sig = _signature(arch, _args_key(model_args))
    if sig is None:
        raise CheckpointError(f"{name}: the registry could not build {arch!r} to compare with.")
    return _compare(arch, sig, shapes)


def _exact_matches(archs: list[str], shapes: dict[str, tuple[int, ...]]) -> list[_Match]:
    matches = []
    for arch in archs:
        sig = _signature(arch)
        if sig is not None:
            matches.append(_compare(arch, sig, shapes))
    return matches


def _registry_family(torchvision: bool) -> list[str]:
    return [n for n in _registry() if (models.model_info(n).family == "torchvision") == torchvision]


def _infer_arch(shapes: dict[str, tuple[int, ...]], name: str) -> tuple[_Match, list[_Match]]:
    """The candidate whose names and shapes the weights match, and the others of its tier that
    do; tiers: the CIFAR zoo, torchvision's networks, the curated timm architectures."""
    tiers = (
        lambda: _registry_family(torchvision=False),
        lambda: _registry_family(torchvision=True),
        lambda: curated_candidates(set(shapes)),
    )
    matches: list[_Match] = []
    for candidates in tiers:
        matches += _exact_matches(candidates(), shapes)
        exact = [m for m in matches if m.exact]
        if exact:
            return exact[0], exact[1:]
    closest = sorted(matches, key=lambda m: m.score, reverse=True)[:_CLOSEST_SHOWN]
    described = "; ".join(m.describe() for m in closest) or "the registry is empty"
    keys = list(shapes)
    raise CheckpointError(
        f"{name}: its weights ({len(keys)} tensors, {_describe_keys(keys)}) match no registered "
        f"architecture; closest: {described}. Check that this is a checkpoint of a network in "
        "kd_core.models.list_models() or of a curated timm family, or pass arch=... (timm:<name> "
        "for any timm model) to see how it differs from one."
    )


def _resolve(
    found: _Found, arch: str | None, num_classes: int | None, name: str
) -> tuple[str, int, tuple[str, ...]]:
    """The architecture, class count and other fitting registry entries of ``found``: an
    explicit ``arch`` (or the one its file names) must fit, else it is inferred."""
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise CheckpointError(f"num_classes must be a positive integer, got {num_classes!r}.")
    shapes = _shapes(found.state_dict)
    explicit = arch is not None
    arch = arch if explicit else found.arch
    others: tuple[str, ...] = ()
    if arch is not None:
        arch = _check_arch_name(arch, name)
        model_args = found.model_args if arch == found.arch else None
        match = _match_arch(arch, shapes, name, model_args)
        if not match.exact:
            fits = ""
            if explicit:
                with contextlib.suppress(CheckpointError):
                    best, rest = _infer_arch(shapes, name)
                    fits = f" It fits {', '.join([best.arch] + [m.arch for m in rest])}."
            origin = "" if explicit else " (as its metadata says)"
            raise CheckpointError(
                f"{name} does not fit architecture {arch!r}{origin}: {match.differences()} "
                f"({match.matching}/{match.total} keys match).{fits}"
            )
    else:
        match, rest = _infer_arch(shapes, name)
        arch, others = match.arch, tuple(m.arch for m in rest)
    classes = match.num_classes
    if classes is None:
        classes = num_classes or found.num_classes
        if classes is None:
            raise CheckpointError(
                f"{name}: cannot tell the number of classes of {arch!r}; pass num_classes=..."
            )
    if num_classes is not None and num_classes != classes:
        signature = _signature(arch, _args_key(found.model_args if arch == found.arch else None))
        head = next(iter(signature.class_keys), "classifier")  # type: ignore[union-attr]
        raise CheckpointError(
            f"{name}: its classifier has {classes} classes ({head} is "
            f"{_shape_text(shapes.get(head, ()))}), not num_classes={num_classes}; pass "
            f"num_classes={classes} or leave it out."
        )
    return arch, classes, others
