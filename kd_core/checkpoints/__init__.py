"""Read the community's checkpoints safely, recognise the network they hold, and save our own.

:func:`load_checkpoint` takes a path or the bytes of an upload and returns a ready model
(:class:`LoadedCheckpoint`). Nothing in a file is ever executed: PyTorch files are read with
``torch.load(weights_only=True)``, which refuses every Python object but tensors and plain
data (``argparse.Namespace`` is allowed only for the ``opt``/``args`` entries that RepDistiller
and torchdistill store, only while reading). Every unreadable input raises
:class:`CheckpointError` (a ``ValueError``) whose message says what is wrong and what to do.

Layouts read (``LoadedCheckpoint.source_format``):

* ``"state_dict"``: a bare ``model.state_dict()``.
* ``"repdistiller"``: ``{"model": state_dict, "epoch", "best_acc" | "accuracy", "optimizer",
  "opt": Namespace}`` (RepDistiller/CRD, mdistiller's ``cifar_teachers`` downloads and its
  ``student_*`` files, which hold just ``{"model": state_dict}``).
* ``"mdistiller"``: mdistiller's training states ``{"epoch", "model": DataParallel(distiller)
  .state_dict(), "optimizer", "best_acc"}``: the student is read from ``module.student.*``;
  the teacher and the distiller's extra modules are skipped.
* ``"torchdistill"``: ``save_ckpt``'s ``{"model", "optimizer", "lr_scheduler", "best_value",
  "args": Namespace}``.
* ``"checkpoint"``: weights under ``"state_dict"``, ``"net"``, ``"student"`` or ``"ema"``, also
  one level deeper (``{"model": {"state_dict": ...}}``).
* ``"safetensors"``: ``.safetensors`` files (recognised by their header, not their name); the
  header's metadata becomes ``metadata``, and files from :func:`export_safetensors` name their
  architecture.
* ``"kd_core"``: files from :func:`save_checkpoint` (their ``training_state``, for resuming
  a run, is read by :func:`load_training_state` only).

``module.`` (DataParallel / DistributedDataParallel) and ``_orig_mod.`` (``torch.compile``)
prefixes are removed. Without an explicit ``arch`` the architecture is the registry entry
(:func:`kd_core.models.list_models`) whose parameter names and shapes the weights match, the
classifier's output size aside; that output size is ``num_classes``.

The file formats (``LoadedCheckpoint.file_format``: ``torch_zip``, ``torch_legacy``,
``safetensors``) and the layouts above are each recognised through one registry
(:mod:`~kd_core.checkpoints.registry`), tried in a fixed order: :func:`list_formats` and
:func:`list_layouts` name them, :func:`format_info` and :func:`layout_info` describe them, and
:func:`register_format` / :func:`register_layout` add one.

Modules: ``errors`` (:class:`CheckpointError`, limits), ``source`` (opening a path or bytes),
``readers`` (safe torch / safetensors reading), ``registry``, ``formats`` and ``layouts`` (the
registered entries), ``metadata`` (JSON-friendly copies), ``architecture`` (inference from
names and shapes), ``loading`` (:func:`load_checkpoint`), ``writing`` (saving, exporting,
training state) and ``summary`` (:func:`summarize`).

Example::

    loaded = load_checkpoint("resnet56_vanilla/ckpt_epoch_240.pth")
    loaded.arch, loaded.num_classes, loaded.metadata["epoch"]   # "resnet56", 100, 240
    summarize(loaded)["stages"]["layer3"]                       # [1, 64, 8, 8]
"""

from __future__ import annotations

from kd_core.lazy import lazy_attributes

# Every name is imported on first use (:mod:`kd_core.lazy`): the app's sidebar lists checkpoints
# (``kd_core.workspace``) without torch. ``torch``, ``models`` and the private helpers are
# reachable here because tests monkeypatch ``torch.save`` and ``models.create_model``, clear the
# ``_signature`` cache and call the helpers directly.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "torch": "torch:module",
        "models": "kd_core.models:module",
        "_infer_arch": ".architecture",
        "_signature": ".architecture",
        "FORMAT_VERSION": ".errors",
        "MAX_CHECKPOINT_BYTES": ".errors",
        "CheckpointError": ".errors",
        "LoadedCheckpoint": ".loading",
        "load_checkpoint": ".loading",
        "_jsonable": ".metadata",
        "FileFormat": ".registry",
        "Layout": ".registry",
        "format_info": ".registry",
        "layout_info": ".registry",
        "list_formats": ".registry",
        "list_layouts": ".registry",
        "register_format": ".registry",
        "register_layout": ".registry",
        "_input_size": ".summary",
        "summarize": ".summary",
        "export_safetensors": ".writing",
        "load_training_state": ".writing",
        "save_checkpoint": ".writing",
    },
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "CheckpointError",
    "FileFormat",
    "Layout",
    "LoadedCheckpoint",
    "export_safetensors",
    "format_info",
    "layout_info",
    "list_formats",
    "list_layouts",
    "load_checkpoint",
    "load_training_state",
    "register_format",
    "register_layout",
    "save_checkpoint",
    "summarize",
]
