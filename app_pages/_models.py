"""The Streamlit glue of the pages that run models: the cached models, datasets and features,
and the locks that guard them. Home and the sidebar do not import it: they draw before torch has
loaded (``serve.py`` imports this module once the first page is drawn).

Thread safety: models are cached once per server (``st.cache_resource``) and shared by every
session. Anything that runs a model (hooks for features, Captum's hooks, gradients) holds that
model's lock, so two sessions never see each other's hooks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
import torch
from torch import nn

from app_pages._shared import Workspace, set_compute_device
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_cache import feature_set_for
from kd_core.analysis.feature_set import FeatureSet
from kd_core.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from kd_core.data import create_dataset
from kd_core.training.runs import RunManager
from kd_core.views.home import checkpoint_name
from kd_core.workspace import CheckpointEntry, dataset_key, runs_root

# One intra-op thread per torch call. The server runs several sessions' scripts at once and
# shares the CPU with the training runs it launches; with two threads per op and a busy core,
# every op waits on an OpenMP barrier (measured on 2 cores with a run going: one resnet20
# forward of one image 1.34 s with two threads, 0.006 s with one; 2,000-image feature
# extraction 10.8 s vs 2.8 s).
torch.set_num_threads(1)


@functools.cache
def compute_device() -> str:
    """The best device torch can use here: ``cuda`` (with the GPU's name), ``mps`` or ``cpu``
    (asked once per server process; named in the sidebar)."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class ModelHandle:
    """A loaded checkpoint shared by all sessions, with the lock that guards its use."""

    entry: CheckpointEntry
    loaded: LoadedCheckpoint
    lock: threading.RLock

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def name(self) -> str:
        return checkpoint_name(self.entry)


@st.cache_resource(show_spinner=False, max_entries=32)
def _load(
    path: str, stamp: tuple[int, int], arch: str | None = None
) -> tuple[LoadedCheckpoint, threading.RLock]:
    """One load per file version (``stamp`` = modification time and size); ``arch`` for an
    upload whose architecture the user named."""
    return load_checkpoint(path, arch=arch), threading.RLock()


def load_model(entry: CheckpointEntry) -> ModelHandle:
    """The model of ``entry`` (cached); a :class:`CheckpointError` if it cannot be read."""
    try:
        info = entry.path.stat()
    except OSError:
        raise CheckpointError(f"{entry.label}: the file is gone; choose another one.") from None
    arch = entry.arch if entry.source == "upload" else None
    loaded, lock = _load(str(entry.path), (info.st_mtime_ns, info.st_size), arch)
    return ModelHandle(entry, loaded, lock)


@contextmanager
def using(*handles: ModelHandle) -> Iterator[None]:
    """Hold the locks of ``handles`` (in a fixed order, so two sessions never deadlock)."""
    ordered = sorted({id(h.lock): h.lock for h in handles}.items())
    for _, lock in ordered:
        lock.acquire()
    try:
        yield
    finally:
        for _, lock in reversed(ordered):
            lock.release()


@st.cache_resource(show_spinner=False)
def run_manager() -> RunManager:
    """The server's run manager: one run at a time (the others queue), folders under the runs
    root, processes detached from the server."""
    return RunManager(runs_root(), max_concurrent=1)


@st.cache_resource(show_spinner=False, max_entries=8)
def load_dataset(name: str, split: str, root: str | None) -> torch.utils.data.Dataset:
    """A dataset without augmentation (cached per name, split and folder)."""
    return create_dataset(name, split=split, root=root or None, augment=False)


def require_models(ws: Workspace, students: bool = True) -> tuple[ModelHandle, list[ModelHandle]]:
    """The teacher and student models, or a message and the end of the page."""
    if ws.teacher is None:
        st.info("Choose a teacher in the sidebar (or upload one in the Checkpoint inspector).")
        st.stop()
    if students and not ws.students:
        st.info("Choose at least one student in the sidebar to compare with the teacher.")
        st.stop()
    try:
        return load_model(ws.teacher), [load_model(e) for e in ws.students]
    except CheckpointError as exc:
        st.error(str(exc))
        st.stop()


def require_dataset(ws: Workspace) -> torch.utils.data.Dataset:
    """The workspace's dataset, or a message saying what is missing and the end of the page."""
    try:
        return load_dataset(ws.dataset, ws.split, ws.data_root)
    except (ValueError, OSError) as exc:
        st.error(str(exc))
        st.stop()


def feature_sets(
    ws: Workspace, handles: list[ModelHandle], keep_stages: bool = False
) -> list[FeatureSet]:
    """Features of every model in ``handles`` on the workspace's samples (cached by weights,
    data and samples: a second visit is instant), with a progress bar; a message and the end of
    the page when they cannot be computed."""
    dataset = require_dataset(ws)
    samples = min(ws.samples, len(dataset))
    if samples < ws.samples:
        st.caption(f"The {ws.split} split has {len(dataset):,} images: using all of them.")
    data_key = dataset_key(ws.dataset, ws.split, ws.data_root)
    bar = st.progress(0.0, text="Computing features")
    results = []
    try:
        for index, handle in enumerate(handles):

            def update(done: int, total: int, index: int = index, name: str = handle.name):
                share = (index + done / max(total, 1)) / len(handles)
                bar.progress(min(share, 1.0), text=f"Features of {name} ({done}/{total})")

            with using(handle):
                results.append(
                    feature_set_for(
                        handle.model,
                        dataset,
                        data_key,
                        name=handle.name,
                        arch=handle.loaded.arch,
                        samples=samples,
                        keep_stages=keep_stages,
                        progress=update,
                    )
                )
    except AnalysisError as exc:
        st.error(str(exc))
        st.stop()
    finally:
        bar.empty()
    return results


set_compute_device(compute_device())
