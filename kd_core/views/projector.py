"""The Feature embedding page's features for TensorBoard's projector: the pooled features of
the teacher and each student on the same samples, with metadata (model, class, prediction,
whether it is correct, sample index) and a sprite of the input images, in the folder layout the
projector reads (``projector_config.pbtxt``, one ``tensors.tsv``/``metadata.tsv``/``sprite.png``
per model under ``00000/<model>/``).

Open it with ``tensorboard --logdir <folder>`` (the Projector tab). Example::

    write_projector(Path("projector"), [teacher_fs, student_fs], images)
    data = projector_zip([teacher_fs, student_fs], images)   # the page's download
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet, check_same_samples

METADATA_HEADER = ["model", "class", "predicted", "correct", "index"]


def _check(feature_sets: Sequence[FeatureSet], images: Tensor) -> None:
    if not feature_sets:
        raise AnalysisError("Nothing to export: give the teacher's and the students' features.")
    for other in feature_sets[1:]:
        check_same_samples(feature_sets[0], other)
    names = [fs.name for fs in feature_sets]
    if len(set(names)) != len(names):
        raise AnalysisError(f"Two models share a name ({names}); name each model once.")
    count = len(feature_sets[0])
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[:2] != (count, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise AnalysisError(
            f"The sprite needs the {count} samples' images as a {count} x 3 x H x W tensor in "
            f"[0, 1], got {shape}."
        )


def _metadata(fs: FeatureSet) -> list[list[str]]:
    names = fs.class_names
    label = (lambda k: names[k] if k < len(names) else str(k)) if names else str
    return [
        [fs.name, label(int(y)), label(int(p)), "yes" if bool(ok) else "no", str(int(i))]
        for y, p, ok, i in zip(fs.labels, fs.predictions, fs.correct, fs.indices, strict=True)
    ]


def _write(folder: Path, feature_sets: Sequence[FeatureSet], images: Tensor) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(folder)) as writer:
        for fs in feature_sets:
            writer.add_embedding(
                fs.pooled, metadata=_metadata(fs), metadata_header=METADATA_HEADER,
                label_img=images.float().clamp(0, 1), global_step=0, tag=fs.name,
            )  # fmt: skip


def write_projector(folder: Path, feature_sets: Sequence[FeatureSet], images: Tensor) -> Path:
    """Write the projector files into ``folder`` (new, or empty), all or nothing: into a
    temporary folder beside it, renamed at the end.

    Raises:
        AnalysisError: no feature set, sets of different samples or with the same name, images
            that do not match the samples, or a folder that is not empty or not writable.
    """
    _check(feature_sets, images)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AnalysisError(f"{folder} exists and is not an empty folder; choose a new folder.")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as error:
        raise AnalysisError(
            f"Cannot write into {folder.parent} ({error.strerror or error}); choose a folder "
            "you can write to."
        ) from None
    try:
        _write(staging, feature_sets, images)
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def projector_zip(feature_sets: Sequence[FeatureSet], images: Tensor) -> bytes:
    """The projector folder as a zip archive (a download), its files under ``projector/``."""
    _check(feature_sets, images)
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_projector(Path(scratch) / "projector", feature_sets, images)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, Path("projector") / path.relative_to(folder))
    return buffer.getvalue()
