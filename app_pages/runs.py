"""Runs: every training run under the runs folder (including runs started before the server
restarted: they are just folders), compared side by side, and one run in detail with its
curves, log, downloads and actions (resume, cancel, delete)."""

from __future__ import annotations

import json

import streamlit as st

from app_pages._models import run_manager
from app_pages._shared import FIGURE_CONFIG, data_table, project_path
from kd_core.analysis.errors import AnalysisError
from kd_core.figures.training import METRIC_TITLES, compare_runs_figure, training_curves_figure
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.views.runs import (
    comparison_rows,
    epoch_records,
    log_tail,
    objective_name,
    records_csv,
    table_rows,
)

COMPARE_METRICS = ("test_top1", "train_top1", "test_loss", "train_loss", "loss", "lr")
COMPARE_DEFAULT = 3
LOG_LINES = 40
MESSAGE_KEY = "runs_message"
PERCENT = st.column_config.NumberColumn(format="%.2f")


def _done(message: str) -> None:
    """Show ``message`` after the rerun that refreshes the list."""
    st.session_state[MESSAGE_KEY] = message
    st.rerun()


st.title("Runs")
manager = run_manager()
message = st.session_state.pop(MESSAGE_KEY, None)
if message:
    st.success(message)
try:
    runs = manager.list()
except OSError as error:
    st.error(f"The runs folder {manager.root} cannot be read ({error}).")
    st.stop()
if not runs:
    st.info(
        f"No runs yet (runs folder: {project_path(manager.root)}). Train a student on the "
        "**Distill** page: its run appears here, with its curves, log and checkpoint."
    )
    st.stop()

records = {info.run_id: list(RunFiles(info.path).read_metrics()) for info in runs}
by_id = {info.run_id: info for info in runs}
rows, groups = table_rows(runs, records)
st.caption(
    f"{len(runs)} run(s) in {project_path(manager.root)}, newest first; a group's students "
    "(trained side by side) share one row, opened below. Runs train in the background; press "
    "Refresh to see their progress."
)
data_table(
    rows,
    file_name="runs.csv",
    key="runs_csv",
    column_config={"best top-1 (%)": PERCENT, "last top-1 (%)": PERCENT},
)
for group, members in groups.items():
    with st.expander(f"{group}: {len(members)} students trained side by side"):
        data_table(
            members,
            file_name=f"{group}.csv",
            key=f"runs_group_csv_{group}",
            label="The group's table (CSV)",
            column_config={"best top-1 (%)": PERCENT, "last top-1 (%)": PERCENT},
        )
        member_records = {m["run"]: records[m["run"]] for m in members}
        if any(epoch_records(r) for r in member_records.values()):
            st.plotly_chart(
                compare_runs_figure(member_records, "test_top1"), width="stretch",
                config=FIGURE_CONFIG, key=f"runs_group_{group}",
            )  # fmt: skip
st.caption(
    f"Every run also writes TensorBoard event files: `tensorboard --logdir "
    f"{project_path(manager.root)}` shows their curves, configurations and final metrics."
)
st.button("Refresh", help="Read the run folders again.")

st.header("Compare runs")
with_epochs = [info.run_id for info in runs if epoch_records(records[info.run_id])]
chosen = st.multiselect(
    "Runs to compare",
    list(by_id),
    default=with_epochs[:COMPARE_DEFAULT],
    key="runs_compare",
    help="One line per run; the table below lists their final metrics.",
)
metric = st.selectbox(
    "Metric",
    COMPARE_METRICS,
    format_func=lambda name: METRIC_TITLES.get(name, name),
    key="runs_metric",
    help="Per epoch, except the training loss (per logged step).",
)
if chosen:
    try:
        figure = compare_runs_figure({run_id: records[run_id] for run_id in chosen}, metric)
    except AnalysisError as error:
        st.warning(str(error))
    else:
        st.plotly_chart(figure, width="stretch", config=FIGURE_CONFIG)
    comparison = comparison_rows([by_id[run_id] for run_id in chosen], records)
    data_table(
        comparison,
        file_name="runs_comparison.csv",
        key="runs_comparison_csv",
        label="The comparison (CSV)",
        help="The final metrics of the chosen runs as CSV.",
        column_config={
            name: PERCENT for name in comparison[0] if name.endswith("(%)") or name == "test loss"
        },
    )
else:
    st.caption("Choose one or more runs to compare them.")

st.header("One run")
# The options are the bare run ids: a label that changed with the run's state would leave the
# browser showing the old label, then, at the next rerun, reset the choice to the newest run.
run_id = st.selectbox(
    "Run",
    list(by_id),
    key="runs_selected",
    help="The run to look at in detail.",
)
info = by_id[run_id]
files = RunFiles(info.path)
st.caption(
    f"State: {info.state} · {info.config.get('student', '?')} · {objective_name(info.config)} · "
    f"{project_path(info.path)}"
)
if info.state == "failed":
    st.error(f"The run failed: {info.status.get('error') or 'see the log below.'}")
elif info.state == "cancelled":
    st.warning("The run was cancelled; resume it to continue from its last checkpoint.")
elif info.state in ("queued", "running"):
    st.info(f"The run is {info.state}; press Refresh to follow it (or watch it on Distill).")

title = f"{info.config.get('student', '?')} {objective_name(info.config)}: training curves"
st.plotly_chart(
    training_curves_figure(records[run_id], title=title), width="stretch", config=FIGURE_CONFIG
)
with st.expander("Configuration"):
    st.json(info.config)
with st.expander(f"Log (last {LOG_LINES} lines)"):
    st.code(log_tail(files.log, LOG_LINES) or "(empty)", language="text")

st.subheader("Downloads")
first, second, third = st.columns(3)
if files.best.is_file():
    first.download_button(
        "Best checkpoint (.pt)",
        files.best.read_bytes,
        file_name=f"{run_id}-best.pt",
        mime="application/octet-stream",
        help="The student's weights at its best test top-1 (kd_core checkpoint format).",
    )
else:
    first.caption("No checkpoint yet (written after the first epoch).")
second.download_button(
    "Metrics (CSV)",
    records_csv(records[run_id]),
    file_name=f"{run_id}-metrics.csv",
    mime="text/csv",
    help="Every logged step and epoch: losses, learning rate, accuracies, speed.",
)
third.download_button(
    "Configuration (JSON)",
    json.dumps(info.config, indent=2, sort_keys=True),
    file_name=f"{run_id}-config.json",
    mime="application/json",
    help="The run's full configuration; `python -m kd_core train --config FILE` repeats it.",
)

st.subheader("Actions")
resumable = info.state in ("failed", "cancelled")
if resumable and st.button(
    "Resume run", help="Continue from the last checkpoint (the last full epoch)."
):
    try:
        manager.resume(run_id)
    except (ValueError, OSError) as error:
        st.error(str(error))
    else:
        _done(f"Run {run_id} resumed.")
if info.state not in FINAL_STATES:
    if st.button("Cancel run", help="Stop the run after its current step."):
        manager.cancel(run_id)
        _done(f"Cancel requested for {run_id}: it stops after its current step.")
    st.caption("A queued or running run can be deleted once it has stopped.")
else:
    confirmed = st.checkbox(
        f"Yes, delete {run_id} and its checkpoints",
        key=f"runs_confirm_{run_id}",
        help="Deleting cannot be undone.",
    )
    if st.button(
        "Delete run",
        disabled=not confirmed,
        help="Remove the run's folder (tick the box above first).",
    ):
        try:
            manager.delete(run_id)
        except (ValueError, OSError) as error:
            st.error(str(error))
        else:
            _done(f"Run {run_id} deleted.")
