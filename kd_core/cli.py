"""The command line: ``python -m kd_core <command> ...``.

Commands (one function each, ``cmd_<name>``):

* ``inspect PATH [--json] [--arch NAME] [--num-classes K]``: what a checkpoint holds.
* ``train [--config FILE] [--preset NAME] [--teacher PATH] --student NAME ...``: one run, in
  the foreground, written to a new folder under ``--runs-root`` (flags override the file,
  which overrides the preset); with ``--compare METHODS`` one student per method, trained
  side by side as one group.
* ``eval CKPT --dataset NAME``: top-1, top-5 and loss of a checkpoint on a dataset split.
* ``projector OUT --teacher PATH [--students PATH ...]``: features for TensorBoard's projector.
* ``report OUT.html [--teacher PATH] [--students PATH ...] [--figures DIR]``: the workspace
  (by default the app's: the bundled teacher and default students) as one offline HTML file;
  with ``--figures`` also each figure on its own (HTML, and SVG/PDF when kaleido is installed).

Errors never show a traceback: a bad input (any :class:`~kd_core.checkpoints.CheckpointError`
or usage error) prints one line on stderr and exits with status 2; anything unexpected prints
one line and exits with status 1. ``KeyboardInterrupt`` is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from kd_core import __version__

PROG = "python -m kd_core"
EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1


class UsageError(Exception):
    """A command line that cannot be parsed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _format_shape(shape: Sequence[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else "-"


def _format_value(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable lines ``inspect`` prints for a :func:`~kd_core.checkpoints.summarize`
    result."""
    rows = [
        ("file", summary["source"]),
        ("format", summary["source_format"]),
        ("architecture", summary["architecture"]),
        ("classes", str(summary["num_classes"])),
        ("parameters", f"{summary['parameters']:,}"),
        ("input", _format_shape(summary["input_shape"])),
    ]
    if summary.get("weights_key"):
        rows.insert(2, ("weights", summary["weights_key"]))
    stages = summary.get("stages") or {}
    if stages:
        rows.append(("stages", ", ".join(f"{k} {_format_shape(v)}" for k, v in stages.items())))
    if summary.get("pooled_shape"):
        rows.append(("pooled", _format_shape(summary["pooled_shape"])))
    rows.append(("logits", _format_shape(summary.get("logits_shape"))))
    if summary.get("input_config"):
        config = summary["input_config"]
        rows.append(
            ("recipe", ", ".join(f"{key} {_format_value(value)}" for key, value in config.items()))
        )
    if summary.get("also_matches"):
        rows.append(("also fits", ", ".join(summary["also_matches"])))
    if summary.get("skipped"):
        rows.append(("not loaded", ", ".join(summary["skipped"])))
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"{label + ':':<{width}} {value}" for label, value in rows]
    metadata = summary.get("metadata") or {}
    if metadata:
        lines.append("metadata:")
        lines += [f"  {key}: {_format_value(value)}" for key, value in metadata.items()]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Load a checkpoint and print its summary."""
    from kd_core.checkpoints import load_checkpoint, summarize

    loaded = load_checkpoint(args.path, arch=args.arch, num_classes=args.num_classes)
    summary = summarize(loaded)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _objective(text: str) -> dict[str, float]:
    """``ce=1,amd=1000`` -> ``{"ce": 1.0, "amd": 1000.0}``."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise UsageError(
                f"--objective: {part!r} is not NAME=WEIGHT (e.g. ce=1,amd=1000)"
            ) from None
    if not weights:
        raise UsageError("--objective needs at least one NAME=WEIGHT (e.g. ce=1,amd=1000)")
    return weights


def _read_config_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = open(path).read()  # noqa: SIM115 - a one-shot read
    except OSError as error:
        raise UsageError(f"cannot read the config file {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"{path} is not valid JSON/YAML: {_one_line(error)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of configuration keys.")
    return data


_FLAG_FIELDS = {
    "teacher": "teacher", "student": "student", "dataset": "dataset", "data_root": "data_root",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "limit_train": "limit_train",
    "limit_test": "limit_test", "seed": "seed", "device": "device", "precision": "precision",
    "name": "name", "weight_decay": "weight_decay", "schedule": "schedule",
    "warmup_epochs": "warmup_epochs", "log_every": "log_every",
    "data_on_device": "data_on_device", "compile": "compile",
}  # fmt: skip


def train_config_from_args(args: argparse.Namespace):
    """The resolved configuration: preset, then the config file, then the flags."""
    from kd_core.training.config import TrainConfig, preset

    config = preset(args.preset) if args.preset else TrainConfig()
    if args.config:
        config = config.with_overrides(_read_config_file(args.config))
    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in _FLAG_FIELDS.items()
        if getattr(args, flag) is not None
    }  # fmt: skip
    if args.objective is not None:
        overrides["objective"] = args.objective
    amd = {
        key: value
        for key, value in (("margin", args.amd_margin), ("scale", args.amd_scale))
        if value is not None
    }
    if args.amd_local:
        amd["local"] = True
    if amd:
        overrides["loss_params"] = {
            **config.loss_params, "amd": {**config.loss_params.get("amd", {}), **amd}
        }  # fmt: skip
    return config.with_overrides(overrides)


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run in the foreground, with a progress bar in a terminal."""
    from pathlib import Path

    from kd_core.training.runs import check_config_for_launch, new_run_id
    from kd_core.training.trainer import RunCancelled, train

    config = train_config_from_args(args)
    if args.compare is not None:
        return _train_compared(config, args.compare, Path(args.runs_root).expanduser())
    check_config_for_launch(config)
    root = Path(args.runs_root).expanduser()
    run_dir = root / new_run_id(root, config, config.name)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    progress = _ProgressPrinter(config.epochs, enabled=main_process)
    if main_process:
        print(f"run folder: {run_dir}", file=sys.stderr)
    try:
        result = train(config, run_dir, on_progress=progress)
    except RunCancelled:
        return 0
    finally:
        progress.close()
    if main_process:
        print(f"best top-1 {result.best_top1:.2f}%, last {result.last_top1:.2f}%, "
              f"{result.seconds:.0f} s; run folder {run_dir}")  # fmt: skip
    return 0


def _train_compared(config, methods: str, root) -> int:
    """``train --compare``: one student per method, trained as one group (same batches, the
    teacher's pass shared), each in a run folder of its own."""
    from kd_core.training.methods import METHODS, method_set
    from kd_core.training.runs import check_config_for_launch, new_run_id
    from kd_core.training.trainer import train_group

    names = method_set(methods)
    configs = []
    for name in names:
        method = METHODS[name]
        label = f"{config.name}-{name}" if config.name else name
        teacher = config.teacher if method.uses_teacher else None
        configs.append(
            config.with_overrides({**method.overrides(), "teacher": teacher, "name": label})
        )
    for member in configs:
        check_config_for_launch(member)
    run_dirs = [root / new_run_id(root, member, member.name) for member in configs]
    group = f"group-{run_dirs[0].name}"
    print(f"group {group}: {len(configs)} students under {root}", file=sys.stderr)

    def progress(index: int, record: dict[str, Any]) -> None:
        if record["kind"] == "epoch":
            print(f"{names[index]}: epoch {record['epoch']}, test top-1 "
                  f"{record['test_top1']:.2f}%", file=sys.stderr, flush=True)  # fmt: skip

    outcomes = train_group(configs, run_dirs, group=group, on_progress=progress)
    for name, run_dir, outcome in zip(names, run_dirs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            print(f"{name}: stopped: {_one_line(outcome)}; run folder {run_dir}")
        else:
            print(f"{name}: best top-1 {outcome.best_top1:.2f}%, last {outcome.last_top1:.2f}%; "
                  f"run folder {run_dir}")  # fmt: skip
    return 0 if all(not isinstance(o, Exception) for o in outcomes) else EXIT_UNEXPECTED


class _ProgressPrinter:
    """A tqdm bar over the run's progress on a terminal; one line per epoch otherwise."""

    def __init__(self, epochs: int, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self.bar = tqdm(
            total=epochs,
            unit="epoch",
            disable=not (enabled and sys.stderr.isatty()),
            bar_format="{l_bar}{bar}| {n:.2f}/{total} epochs [{elapsed}<{remaining}]",
        )

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        done = record["progress"] * self.bar.total
        self.bar.update(done - self.bar.n)
        if record["kind"] == "epoch":
            line = (
                f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
                f"test top-1 {record['test_top1']:.2f}%, top-5 {record['test_top5']:.2f}%"
            )
            if self.bar.disable:
                print(line, file=sys.stderr, flush=True)
            else:
                self.bar.set_postfix_str(f"top-1 {record['test_top1']:.2f}%")

    def close(self) -> None:
        self.bar.close()


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset split."""
    from torch.utils.data import DataLoader

    from kd_core.checkpoints import load_checkpoint
    from kd_core.data import create_dataset
    from kd_core.training.device import resolve_device, resolve_precision
    from kd_core.training.evaluation import evaluate

    loaded = load_checkpoint(args.checkpoint)
    dataset = create_dataset(args.dataset, split=args.split, root=args.data_root,
                             augment=False, limit=args.limit)  # fmt: skip
    device = resolve_device(args.device)
    loader = DataLoader(dataset, batch_size=args.batch_size)
    metrics = evaluate(loaded.model.to(device), loader, device, resolve_precision("fp32", device))
    metrics = {
        "checkpoint": args.checkpoint,
        "architecture": loaded.arch,
        "dataset": args.dataset,
        "split": args.split,
        "images": len(dataset),
        **metrics,
    }
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{loaded.arch} on {args.dataset}/{args.split} ({len(dataset)} images): "
              f"top-1 {metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}%, "
              f"loss {metrics['loss']:.4f}")  # fmt: skip
    return 0


def cmd_projector(args: argparse.Namespace) -> int:
    """Write the pooled features of a teacher and its students for TensorBoard's projector."""
    from pathlib import Path

    import torch

    from kd_core.analysis.extraction import extract_feature_set
    from kd_core.checkpoints import load_checkpoint
    from kd_core.data import create_dataset, denormalize
    from kd_core.views.projector import write_projector

    dataset = create_dataset(args.dataset, split=args.split, root=args.data_root, augment=False)
    feature_sets = []
    for role, path in [("teacher", args.teacher), *(("student", s) for s in args.students)]:
        loaded = load_checkpoint(path)
        name = f"{role} {Path(path).stem} ({loaded.arch})"
        model = loaded.model.float()
        feature_sets.append(
            extract_feature_set(model, dataset, name=name, arch=loaded.arch, samples=args.samples)
        )
    indices = feature_sets[0].indices
    images = denormalize(torch.stack([dataset[int(i)][0] for i in indices]), args.dataset)
    folder = write_projector(Path(args.out), feature_sets, images)
    print(f"wrote {len(feature_sets)} embeddings of {len(indices)} samples to {folder}; open "
          f"them with: tensorboard --logdir {folder}  (Projector tab)")  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the workspace's report as one offline HTML file (and each figure on its own)."""
    from pathlib import Path

    from kd_core.report.build import ReportRequest, build_report
    from kd_core.report.html import PLOTLY_FILE, check_writable, write_figures, write_report
    from kd_core.workspace import (
        DEFAULT_SAMPLES,
        default_selection,
        entry_for_file,
        find_entry,
        list_checkpoints,
    )

    out = Path(args.out).expanduser()
    check_writable(out)  # before minutes of work, not after
    if args.figures:
        check_writable(Path(args.figures).expanduser() / PLOTLY_FILE)
    entries = list_checkpoints()
    default_teacher, default_students = default_selection(entries)
    if args.teacher is None and default_teacher is None:
        raise UsageError("there is no bundled teacher here: give --teacher PATH")
    teacher = (
        entry_for_file(args.teacher, entries)
        if args.teacher is not None
        else find_entry(entries, default_teacher)
    )
    students = (
        [entry_for_file(path, entries) for path in args.students]
        if args.students is not None
        else [find_entry(entries, key) for key in default_students]
    )
    samples = DEFAULT_SAMPLES if args.samples is None else args.samples
    request = ReportRequest(
        teacher, tuple(students), args.dataset, args.split, samples, args.data_root
    )
    report = build_report(request, progress=lambda line: print(line, file=sys.stderr, flush=True))
    write_report(out, report)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(report.figures)} figures); it "
          "opens offline in any browser")  # fmt: skip
    if args.figures:
        written = write_figures(Path(args.figures).expanduser(), report, say=print)
        print(f"wrote {len(written)} files into {args.figures}")
    return 0


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train a student (alone or distilled from a teacher)",
        description="Train one run in the foreground; flags override --config, which "
        "overrides --preset.",
    )  # fmt: skip
    train.add_argument("--config", metavar="FILE", help="YAML or JSON configuration")
    train.add_argument("--preset", help="cifar100 or shapes-short")
    train.add_argument("--teacher", metavar="PATH", help="teacher checkpoint")
    train.add_argument("--student", metavar="NAME", help="student architecture")
    train.add_argument("--dataset", metavar="NAME")
    train.add_argument("--data-root", metavar="DIR", help="where cifar/imagefolder data lie")
    train.add_argument("--objective", type=_objective, metavar="TERMS",
                       help="weighted losses, e.g. ce=1,kd=0.9,amd=1000")  # fmt: skip
    train.add_argument("--amd-margin", type=float, metavar="M")
    train.add_argument("--amd-scale", type=float, metavar="S")
    train.add_argument("--amd-local", action="store_true", help="AMD global + local")
    train.add_argument("--epochs", type=int, metavar="N")
    train.add_argument("--batch-size", type=int, metavar="B")
    train.add_argument("--lr", type=float, metavar="LR")
    train.add_argument("--weight-decay", type=float, metavar="WD")
    train.add_argument("--schedule", choices=["cosine", "step"])
    train.add_argument("--warmup-epochs", type=float, metavar="E")
    train.add_argument("--limit-train", type=int, metavar="N")
    train.add_argument("--limit-test", type=int, metavar="N")
    train.add_argument("--seed", type=int, metavar="S")
    train.add_argument("--device", metavar="DEV", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    train.add_argument(
        "--data-on-device", choices=["auto", "on", "off"],
        help="hold shapes/CIFAR on the training device and augment whole batches there (auto: "
        "on CUDA when they take under a quarter of its free memory)",
    )  # fmt: skip
    train.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="run student and teacher through torch.compile (off by default; where it fails, "
        "the run says so and goes on uncompiled)",
    )  # fmt: skip
    train.add_argument("--log-every", type=int, metavar="STEPS")
    train.add_argument("--name", help="a label for the run folder")
    train.add_argument("--runs-root", default="runs", metavar="DIR")
    train.add_argument(
        "--compare", metavar="METHODS",
        help="train one student per method side by side, as one group (same batches, one "
        "teacher pass): a set (paper, classroom) or names, e.g. vanilla,kd,at,amd",
    )  # fmt: skip
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint", description="Top-1, top-5 and loss of a checkpoint."
    )
    evaluate.add_argument("checkpoint", metavar="CKPT")
    evaluate.add_argument("--dataset", required=True, metavar="NAME")
    evaluate.add_argument("--data-root", metavar="DIR")
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument("--limit", type=int, metavar="N")
    evaluate.add_argument("--batch-size", type=int, default=256, metavar="B")
    evaluate.add_argument("--device", default="auto", metavar="DEV")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    projector = commands.add_parser(
        "projector", help="export features for TensorBoard's projector",
        description="The pooled features of a teacher and its students on the same samples, "
        "with metadata and a sprite of the images, in the folder layout TensorBoard's "
        "projector reads.",
    )  # fmt: skip
    projector.add_argument("out", metavar="OUT", help="a new (or empty) folder")
    projector.add_argument("--teacher", required=True, metavar="PATH")
    projector.add_argument("--students", nargs="*", default=[], metavar="PATH")
    projector.add_argument("--dataset", default="shapes", metavar="NAME")
    projector.add_argument("--data-root", metavar="DIR")
    projector.add_argument("--split", default="test", choices=["train", "test"])
    projector.add_argument("--samples", type=int, default=1000, metavar="N")
    projector.set_defaults(handler=cmd_projector)

    report = commands.add_parser(
        "report", help="write the workspace as one offline HTML report",
        description="The workspace table, θ histograms and summaries per stage, an attention "
        "grid with its agreement table, the 2-D embedding, CKA and (for the bundled teacher) "
        "the results table, in one HTML file that opens offline. Defaults: the app's default "
        "workspace.",
    )  # fmt: skip
    report.add_argument("out", metavar="OUT.html", help="the HTML file to write")
    report.add_argument("--teacher", metavar="PATH", help="default: the bundled teacher")
    report.add_argument("--students", nargs="*", metavar="PATH",
                        help="default: the bundled vanilla and AMD students")  # fmt: skip
    report.add_argument("--dataset", default="shapes", metavar="NAME")
    report.add_argument("--data-root", metavar="DIR")
    report.add_argument("--split", default="test", choices=["train", "test"])
    report.add_argument("--samples", type=int, metavar="N", help="default: the app's, 1,000")
    report.add_argument(
        "--figures", metavar="DIR", help="also each figure as HTML (and SVG/PDF with kaleido)"
    )
    report.set_defaults(handler=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="kd_core: angular knowledge distillation tools.")
    parser.add_argument("--version", action="version", version=f"kd_core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    inspect = commands.add_parser(
        "inspect",
        help="show what a checkpoint holds",
        description="Load a checkpoint (never executing code from it) and show its network.",
    )
    inspect.add_argument(
        "path", metavar="PATH", help=".pth/.pt/.safetensors file, or a timm hub folder"
    )
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.add_argument(
        "--arch", help="registry name of the network, timm:NAME for timm (default: inferred)"
    )
    inspect.add_argument(
        "--num-classes", type=int, help="expected number of classes (default: inferred)"
    )
    inspect.set_defaults(handler=cmd_inspect)
    _add_train_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return args.handler(args)
    except (UsageError, ValueError) as exc:  # CheckpointError and configuration errors too
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        raise
    except BrokenPipeError:
        return EXIT_UNEXPECTED
    except Exception as exc:  # the CLI never shows a traceback
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_UNEXPECTED
