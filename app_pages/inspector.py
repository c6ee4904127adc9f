"""Checkpoint inspector: what a checkpoint holds, how it is built, and how well it classifies."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import streamlit as st

from app_pages._models import load_model, require_dataset, using
from app_pages._shared import (
    FIGURE_CONFIG,
    HUB_CACHE_KEY,
    data_table,
    progress_callback,
    project_path,
    request_workspace,
    workspace,
    workspace_checkpoints,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.evaluation import evaluate_model
from kd_core.checkpoints import CheckpointError, export_safetensors, summarize
from kd_core.checkpoints.hub import hub_cache_dir
from kd_core.figures.evaluation import confusion_figure, per_class_accuracy_figure
from kd_core.models import list_models, timm_model_names
from kd_core.models.layers import layer_table
from kd_core.workspace import find_entry, hub_checkpoints, store_upload

DETECT = "(detect from the weights)"

st.title("Checkpoint inspector")
st.caption(
    "Pick a checkpoint or upload one (.pt, .pth, .ckpt, .safetensors: plain state dicts, "
    "RepDistiller/mdistiller/torchdistill checkpoints, timm weights, our own runs), or list the "
    "timm checkpoints of a Hugging Face hub cache. Nothing in the file is executed: pickles are "
    "read with `weights_only` loading."
)

entries = workspace_checkpoints()
labels = {e.key: e.label for e in entries}
source = st.radio(
    "Checkpoint",
    ["From the list", "Upload a file", "Hub cache folder"],
    horizontal=True,
    key="inspector_source",
    help="The list holds the bundled checkpoints, your runs, earlier uploads and the hub "
    "cache's timm checkpoints.",
)
key = None
if source == "Hub cache folder":
    folder = st.text_input(
        "Hub cache folder",
        value=st.session_state.get(HUB_CACHE_KEY) or str(hub_cache_dir()),
        help="A Hugging Face hub cache (models--org--name folders) or a folder of timm hub "
        "folders (config.json + model.safetensors); its timm checkpoints join the workspace.",
    ).strip()
    st.session_state[HUB_CACHE_KEY] = folder
    found = hub_checkpoints(Path(folder).expanduser()) if folder else []
    if not found:
        st.info(f"No timm checkpoint with weights in {folder or 'that folder'}.")
        st.stop()
    entries = workspace_checkpoints()
    labels = {e.key: e.label for e in entries}
    key = st.selectbox(
        "timm checkpoint",
        [e.key for e in found],
        format_func=labels.get,
        key="inspector_hub_key",
        help="The hub cache's timm checkpoints: the config.json names the architecture.",
    )
elif source == "Upload a file":
    arch = st.selectbox(
        "Architecture",
        [DETECT, *list_models(), *timm_model_names()],
        key="inspector_arch",
        help="Detected from the parameter names and shapes (the CIFAR zoo, torchvision and the "
        "curated timm families); type to search every timm model when the weights alone do not "
        "tell.",
    )
    upload = st.file_uploader(
        "Checkpoint file",
        type=["pt", "pth", "ckpt", "bin", "safetensors"],
        key="inspector_upload",
        help="Checked before it is kept; an unusable file is rejected with the reason.",
    )
    if upload is not None:
        stored = st.session_state.setdefault("inspector_stored", {})
        named = None if arch == DETECT else arch
        if (upload.file_id, named) not in stored:
            with st.spinner(f"Checking {upload.name}…"):
                try:
                    stored[upload.file_id, named] = (
                        "ok",
                        store_upload(upload.getvalue(), upload.name, arch=named).key,
                    )
                except CheckpointError as exc:
                    stored[upload.file_id, named] = ("error", str(exc))
        outcome, value = stored[upload.file_id, named]
        if outcome == "error":
            st.error(value)
        else:
            key = value
            entries = workspace_checkpoints()
            labels = {e.key: e.label for e in entries}
            st.success(f"{upload.name} is a usable checkpoint; it is now in the workspace lists.")
else:
    default = workspace().teacher.key if workspace().teacher else None
    key = st.selectbox(
        "Checkpoint",
        list(labels),
        index=list(labels).index(default) if default in labels else 0,
        format_func=labels.get,
        key="inspector_key",
        help="Bundled, from runs, or uploaded earlier.",
    )
if key is None:
    st.stop()

try:
    handle = load_model(find_entry(entries, key))
    with using(handle):
        summary = summarize(handle.loaded)
        layers = layer_table(handle.model, input_size=summary["input_shape"][-1])
except CheckpointError as exc:
    st.error(str(exc))
    st.stop()

columns = st.columns(4)
columns[0].metric("Architecture", summary["architecture"])
columns[1].metric("Classes", summary["num_classes"])
columns[2].metric("Parameters", f"{summary['parameters']:,}")
columns[3].metric("Format", summary["source_format"])
if summary["also_matches"]:
    st.info(
        "The weights also fit: " + ", ".join(summary["also_matches"]) + ". The first match is "
        "used; they compute the same function."
    )
if summary["skipped"]:
    st.caption("Not loaded (not part of the network): " + ", ".join(summary["skipped"][:20]))
if summary["input_config"]:
    st.caption(
        "Input recipe (timm's pretrained config): "
        + "; ".join(f"{name} {value}" for name, value in summary["input_config"].items())
    )
st.caption(f"File: `{project_path(handle.entry.path)}`")

use_teacher, use_student, _ = st.columns([1, 1, 2])
if use_teacher.button("Use as teacher", help="Make it the workspace's teacher."):
    request_workspace(teacher=key)
if use_student.button("Use as student", help="Add it to the workspace's students."):
    request_workspace(add_student=key)

structure, metadata, evaluation = st.tabs(["Structure", "Metadata", "Evaluate"])
with structure:
    if summary["stages"]:
        st.subheader("Distillation stages")
        data_table(
            [
                {"stage": name, "output (B x C x H x W)": " x ".join(map(str, shape))}
                for name, shape in summary["stages"].items()
            ],
            file_name=f"{summary['architecture']}_stages.csv",
            key="inspector_stages_csv",
        )
        st.caption(
            f"Pooled feature: {summary['pooled_shape']}, logits: {summary['logits_shape']}, "
            f"for an input of {summary['input_shape']}."
        )
    st.subheader("Layers")
    data_table(
        [
            {
                "layer": row.name,
                "type": row.kind,
                "output": " x ".join(map(str, row.output_shape)) if row.output_shape else "",
                "parameters": row.parameters,
            }
            for row in layers
        ],
        file_name=f"{summary['architecture']}_layers.csv",
        key="inspector_layers_csv",
        height=360,
    )
with metadata:
    st.json(summary["metadata"] or {"metadata": "none stored"}, expanded=1)
    st.download_button(
        "Summary (JSON)",
        json.dumps(summary, indent=2, default=str),
        file_name=f"{summary['architecture']}_summary.json",
        mime="application/json",
        help="Architecture, stages, parameters and metadata as JSON.",
    )
    if st.button("Prepare a .safetensors copy", help="Weights only, with the architecture named."):
        with tempfile.TemporaryDirectory() as folder, using(handle):
            path = export_safetensors(handle.loaded, Path(folder) / "weights.safetensors")
            st.download_button(
                "Download .safetensors",
                path.read_bytes(),
                file_name=f"{summary['architecture']}.safetensors",
                help="Loads back here and in any safetensors reader.",
            )
with evaluation:
    ws = workspace()
    st.write(
        f"Top-1, top-5, per-class accuracy and the confusion matrix on the **{ws.split}** split "
        f"of **{ws.dataset}** (every image of the split)."
    )
    results = st.session_state.setdefault("inspector_results", {})
    result_key = (key, ws.dataset, ws.split, ws.data_root)
    if st.button("Evaluate", type="primary", help="Runs the model on the whole split."):
        dataset = require_dataset(ws)
        update, clear = progress_callback("Evaluating")
        try:
            with using(handle):
                results[result_key] = evaluate_model(handle.model, dataset, progress=update)
        except AnalysisError as exc:
            st.error(str(exc))
        finally:
            clear()
    if result_key in results:
        result = results[result_key]
        names = list(result.class_names) or [str(i) for i in range(summary["num_classes"])]
        left, right, count = st.columns(3)
        left.metric("Top-1", f"{result.top1:.2f}%")
        right.metric(f"Top-{result.top_k}", f"{result.top5:.2f}%")
        count.metric("Images", f"{result.count:,}")
        st.plotly_chart(
            per_class_accuracy_figure({summary["architecture"]: result.per_class_accuracy}, names),
            config=FIGURE_CONFIG,
        )
        st.plotly_chart(confusion_figure(result.confusion, names), config=FIGURE_CONFIG)
        st.download_button(
            "Per-class accuracy (CSV)",
            "class,accuracy_percent\n"
            + "".join(f"{names[c]},{a:.4f}\n" for c, a in result.per_class_accuracy.items()),
            file_name="per_class_accuracy.csv",
            mime="text/csv",
            help="One row per class with samples.",
        )
