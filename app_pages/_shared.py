"""The Streamlit glue shared by the pages: the page list, the workspace sidebar, figure caches
and tables. The glue of the pages that run models is :mod:`app_pages._models`.

Files whose name starts with ``_`` are never shown as pages; the page list is ``st.navigation``
in ``app.py``. Everything worth testing lives in ``kd_core``; this module only keeps widgets,
caches and messages in one place.

This module, Home and the sidebar import no torch (``tests/pages/test_light_start.py``): a
server's first page is drawn while ``serve.py`` is still importing it, and the sidebar names the
compute device once :mod:`app_pages._models` has loaded.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

import kd_core
from kd_core.data import dataset_info, list_datasets
from kd_core.figures.style import FIGURE_CONFIG as FIGURE_CONFIG  # the pages' import
from kd_core.losses.amd_constants import DEFAULT_MARGIN
from kd_core.views.runs import records_csv
from kd_core.workspace import (
    DEFAULT_SAMPLES,
    CheckpointEntry,
    default_selection,
    find_entry,
    list_checkpoints,
)

MARGIN_SLIDER = {
    "min_value": 1.0, "max_value": 2.5, "value": DEFAULT_MARGIN, "step": 0.05, "format": "%.2f"
}  # fmt: skip
"""The angular margin slider's range and default, the same on every page that shows it."""


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file in ``app_pages/``, title, icon, URL path and the question
    it answers (shown on the home page)."""

    file: str
    title: str
    icon: str
    question: str

    @property
    def url_path(self) -> str:
        return Path(self.file).stem


PAGES = (
    PageSpec("home.py", "Home", ":material/home:", "What is AMD, and what is in my workspace?"),
    PageSpec(
        "angular.py",
        "Angular distributions",
        ":material/explore:",
        "Does a student separate the positions its teacher attends as sharply, at the same angles?",
    ),
    PageSpec(
        "attention.py",
        "Attention maps",
        ":material/visibility:",
        "Where do the teacher and the students look on an image, and do they agree?",
    ),
    PageSpec(
        "embedding.py",
        "Feature embedding",
        ":material/scatter_plot:",
        "How do the teacher's and the students' features arrange, and how similar are their "
        "stages (CKA)?",
    ),
    PageSpec(
        "inspector.py",
        "Checkpoint inspector",
        ":material/search:",
        "What is in this checkpoint, and how well does it classify?",
    ),
    PageSpec(
        "distill.py",
        "Distill",
        ":material/model_training:",
        "What does a student learn from this teacher with AMD, KD or AT? Train one and watch.",
    ),
    PageSpec(
        "runs.py",
        "Runs",
        ":material/history:",
        "How did my runs go, and which objective did best?",
    ),
)
"""The pages in navigation order; ``app.py`` registers them, the tests visit them all."""

SAMPLE_CHOICES = (100, 250, 500, 1000, 2000, 5000)
HUB_CACHE_KEY = "ws_hub_cache"
"""Session key of the hub cache folder whose timm checkpoints the workspace lists."""
_PENDING = "_workspace_pending"


_frozen_modules = 0
FIRST_RUN_ENDED = threading.Event()
"""Set when a script run of this server has ended: ``serve.py`` imports the pages' heavy
modules after it, so that they do not compete with the first page for the CPU."""
_compute_device: list[str] = []
"""The compute device, once :mod:`app_pages._models` has named it (:func:`set_compute_device`)."""
_PRELOAD_SCRIPT = """<script>
(() => {
  const index = document.querySelector('script[type="module"][src*="/static/js/index."]');
  if (!index) return;
  const url = new URL(CHUNK, index.src).href;
  const load = () => import(url).catch(() => {});
  (window.requestIdleCallback || ((f) => setTimeout(f, 500)))(load, { timeout: 5000 });
})();
</script>"""


@functools.cache
def plotly_chunk() -> str | None:
    """The file of Streamlit's frontend that holds plotly.js (``PlotlyChart.<hash>.js``, 4.7 MB),
    or ``None`` if this Streamlit version has no such single file."""
    folder = Path(st.__file__).parent / "static" / "static" / "js"
    names = [path.name for path in folder.glob("PlotlyChart.*.js")]
    return names[0] if len(names) == 1 else None


def preload_plotly() -> None:
    """Have the browser load plotly.js when it is idle, on a page that draws no plotly figure.

    A browser loads Streamlit's chart code only when a page first shows a chart: on this 2-core
    machine, fetching and compiling plotly.js blocks the page for 1 to 2 s. Home, the first
    page, draws none, so it asks for it in the background (``requestIdleCallback``) once it
    is drawn, and the first analysis page the reader opens finds it ready. The script only
    imports the same file the frontend would (the browser keeps one copy of a module); if the
    file cannot be found, nothing is sent."""
    chunk = plotly_chunk()
    if chunk is not None:
        st.html(_PRELOAD_SCRIPT.replace("CHUNK", json.dumps(chunk)), unsafe_allow_javascript=True)


def freeze_long_lived_objects() -> None:
    """Move the objects alive now into the garbage collector's permanent generation, once per
    set of newly imported modules (call it at the end of each script run).

    Streamlit runs a full collection after every script run (``runner.postScriptGC``). With
    torch, pandas and plotly loaded it walks about 300,000 objects: 0.2 s a run on a quiet
    2-core CPU, and up to a second while a training run shares the CPU. Those objects (modules,
    classes, the cached models) live as long as the server, so the walk frees nothing; frozen,
    they are skipped, and what each run creates is still collected. The run's own objects
    frozen with them are kept too: a few megabytes, once per page's first imports."""
    global _frozen_modules
    if len(sys.modules) > _frozen_modules:
        _frozen_modules = len(sys.modules)
        gc.freeze()


def end_script_run() -> None:
    """What ``app.py`` does at the end of every script run, however it ended: freeze the
    long-lived objects and signal :data:`FIRST_RUN_ENDED`."""
    freeze_long_lived_objects()
    FIRST_RUN_ENDED.set()


def set_compute_device(name: str) -> None:
    """Have the sidebar name the compute device (``app_pages._models`` calls it once torch has
    loaded)."""
    _compute_device[:] = [name]


@functools.cache
def torch_version() -> str:
    """The installed torch's version, read without importing torch."""
    return importlib.metadata.version("torch")


def figure_cache(max_entries: int) -> Callable:
    """The cache of a function that builds plotly figures: ``st.cache_resource``, which hands
    every session the very object it built.

    ``st.cache_data`` would pickle the figure and unpickle it on every read, and unpickling a
    ``go.Figure`` runs every property through plotly's validators again: 0.2 s of each warm
    visit of the Attention page went there (py-spy). Sharing is safe because pages never change
    a figure they got from such a cache (``st.plotly_chart`` serialises a copy); a variant,
    such as a log axis, is built inside the cached function.
    """
    return st.cache_resource(show_spinner=False, max_entries=max_entries)


@dataclass(frozen=True)
class Workspace:
    """What the sidebar selected: a teacher, students and the data to look at."""

    teacher: CheckpointEntry | None
    students: tuple[CheckpointEntry, ...]
    dataset: str
    split: str
    samples: int
    data_root: str | None

    @property
    def entries(self) -> list[CheckpointEntry]:
        return ([self.teacher] if self.teacher else []) + list(self.students)


def request_workspace(
    teacher: str | None = None, add_student: str | None = None, add_students: tuple = ()
) -> None:
    """Change the workspace from a page (e.g. "use as teacher", "put the group's students in
    the workspace"): applied on the next run, before the sidebar's widgets are drawn, then the
    app reruns."""
    students = [*([add_student] if add_student else []), *add_students]
    st.session_state[_PENDING] = {"teacher": teacher, "add_students": students}
    st.rerun()


def _apply_pending(keys: list[str]) -> None:
    pending = st.session_state.pop(_PENDING, None)
    if not pending:
        return
    if pending["teacher"] in keys:
        st.session_state["ws_teacher"] = pending["teacher"]
    current = [k for k in st.session_state.get("ws_students", []) if k in keys]
    added = [k for k in pending["add_students"] if k in keys and k not in current]
    st.session_state["ws_students"] = current + added


def workspace_checkpoints() -> list[CheckpointEntry]:
    """Every checkpoint of the workspace, with the timm checkpoints of the hub cache folder
    chosen in the inspector (default: Hugging Face's)."""
    hub = st.session_state.get(HUB_CACHE_KEY)
    return list_checkpoints(hub=Path(hub).expanduser() if hub else None)


def _render_workspace() -> Workspace:
    entries = workspace_checkpoints()
    labels = {e.key: e.label for e in entries}
    keys = list(labels)
    default_teacher, default_students = default_selection(entries)
    st.session_state.setdefault("ws_teacher", default_teacher)
    st.session_state.setdefault("ws_students", default_students)
    _apply_pending(keys)
    # Entries can disappear between runs (a deleted run): keep the selection valid.
    if st.session_state["ws_teacher"] not in keys:
        st.session_state["ws_teacher"] = default_teacher
    st.session_state["ws_students"] = [
        k
        for k in st.session_state["ws_students"]
        if k in keys and k != st.session_state["ws_teacher"]
    ]

    st.subheader("Workspace")
    teacher = st.selectbox(
        "Teacher",
        keys,
        key="ws_teacher",
        format_func=labels.get,
        help="The reference network. Bundled, trained in Runs, or uploaded in the inspector.",
    )
    students = st.multiselect(
        "Students",
        [k for k in keys if k != teacher],
        key="ws_students",
        format_func=labels.get,
        help="Networks compared with the teacher on every page.",
    )
    datasets = list_datasets()
    dataset = st.selectbox(
        "Dataset",
        datasets,
        key="ws_dataset",
        format_func=lambda name: dataset_info(name).title,
        help="shapes is generated locally with object masks; the others read local files.",
    )
    data_root = None
    if dataset_info(dataset).needs_files:
        data_root = st.text_input(
            "Data folder",
            key="ws_data_root",
            placeholder="default: ~/.cache/kd_core/datasets",
            help="Where the dataset's files are; nothing is downloaded.",
        ).strip()
    split = st.radio(
        "Split", ["test", "train"], key="ws_split", horizontal=True, help="Which images."
    )
    samples = st.select_slider(
        "Samples",
        SAMPLE_CHOICES,
        value=DEFAULT_SAMPLES,
        key="ws_samples",
        help="How many images the analyses use: a fixed random subset of the split, the same "
        "for every model (a larger choice keeps the smaller one's images). More is slower.",
    )
    return Workspace(
        teacher=find_entry(entries, teacher) if teacher else None,
        students=tuple(find_entry(entries, k) for k in students),
        dataset=dataset,
        split=split,
        samples=int(samples),
        data_root=data_root or None,
    )


def render_sidebar() -> Workspace:
    """The workspace controls, then versions and the compute device; returns the workspace."""
    with st.sidebar:
        workspace = _render_workspace()
        st.divider()
        st.caption("**AMD workbench**: angular knowledge distillation")
        device = f"`{_compute_device[0]}`" if _compute_device else "named once torch has loaded"
        st.markdown(
            f"- kd_core `{kd_core.__version__}`\n"
            f"- torch `{torch_version()}`\n"
            f"- compute device: {device}"
        )
    st.session_state["_workspace"] = workspace
    return workspace


def workspace() -> Workspace:
    """The workspace drawn by :func:`render_sidebar` in this run."""
    return st.session_state["_workspace"]


def progress_callback(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A progress bar and ``(update(done, total), clear())`` for kd_core's callbacks."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{label} ({done}/{total})")

    return update, bar.empty


def data_table(
    rows: Sequence[Mapping] | pd.DataFrame,
    *,
    file_name: str,
    key: str,
    csv: str | None = None,
    label: str = "Table (CSV)",
    help: str = "The table above as CSV.",
    **options,
) -> None:
    """Every table of the app: ``st.dataframe(rows, hide_index=True, **options)`` and under it
    a CSV download of the same rows (``csv`` instead, where the file holds more than is shown,
    e.g. every stage). Nested mappings become dotted columns (:func:`records_csv`)."""
    st.dataframe(rows, hide_index=True, **options)
    if csv is None:
        csv = rows.to_csv(index=False) if isinstance(rows, pd.DataFrame) else records_csv(rows)
    st.download_button(
        label, csv, file_name=file_name, mime="text/csv", key=key, help=help,
        disabled=not len(rows),
    )  # fmt: skip


def project_path(path: Path) -> str:
    """``path`` relative to the project folder when inside it (shorter to read)."""
    try:
        return str(path.relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)
