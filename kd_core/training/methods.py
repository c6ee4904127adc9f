"""Named distillation methods (an objective and its loss parameters) and the sets of them that
are compared side by side, for the command line (``train --compare``), the Distill page's
compare mode and the results table.

Weights follow the community's CIFAR recipe (RepDistiller): KD is ``0.1 CE + 0.9 KD`` at
temperature 4, AT and AMD add ``1000 x`` their loss to CE (Jeon et al. use ``CE + 1000 AMD``).

Example::

    [method.label for method in method_set("classroom")]  # ['vanilla', 'KD', 'AT', 'AMD']
    config.with_overrides(METHODS["amd"].overrides())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KD_PARAMS = {"kd": {"temperature": 4.0}}


@dataclass(frozen=True)
class Method:
    """A label people read, the objective's weights and the losses' parameters."""

    label: str
    objective: dict[str, float]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def uses_teacher(self) -> bool:
        return set(self.objective) != {"ce"}

    def overrides(self) -> dict[str, Any]:
        """The :meth:`TrainConfig.with_overrides` fields that make a config this method."""
        return {"objective": dict(self.objective), "loss_params": dict(self.params)}


METHODS: dict[str, Method] = {
    "vanilla": Method("vanilla", {"ce": 1.0}),
    "kd": Method("KD", {"ce": 0.1, "kd": 0.9}, KD_PARAMS),
    "at": Method("AT", {"ce": 1.0, "at": 1000.0}),
    "amd": Method("AMD", {"ce": 1.0, "amd": 1000.0}),
    "amd_local": Method("AMD global+local", {"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}}),
    "amd_kd": Method("AMD+KD", {"ce": 0.1, "kd": 0.9, "amd": 1000.0}, KD_PARAMS),
}
METHOD_SETS: dict[str, tuple[str, ...]] = {
    # A class's first look: training alone, the two classic teachers' signals, and AMD.
    "classroom": ("vanilla", "kd", "at", "amd"),
    # The paper's comparison: AMD and its variants against KD and AT.
    "paper": ("kd", "at", "amd", "amd_local", "amd_kd"),
}


def method_set(text: str) -> list[str]:
    """Method names from a set's name (``paper``, ``classroom``) or a comma-separated list
    (``vanilla,amd``); a ``ValueError`` names what is unknown, repeated or missing."""
    names = list(METHOD_SETS.get(text.strip(), ())) or [
        part.strip() for part in text.split(",") if part.strip()
    ]
    if not names:
        raise ValueError(
            f"Choose at least one method: a set ({', '.join(METHOD_SETS)}) or names from "
            f"{', '.join(METHODS)}."
        )
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(
            f"Unknown method {unknown[0]!r}; accepted: {', '.join(METHODS)} or a set "
            f"({', '.join(METHOD_SETS)})."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Method {repeated[0]!r} is listed twice; name each method once.")
    return names
