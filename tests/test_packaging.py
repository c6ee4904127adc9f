"""kd_core installs like the libraries beside it: `pip install .` gives the package (and nothing
else of the repository) with a `kd-core` command, its dependencies are the ranges of
requirements*.txt, and the library imports without the app's packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LIBRARY = ("losses", "models", "data", "checkpoints", "training", "analysis")
APP_ONLY = ("streamlit", "plotly", "captum")


def _requirement_lines(name: str) -> set[str]:
    lines = (ROOT / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and line[0] not in "#-"}


def test_dependencies_are_the_ranges_of_the_requirement_files():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert set(project["dependencies"]) | set(extras["app"]) == _requirement_lines(
        "requirements.txt"
    )
    assert set(extras["dev"]) == _requirement_lines("requirements-dev.txt")
    assert not set(project["dependencies"]) & {r for r in extras["app"]}
    assert not any(r.split(">=")[0] in APP_ONLY for r in project["dependencies"])
    assert project["scripts"] == {"kd-core": "kd_core.cli:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of what a source distribution holds (setuptools writes
    ``build/`` and ``*.egg-info`` beside the sources: never into the working tree)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "kd_core", source / "kd_core", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (path,) = out.glob("kd_core-*.whl")
    return path


def test_the_wheel_holds_the_package_and_its_data_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.startswith("kd_core/")}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "kd_core").rglob("*.py")} | {
        "kd_core/py.typed"
    }
    assert modules == expected
    others = {n.split("/")[0] for n in names} - {"kd_core"}
    assert all(o.startswith("kd_core-") and o.endswith(".dist-info") for o in others), others
    assert not any(n.endswith((".pt", ".pth", ".safetensors", ".npz")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kd-core = kd_core.cli:main" in text


def test_the_installed_wheel_gives_the_command_and_the_losses(wheel, tmp_path):
    """A fresh virtual environment whose only kd_core is the wheel's (dependencies borrowed from
    the test's environment through a path file, so nothing is downloaded)."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    help_text = subprocess.run(
        [str(env_dir / "bin" / "kd-core"), "--help"],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "inspect" in help_text and "train" in help_text
    code = textwrap.dedent(
        f"""
        import kd_core
        from kd_core.losses import build_loss
        assert kd_core.__file__.startswith({str(env_dir)!r}), kd_core.__file__
        print(type(build_loss("amd")).__name__)
        """
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "AMDLoss"


def test_the_library_imports_without_the_apps_packages():
    """Every module of the library layers imports with streamlit, plotly and captum made
    unimportable (a meta-path finder that refuses them)."""
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {APP_ONLY!r}:
                    raise ImportError(f"{{name}} is not installed (test)")
                return None

        sys.meta_path.insert(0, Refuse())
        import kd_core
        names = []
        for part in {LIBRARY!r}:
            package = importlib.import_module("kd_core." + part)
            names.append(package.__name__)
            for info in pkgutil.walk_packages(
                getattr(package, "__path__", []), prefix=package.__name__ + "."
            ):
                importlib.import_module(info.name)
                names.append(info.name)
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in {APP_ONLY!r})
        assert not loaded, loaded
        print(len(names))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40
