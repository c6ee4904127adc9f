"""kd_core's layers: a module may import its own layer and the layers below it, never one above.

The layers, bottom to top (the test reads them from this block: it is the one place the order
is written; one layer per line, its top-level modules and packages of ``kd_core``)::

    outputs pickle_scan files lazy
    losses models data
    checkpoints
    analysis training
    figures workspace views
    report
    cli __main__
    app_pages streamlit

``outputs``, ``pickle_scan`` and ``files`` (atomic writes) are plain helpers; ``losses``,
``models`` and ``data`` the building blocks; ``checkpoints`` reads and writes models;
``analysis`` is the math on trained models and ``training`` the engine; ``figures``,
``workspace`` and ``views`` (the pages' logic as plain data) serve the app; ``report`` puts
what the pages show into one HTML file; ``cli`` is the command line. The top line is the app,
outside kd_core: ``app_pages/`` and Streamlit itself, so kd_core importing either is an upward
import.

The package root ``kd_core/__init__.py`` is exempt: it only holds ``__version__`` and imports
nothing of kd_core (checked below), so any layer may import it.

Every import is read with :mod:`ast`: ``import kd_core.x``, ``from kd_core.x import y``,
``from kd_core import x`` and relative imports, wherever they are (inside functions, under
``if TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kd_core"
EXTERNAL = {"app_pages", "streamlit"}
"""Layer names that are not part of kd_core."""


def parse_layers(doc: str) -> dict[str, int]:
    """Top-level name -> layer number (0 at the bottom) from the ``::`` block of ``doc``."""
    block = doc.split("::", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    return {name: number for number, line in enumerate(block.splitlines()) for name in line.split()}


LAYERS = parse_layers(__doc__)


def module_name(path: Path, package_root: Path = PACKAGE) -> str:
    """``kd_core/analysis/angular.py`` -> ``kd_core.analysis.angular`` (a package's
    ``__init__.py`` -> the package)."""
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``tree``, in a module ``importer``;
    ``from package import name`` gives ``package.name`` (``name`` may be a submodule)."""
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def layer_of(module: str) -> tuple[str, int] | None:
    """The top-level name and layer of a module (``kd_core.views.runs`` -> ``("views", 4)``);
    ``None`` for the package root and for modules outside kd_core and the app."""
    parts = module.split(".")
    if parts[0] in EXTERNAL:
        return parts[0], LAYERS[parts[0]]
    if parts[0] != "kd_core" or len(parts) < 2 or parts[1] not in LAYERS:
        return None  # the package root (kd_core, kd_core.__version__) or a third party
    return parts[1], LAYERS[parts[1]]


def violations(path: Path, source: str, package_root: Path = PACKAGE) -> list[str]:
    """``file:line: ...`` for every import in ``source`` (the text of ``path``) that runs up
    the layers."""
    importer = module_name(path, package_root)
    own = layer_of(importer)
    if own is None:  # the package root is exempt
        return []
    where = path.relative_to(package_root.parent)
    tree = ast.parse(source, filename=str(path))
    found = []
    for line, imported in sorted(imported_modules(tree, importer, path.name == "__init__.py")):
        target = layer_of(imported)
        if target is not None and target[1] > own[1]:
            found.append(
                f"{where}:{line}: {importer} (layer {own[0]!r}) imports {imported} "
                f"(layer {target[0]!r}, higher)"
            )
    return found


def kd_core_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_import_runs_up_the_layers():
    found = [v for path in kd_core_files() for v in violations(path, path.read_text())]
    assert not found, "Imports that run up the layers:\n" + "\n".join(found)


def test_every_top_level_module_has_a_layer():
    top_level = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py")
        or (path.is_dir() and (path / "__init__.py").is_file())
    }
    assert top_level - set(LAYERS) == set(), "place these modules in a layer of the docstring"
    assert set(LAYERS) - EXTERNAL - top_level == set(), "the docstring names missing modules"


def test_the_package_root_imports_nothing_of_kd_core():
    init = PACKAGE / "__init__.py"
    tree = ast.parse(init.read_text())
    imported = [name for _, name in imported_modules(tree, "kd_core", is_package=True)]
    assert [name for name in imported if name.split(".")[0] == "kd_core"] == []


def test_the_layers_are_read_from_the_docstring():
    assert LAYERS["outputs"] == LAYERS["pickle_scan"] == 0
    assert LAYERS["analysis"] == LAYERS["training"] < LAYERS["views"] < LAYERS["cli"]
    assert max(LAYERS.values()) == LAYERS["app_pages"] == LAYERS["streamlit"]


def test_the_checker_reports_upward_imports_with_file_and_line(tmp_path):
    source = (
        "import torch\n"
        "from kd_core.outputs import ModelOutputs\n"
        "from kd_core.losses.base import DistillationLoss\n"
        "from kd_core import __version__, models\n"
        "\n"
        "def page():\n"
        "    from kd_core.views.runs import run_row\n"
        "    import streamlit as st\n"
        "    from ..views import runs\n"
        "    from .. import training\n"
        "    from . import kd\n"
    )
    path = tmp_path / "kd_core" / "losses" / "fake.py"
    found = violations(path, source, package_root=tmp_path / "kd_core")
    assert found == [
        "kd_core/losses/fake.py:7: kd_core.losses.fake (layer 'losses') imports "
        "kd_core.views.runs.run_row (layer 'views', higher)",
        "kd_core/losses/fake.py:8: kd_core.losses.fake (layer 'losses') imports streamlit "
        "(layer 'streamlit', higher)",
        "kd_core/losses/fake.py:9: kd_core.losses.fake (layer 'losses') imports "
        "kd_core.views.runs (layer 'views', higher)",
        "kd_core/losses/fake.py:10: kd_core.losses.fake (layer 'losses') imports "
        "kd_core.training (layer 'training', higher)",
    ]


def test_a_package_init_resolves_relative_imports_from_itself(tmp_path):
    path = tmp_path / "kd_core" / "analysis" / "__init__.py"
    found = violations(
        path, "from .. import figures\nfrom . import angular\n", tmp_path / "kd_core"
    )
    assert [v.split(": ", 1)[0] for v in found] == ["kd_core/analysis/__init__.py:1"]
