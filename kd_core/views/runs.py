"""What the Runs page (and the Distill page, for the run it launched) shows about runs, as
plain data: where a run stands, one row per run, the final metrics of a run, comparisons,
queue places and CSV text.

Metric records are those of ``metrics.jsonl`` (see :mod:`kd_core.training.trainer`): ``step``
records (``loss``, ``terms``, ``lr``, ``progress``) and ``epoch`` records (``test_top1``,
``best_top1``, ``seconds``, ...). A resumed run may repeat an epoch; the later record wins.

Example::

    manager = RunManager("runs")
    rows = [run_row(info, list(RunFiles(info.path).read_metrics())) for info in manager.list()]
    csv_text = records_csv(rows)
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kd_core.training.run_files import FINAL_STATES, RunFiles, latest_records
from kd_core.workspace import method_name

if TYPE_CHECKING:
    from kd_core.training.runs import RunInfo

Record = Mapping[str, Any]


def format_duration(seconds: float | None) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``; ``"–"`` for ``None`` or non-finite.

    >>> format_duration(200)
    '3 min 20 s'
    """
    if seconds is None or not math.isfinite(seconds):
        return "–"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 600:
        minutes, rest = divmod(total, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(round(total / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def epoch_records(records: Sequence[Record]) -> list[Record]:
    """The ``epoch`` records, one per epoch in epoch order (the last written wins)."""
    return latest_records(records, "epoch", "epoch")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands, from its status and metric records.

    Attributes:
        fraction: share of the planned training done, in ``[0, 1]`` (1 once finished).
        step, loss, terms, lr: the latest logged step (``terms``: loss name -> weighted value).
        last_top1, best_top1: test top-1 (%) of the latest epoch and the best so far.
    """

    state: str
    fraction: float
    epochs_done: int
    epochs: int
    step: int | None = None
    loss: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    last_top1: float | None = None
    best_top1: float | None = None
    error: str | None = None


def run_progress(info: RunInfo, records: Sequence[Record]) -> RunProgress:
    """The :class:`RunProgress` of ``info`` given its metric ``records``."""
    epochs = epoch_records(records)
    steps = [r for r in records if r.get("kind") == "step"]
    latest_step = steps[-1] if steps else {}
    latest_epoch = epochs[-1] if epochs else {}
    fraction = _number(records[-1].get("progress")) if records else None
    if info.state == "finished":
        fraction = 1.0
    terms = {k: v for k, v in latest_step.get("terms", {}).items() if _number(v) is not None}
    status = info.status
    return RunProgress(
        state=info.state,
        fraction=min(max(fraction or 0.0, 0.0), 1.0),
        epochs_done=int(latest_epoch.get("epoch", status.get("epochs_done", 0))),
        epochs=int(info.config.get("epochs", 0)),
        step=latest_step.get("step"),
        loss=_number(latest_step.get("loss")),
        terms=terms,
        lr=_number(latest_step.get("lr")),
        last_top1=_number(latest_epoch.get("test_top1", status.get("last_top1"))),
        best_top1=_number(latest_epoch.get("best_top1", status.get("best_top1"))),
        error=status.get("error") if info.state == "failed" else None,
    )


def run_duration(info: RunInfo, now: float | None = None) -> float | None:
    """Seconds since the run (last) started, up to its end; ``None`` before it starts."""
    started = _number(info.status.get("started_at"))
    if started is None:
        return None
    if info.state in FINAL_STATES:
        end = _number(info.status.get("finished_at")) or _number(info.status.get("updated_at"))
    else:
        end = time.time() if now is None else now
    return None if end is None else max(end - started, 0.0)


def teacher_name(path: str | None) -> str:
    """A short name for a teacher checkpoint path: its file name without ``.pt``, the run's
    folder name for a run's ``best.pt``/``last.pt``, or ``"none"``.

    >>> teacher_name("runs/20260101-120000-amd/best.pt")
    'run 20260101-120000-amd'
    """
    if not path:
        return "none"
    file = Path(path)
    if file.name in (RunFiles(file.parent).best.name, RunFiles(file.parent).last.name):
        return f"run {file.parent.name}"
    return file.stem


def objective_name(config: Mapping[str, Any]) -> str:
    """The method name of a run's config (``vanilla``, ``AMD``, ``KD+AT``...)."""
    return method_name(config.get("objective", {}), config.get("loss_params"))


def run_row(info: RunInfo, records: Sequence[Record], now: float | None = None) -> dict[str, Any]:
    """One row of the runs table: run id, state, student, teacher, objective, epochs done,
    best and last top-1 (%), duration and creation time."""
    progress = run_progress(info, records)
    created = _number(info.status.get("created_at"))
    return {
        "run": info.run_id,
        "state": info.state,
        "student": info.config.get("student", "?"),
        "teacher": teacher_name(info.config.get("teacher")),
        "objective": objective_name(info.config),
        "epochs": f"{progress.epochs_done}/{progress.epochs}",
        "best top-1 (%)": progress.best_top1,
        "last top-1 (%)": progress.last_top1,
        "duration": format_duration(run_duration(info, now)),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "–",
    }


def final_metrics(info: RunInfo, records: Sequence[Record]) -> dict[str, Any]:
    """The figures a run ended with (or has so far): top-1/top-5 (%), test loss, train top-1,
    epochs, training time (sum of epoch times, s) and mean training speed (images/s)."""
    progress = run_progress(info, records)
    epochs = epoch_records(records)
    last = epochs[-1] if epochs else {}
    seconds = [s for s in (_number(r.get("seconds")) for r in epochs) if s is not None]
    speeds = [s for s in (_number(r.get("images_per_second")) for r in epochs) if s is not None]
    return {
        "best top-1 (%)": progress.best_top1,
        "last top-1 (%)": progress.last_top1,
        "last top-5 (%)": _number(last.get("test_top5")),
        "test loss": _number(last.get("test_loss")),
        "train top-1 (%)": _number(last.get("train_top1")),
        "epochs": progress.epochs_done,
        "training time (s)": sum(seconds) if seconds else None,
        "images/s": sum(speeds) / len(speeds) if speeds else None,
    }


def comparison_rows(
    runs: Sequence[RunInfo], records: Mapping[str, Sequence[Record]]
) -> list[dict[str, Any]]:
    """One row per run for a comparison table: run id, student, objective and
    :func:`final_metrics`, sorted by best top-1, best first (runs without one last)."""
    rows = [
        {
            "run": info.run_id,
            "student": info.config.get("student", "?"),
            "objective": objective_name(info.config),
            **final_metrics(info, records.get(info.run_id, [])),
        }
        for info in runs
    ]
    best = "best top-1 (%)"
    return sorted(rows, key=lambda row: (row[best] is None, -(row[best] or 0.0)))


def queue_position(runs: Sequence[RunInfo], run_id: str) -> int | None:
    """1-based place of ``run_id`` among the queued runs (oldest queued first, as the worker
    takes them), or ``None`` when it is not queued."""
    queued = sorted(
        (r for r in runs if r.state == "queued"),
        key=lambda r: r.status.get("resumed_at") or r.status.get("created_at") or 0.0,
    )
    ids = [r.run_id for r in queued]
    return ids.index(run_id) + 1 if run_id in ids else None


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def records_csv(records: Sequence[Record]) -> str:
    """CSV text of ``records`` (metric records or table rows): nested mappings become dotted
    columns (``terms.amd``), columns in order of first appearance, missing values empty
    (``""`` when there are no records).

    >>> records_csv([{"step": 1, "terms": {"ce": 2.0}}, {"epoch": 1}])
    'step,terms.ce,epoch\\r\\n1,2.0,\\r\\n,,1\\r\\n'
    """
    if not records:
        return ""
    rows = [_flatten(r) for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file (``""`` when it does not exist yet)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def group_of(info: RunInfo) -> str | None:
    """The id of the group ``info`` trained in, or ``None`` for a run alone."""
    group = info.status.get("group")
    return group if isinstance(group, str) and group else None


def _epochs_done(text: str) -> int:
    """``"3/10"`` -> 3 (the runs table's epochs column)."""
    done = text.split("/", 1)[0]
    return int(done) if done.isdigit() else -1


def _state_summary(states: Sequence[str]) -> str:
    counts = {state: states.count(state) for state in dict.fromkeys(states)}
    if len(counts) == 1:
        return states[0]
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def table_rows(
    runs: Sequence[RunInfo], records: Mapping[str, Sequence[Record]], now: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The runs table, in the order of ``runs``: one row per run alone and one per group (at
    its first run), and each group's own rows by group id, for the row that expands."""
    rows: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for info in runs:
        row = run_row(info, records.get(info.run_id, ()), now)
        group = group_of(info)
        if group is None:
            rows.append(row)
            continue
        if group not in groups:
            groups[group] = []
            rows.append({"run": group})
        groups[group].append(row)
    for row in rows:
        members = groups.get(row["run"])
        if members is None:
            continue
        teachers = {m["teacher"] for m in members} - {"none"}
        row.update(
            {
                "state": _state_summary([m["state"] for m in members]),
                "student": ", ".join(dict.fromkeys(m["student"] for m in members)),
                "teacher": ", ".join(sorted(teachers)) or "none",
                "objective": f"group of {len(members)}: "
                + ", ".join(m["objective"] for m in members),
                "epochs": max((m["epochs"] for m in members), key=_epochs_done),
                "best top-1 (%)": None,
                "last top-1 (%)": None,
                "duration": members[0]["duration"],
                "created": members[0]["created"],
            }
        )
    return rows, groups
