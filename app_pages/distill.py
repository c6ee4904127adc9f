"""Distill: configure a training run (teacher, student, objective, schedule), launch it in
the background and follow it live; a finished student joins the workspace in one click."""

from __future__ import annotations

import streamlit as st
import torch

from app_pages._models import run_manager
from app_pages._shared import (
    FIGURE_CONFIG,
    data_table,
    request_workspace,
    workspace,
    workspace_checkpoints,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.data import dataset_info
from kd_core.figures.training import compare_runs_figure, training_curves_figure
from kd_core.losses import list_losses
from kd_core.losses.amd import DEFAULT_LOCAL_WEIGHT, DEFAULT_MARGIN, DEFAULT_SCALE
from kd_core.models import list_models
from kd_core.training.config import PRESETS
from kd_core.training.methods import METHOD_SETS, METHODS
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.views.distill import (
    CLASSROOM_PRESET,
    CPU_IMAGES_PER_SECOND,
    DEFAULT_PRESET,
    DISTILL_WEIGHTS,
    DistillForm,
    build_config,
    estimate_cpu_seconds,
    group_configs,
    preset_form,
    run_environment,
    split_size,
)
from kd_core.views.runs import format_duration, objective_name, queue_position, run_progress

POLL_SECONDS = 2.0
NO_TEACHER = "none"
RUN_KEY = "distill_run_id"
GROUP_KEY = "distill_group_runs"
MODES = ("One run", "Compare methods")
CUSTOM_SET = "custom"
CLASS_SENTENCE = (
    "What the class should see when it ends (the classroom group with the shapes-classroom "
    "preset, measured over three seeds: 3.2 minutes on 2 CPU cores): the second chart puts AT "
    "and AMD far above training alone and KD in attention agreement with the teacher (AT "
    "0.901, AMD 0.885, training alone 0.733, KD 0.717: they learnt where the teacher looks); "
    "the first chart shows that this does not buy accuracy at so short a budget: AMD 26.6% "
    "against 27.7% for training alone (within seed noise), KD ahead at 31.2%, and AT at the "
    "community's weight behind at 19.7% (its gradient swamps cross-entropy here). "
    "docs/results.md has every seed and the longer budgets."
)
MAIN_TERMS = ("ce", "kd", "at", "amd")
TERM_HELP = {
    "ce": "Cross-entropy with the labels (needs no teacher).",
    "kd": "Hinton's KD: KL divergence between temperature-softened class scores.",
    "at": "Attention transfer: distance between the normalised attention maps.",
    "amd": "AMD: angular margin distillation of the attention maps (Jeon et al. 2023).",
    "fitnet": "FitNets: MSE between regressed student features and the teacher's features.",
    "pkt": "Probabilistic knowledge transfer: similarity distributions over the batch.",
    "rkd": "Relational KD: pairwise distances and triplet angles of the pooled features.",
    "sp": "Similarity-preserving KD: batch similarity matrices of the features.",
}


def _key(name: str) -> str:
    return f"distill_{name}"


def _whole_number(
    column, label: str, name: str, step: int, help_text: str, value: int = 0, key: str = ""
) -> int:
    """A number input for a count or seed >= 0 (starting at ``value``, 0 by default)."""
    value = column.number_input(
        label, min_value=0, value=value, step=step, key=key or _key(name), help=help_text
    )
    return int(value)


def _preset_key(name: str, preset: str) -> str:
    """The key of a field the preset fills: another preset makes new widgets with its values
    (widgets take their values from ``value=``, never from writes to the session state)."""
    return _key(f"{name}_{preset}")


def _weight_input(name: str, default: float) -> float:
    return st.number_input(
        f"{name} weight",
        min_value=0.0,
        value=default,
        step=0.1 if name in ("ce", "kd") else 100.0,
        key=_key(f"w_{name}"),
        help=f"{TERM_HELP.get(name, name)} 0 leaves the term out.",
    )


def _estimate_text(form: DistillForm, teacher_arch: str | None) -> str:
    train_images = split_size(form.dataset, "train", form.limit_train)
    test_images = split_size(form.dataset, "test", form.limit_test) or 0
    if train_images is None:
        return "No time estimate: the size of this image folder is not known; set a limit."
    seconds = estimate_cpu_seconds(
        form.student, form.epochs, train_images, test_images, teacher=teacher_arch
    )
    if seconds is None:
        unknown = form.student if form.student not in CPU_IMAGES_PER_SECOND else teacher_arch
        return (
            f"No time estimate: no CPU speed was measured for {unknown} (known: "
            f"{', '.join(CPU_IMAGES_PER_SECOND)})."
        )
    teacher_part = (
        f", plus the {teacher_arch} teacher's forward passes" if teacher_arch is not None else ""
    )
    return (
        f"Estimated time on this machine's CPU: **~{format_duration(seconds)}** "
        f"({train_images:,} training images x {form.epochs} epochs; {form.student} trains at "
        f"~{CPU_IMAGES_PER_SECOND[form.student]:,.0f} images/s on 2 CPU threads{teacher_part})."
    )


def _follow(run_id: str, was_active: bool) -> None:
    """The live view of one run, re-read from its folder at every call."""
    manager = run_manager()
    try:
        info = manager.read(run_id)
    except ValueError:
        st.info(f"The run {run_id} no longer exists (deleted on the Runs page).")
        return
    if was_active and info.state in FINAL_STATES:
        st.rerun()  # the whole page: stop polling, show the final state
    records = list(RunFiles(info.path).read_metrics())
    progress = run_progress(info, records)
    st.subheader(f"Run {run_id}")
    st.caption(f"{info.config.get('student', '?')} · {objective_name(info.config)} · {info.path}")
    environment = run_environment(info.status)
    if environment:
        st.caption(f"Trains on {environment}.")

    if info.state == "queued":
        runs = manager.list()
        place = queue_position(runs, run_id)
        training = sum(r.state == "running" for r in runs)
        if training == 0 and place in (None, 1):
            st.info("Queued: the run's process is starting.")
        else:
            st.info(
                f"Queued: number {place or '?'} in the queue, {training} run(s) training. "
                "Runs train one at a time; this one starts when the slot is free."
            )
    elif info.state == "running":
        where = f"epoch {min(progress.epochs_done + 1, progress.epochs)}/{progress.epochs}"
        step = f", step {progress.step}" if progress.step is not None else ""
        st.progress(progress.fraction, text=f"Training: {where}{step}")
    elif info.state == "finished":
        best = f"{progress.best_top1:.2f}%" if progress.best_top1 is not None else "–"
        st.success(f"Finished: best test top-1 {best} after {progress.epochs_done} epochs.")
    elif info.state == "failed":
        st.error(f"The run failed: {progress.error or 'see its log on the Runs page.'}")
    else:
        st.warning("The run was cancelled; resume it on the Runs page.")

    left, middle, right = st.columns(3)
    left.metric("Loss (latest step)", f"{progress.loss:.4f}" if progress.loss is not None else "–")
    middle.metric(
        "Test top-1, last epoch",
        f"{progress.last_top1:.2f}%" if progress.last_top1 is not None else "–",
    )
    right.metric(
        "Best test top-1", f"{progress.best_top1:.2f}%" if progress.best_top1 is not None else "–"
    )
    if progress.terms:
        terms = " · ".join(f"{name} {value:.4g}" for name, value in progress.terms.items())
        lr = f" · lr {progress.lr:.4g}" if progress.lr is not None else ""
        st.caption(f"Latest step, weighted loss terms: {terms}{lr}")
    title = f"{info.config.get('student', '?')} {objective_name(info.config)}: training curves"
    st.plotly_chart(
        training_curves_figure(records, title=title), width="stretch", config=FIGURE_CONFIG
    )

    if info.state not in FINAL_STATES:
        if st.button("Cancel run", key="distill_cancel", help="Stop after the current step."):
            manager.cancel(run_id)
            st.toast("Cancel requested: the run stops after its current step.")
    elif info.state == "finished" and RunFiles(info.path).best.is_file():
        key = f"run:{run_id}"
        st.markdown("The best checkpoint of this run is in the workspace as a student or teacher:")
        first, second = st.columns(2)
        if first.button(
            "Open in the other pages",
            key="distill_open",
            help="Add this run's best checkpoint to the workspace's students.",
        ):
            request_workspace(add_student=key)
        if second.button(
            "Use as teacher",
            key="distill_as_teacher",
            help="Make this run's best checkpoint the workspace's teacher.",
        ):
            request_workspace(teacher=key)


def _follow_group(run_ids: list[str], was_active: bool) -> None:
    """The live view of a group: one table row per student and two charts that overlay the
    students' test top-1 and attention cosine per epoch."""
    manager = run_manager()
    infos = []
    for run_id in run_ids:
        try:
            infos.append(manager.read(run_id))
        except ValueError:
            st.info(f"The run {run_id} no longer exists (deleted on the Runs page).")
    if not infos:
        return
    active = any(info.state not in FINAL_STATES for info in infos)
    if was_active and not active:
        st.rerun()  # the whole page: stop polling, show the final state
    records = {info.run_id: list(RunFiles(info.path).read_metrics()) for info in infos}
    labels = {info.run_id: objective_name(info.config) for info in infos}
    st.subheader(f"Group of {len(infos)} students")
    rows = []
    for info in infos:
        progress = run_progress(info, records[info.run_id])
        probes = [r.get("attention_cosine") for r in records[info.run_id] if r["kind"] == "epoch"]
        rows.append(
            {
                "method": labels[info.run_id], "state": info.state,
                "epochs": f"{progress.epochs_done}/{progress.epochs}",
                "last top-1 (%)": progress.last_top1,
                "attention cosine": probes[-1] if probes else None, "run": info.run_id,
            }
        )  # fmt: skip
    data_table(rows, file_name="group.csv", key="distill_group_csv")
    by_label = {labels[run_id]: records[run_id] for run_id in records}
    if any(r["kind"] == "epoch" for rs in by_label.values() for r in rs):
        for metric in ("test_top1", "attention_cosine"):
            try:
                figure = compare_runs_figure(by_label, metric)
            except AnalysisError:  # no teacher: no attention probe
                continue
            st.plotly_chart(figure, width="stretch", config=FIGURE_CONFIG)
    else:
        st.caption("The charts appear after the first epoch.")
    st.caption(CLASS_SENTENCE)
    if active:
        if st.button("Cancel the group", key="distill_cancel_group"):
            for info in infos:
                manager.cancel(info.run_id)
            st.toast("Cancel requested: every student stops after its current step.")
    elif any(RunFiles(info.path).best.is_file() for info in infos) and st.button(
        "Put the group's students in the workspace",
        key="distill_open_group",
        help="Add every student's best checkpoint to the workspace, to compare them on the "
        "other pages.",
    ):
        request_workspace(add_students=tuple(f"run:{info.run_id}" for info in infos))


def _teacher_label(key: str) -> str:
    return "none (train the student alone)" if key == NO_TEACHER else entries[key].label


ws = workspace()
st.title("Distill a student")
st.markdown(
    "Train a student network with a teacher's guidance: the objective is a weighted sum of "
    "loss terms, e.g. $L = 1 \\cdot \\mathrm{CE} + 1000 \\cdot L_{\\mathrm{AMD}}$. The run "
    "trains in the background (it survives closing the page) and is listed on the Runs page."
)

mode = st.radio(
    "Mode",
    MODES,
    horizontal=True,
    key=_key("mode"),
    help="One run with the objective you compose, or several methods trained side by side as "
    "one group: the same batches in the same order, the teacher's pass computed once.",
)
compare = mode == MODES[1]

entries = {entry.key: entry for entry in workspace_checkpoints()}
teacher_options = [NO_TEACHER, *entries]
default_teacher = ws.teacher.key if ws.teacher else NO_TEACHER
default_weights = DISTILL_WEIGHTS if ws.teacher else {"ce": 1.0}  # AMD recipe, or vanilla
# Each mode keeps its own preset: compare mode starts with the classroom budget.
preset_key, preset_default = (
    (_key("preset_compare"), CLASSROOM_PRESET) if compare else (_key("preset"), DEFAULT_PRESET)
)
preset_name = st.session_state.get(preset_key, preset_default)  # drawn in Schedule
defaults = preset_form(preset_name)

st.header("Networks")
left, right = st.columns(2)
teacher_key = left.selectbox(
    "Teacher",
    teacher_options,
    index=teacher_options.index(default_teacher),
    key=_key("teacher"),
    format_func=_teacher_label,
    help="The network to distil from (the workspace's teacher by default). 'none' trains a "
    "vanilla student with cross-entropy alone.",
)
models = list_models()
student = right.selectbox(
    "Student architecture",
    models,
    index=models.index("resnet8"),
    key=_key("student"),
    help="The network to train, from random initial weights (CIFAR-style ResNets first).",
)
teacher = entries.get(teacher_key)
st.caption(
    f"Dataset: **{dataset_info(ws.dataset).title}** ({ws.dataset}), the workspace's; change it "
    "in the sidebar."
)
if teacher is not None and teacher.dataset not in (None, ws.dataset):
    st.warning(
        f"This teacher was trained on {teacher.dataset}, the run uses {ws.dataset}: choose a "
        "teacher trained on the same classes."
    )

methods: list[str] = []
if compare:
    st.header("Methods")
    set_names = [*METHOD_SETS, CUSTOM_SET]
    chosen_set = st.selectbox(
        "Method set",
        set_names,
        key=_key("method_set"),
        help="classroom: vanilla, KD, AT, AMD; paper: the AMD paper's comparison; custom: "
        "your own list.",
    )
    methods = st.multiselect(
        "Methods",
        list(METHODS),
        default=list(METHOD_SETS.get(chosen_set, ())),
        format_func=lambda name: METHODS[name].label,
        key=_key(f"methods_{chosen_set}"),
        help="One student each, at the community's weights (KD 0.1 CE + 0.9 KD, T = 4; AT and "
        "AMD CE + 1000 x the loss).",
    )
if compare:  # each method sets its objective and parameters
    weights: dict[str, float] = {"ce": 1.0}
    amd_margin, amd_scale, amd_local = DEFAULT_MARGIN, DEFAULT_SCALE, False
    kd_temperature = defaults.kd_temperature
else:
    st.header("Objective")
    weights = {}
    term_columns = st.columns(2)
    for index, term in enumerate(t for t in MAIN_TERMS if t in list_losses()):
        with term_columns[index % 2]:
            weights[term] = _weight_input(term, default_weights.get(term, 0.0))
    with st.expander("Other distillation terms"):
        for term in list_losses():
            if term not in weights:
                weights[term] = _weight_input(term, default_weights.get(term, 0.0))
    amd_column, kd_column = st.columns(2)
    with amd_column:
        amd_margin = st.number_input(
            "AMD margin m",
            min_value=1.0,
            max_value=4.0,
            value=DEFAULT_MARGIN,
            step=0.05,
            key=_key("amd_margin"),
            help="Angular margin: positive positions need cos(m θ) > 1 - cos θ (60° without "
            "margin).",
        )
        amd_scale = st.number_input(
            "AMD scale s",
            min_value=1.0,
            max_value=256.0,
            value=DEFAULT_SCALE,
            step=1.0,
            key=_key("amd_scale"),
            help="Scale of the angular logits pos = s cos(m θ) and neg = s (1 - q).",
        )
        amd_local = st.toggle(
            "AMD global + local",
            key=_key("amd_local"),
            help="Also apply AMD to the four quadrants of each map (weight "
            f"{DEFAULT_LOCAL_WEIGHT}).",
        )
    with kd_column:
        kd_temperature = st.number_input(
            "KD temperature T",
            min_value=0.1,
            max_value=20.0,
            value=defaults.kd_temperature,
            step=0.5,
            key=_preset_key("kd_temperature", preset_name),
            help="Softens both class distributions; the KD term is multiplied by T².",
        )

st.header("Schedule")
st.selectbox(
    "Preset",
    list(PRESETS),
    index=list(PRESETS).index(preset_default),
    key=preset_key,
    help="Fills epochs, batch size, learning rate, KD temperature and the training-image "
    "limit; its optimiser (SGD, momentum 0.9, weight decay 5e-4) and schedule are used for the "
    "run. Compare mode starts with shapes-classroom, a group short enough for a lecture.",
)
left, middle, right = st.columns(3)
# label, field, its range and step: the preset fills the value
SCHEDULE_FIELDS = (
    ("Epochs", "epochs", (1, 1000), 1, "Passes over the data."),
    ("Batch size", "batch_size", (1, 4096), 16, "Images per training step."),
    ("Learning rate", "lr", (0.0, 10.0), 0.01, "SGD's base rate, with the preset's warm-up and "
     "decay."),
)  # fmt: skip
epochs, batch_size, lr = (
    column.number_input(
        label,
        min_value=low,
        max_value=high,
        value=getattr(defaults, name),
        step=step,
        format="%.4f" if name == "lr" else None,
        key=_preset_key(name, preset_name),
        help=help_text,
    )
    for column, (label, name, (low, high), step, help_text) in zip(
        (left, middle, right), SCHEDULE_FIELDS, strict=True
    )
)
limit_train = _whole_number(
    left, "Limit training images", "limit_train", 64,
    "Train on the first N images only (quick demos); 0 uses the whole split.",
    value=defaults.limit_train or 0, key=_preset_key("limit_train", preset_name),
)  # fmt: skip
limit_test = _whole_number(
    middle, "Limit test images", "limit_test", 64,
    "Evaluate on the first N test images only; 0 uses the whole split.",
)  # fmt: skip
seed = _whole_number(
    right, "Seed", "seed", 1, "Initial weights, batch order and augmentation; same seed, same run."
)
gpu = torch.cuda.is_available()
device = st.radio(
    "Device",
    ["auto", "cpu", "cuda"],
    horizontal=True,
    key=_key("device"),
    help="auto picks the GPU when there is one, else the CPU.",
)
st.caption(
    f"GPU here: **{torch.cuda.get_device_name(0)}**."
    if gpu
    else "No GPU here: runs train on the CPU (cuda is not available)."
)
run_name = st.text_input(
    "Run name",
    key=_key("name"),
    placeholder="optional, e.g. amd-margin-1.5",
    help="Part of the run's folder name; letters, digits, '-' and '_' are kept.",
)

form = DistillForm(
    student=student,
    teacher=str(teacher.path) if teacher is not None else None,
    dataset=ws.dataset,
    data_root=ws.data_root,
    weights={term: float(value) for term, value in weights.items()},
    amd_margin=float(amd_margin),
    amd_scale=float(amd_scale),
    amd_local=bool(amd_local),
    kd_temperature=float(kd_temperature),
    epochs=int(epochs),
    batch_size=int(batch_size),
    lr=float(lr),
    limit_train=limit_train,
    limit_test=limit_test,
    seed=seed,
    device=device,
    name=run_name,
)
st.info(_estimate_text(form, teacher.arch if teacher is not None else None))
if gpu and device != "cpu":
    st.caption("On the GPU the run is much faster than this CPU estimate.")

if compare and st.button(
    "Launch the group", type="primary", help="Start every method's student side by side."
):
    try:
        configs = group_configs(form, methods, preset_name)
        launched_group = run_manager().start_group(configs, [c.name for c in configs])
    except ValueError as error:
        st.error(str(error))
    except OSError as error:
        st.error(f"The run folders could not be written ({error}); check the runs folder.")
    else:
        st.session_state[GROUP_KEY] = [info.run_id for info in launched_group]
        st.session_state.pop(RUN_KEY, None)
        st.toast(f"Group of {len(launched_group)} students started.")
if not compare and st.button("Launch run", type="primary", help="Start the run in the background."):
    try:
        launched = run_manager().start(build_config(form, preset_name))
    except ValueError as error:
        st.error(str(error))
    except OSError as error:
        st.error(f"The run folder could not be written ({error}); check the runs folder.")
    else:
        st.session_state[RUN_KEY] = launched.run_id
        st.session_state.pop(GROUP_KEY, None)
        st.toast(f"Run {launched.run_id} started.")

group_ids = st.session_state.get(GROUP_KEY)
if group_ids:
    st.divider()
    try:
        group_active = any(
            run_manager().read(run_id).state not in FINAL_STATES for run_id in group_ids
        )
    except ValueError:
        group_active = False
    st.fragment(run_every=POLL_SECONDS if group_active else None)(_follow_group)(
        group_ids, group_active
    )

run_id = st.session_state.get(RUN_KEY)
if run_id:
    st.divider()
    try:
        active = run_manager().read(run_id).state not in FINAL_STATES
    except ValueError:
        active = False
    st.fragment(run_every=POLL_SECONDS if active else None)(_follow)(run_id, active)
