"""Fixtures for the reliability tests: a throw-away project folder and the app on top of it.

- ``project_env`` (per test): fresh ``runs/``, ``uploads/`` and ``data/`` folders under
  ``tmp_path``, with ``KD_CORE_RUNS``, ``KD_CORE_UPLOADS``, ``KD_CORE_DATA`` pointing at them and
  ``KD_CORE_CACHE`` at a cache shared by the session (the ``shapes`` splits are rendered once).
  Its :meth:`ProjectFolders.snapshot` says what the folders hold, to assert "nothing lost,
  nothing half-written": compare a snapshot taken before the bad input with one taken after.
- ``module_project_env``: the same for a whole test module (for one AppTest shared by its
  tests: opening the app and loading its models once saves seconds per case).
- ``app_opener`` (module): ``open_app("inspector.py", inspector_source="Upload a file")``
  runs the app on a page, with session-state values set before the first run, on
  ``module_project_env``'s folders.

Example::

    def test_bad_upload(project_env):
        before = project_env.snapshot()
        with pytest.raises(CheckpointError, match="truncated"):
            store_upload(data, "x.pt")
        assert project_env.snapshot() == before
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app.py"


@dataclass(frozen=True)
class ProjectFolders:
    """The writable folders of one test project (all under ``root``)."""

    root: Path
    runs: Path
    uploads: Path
    data: Path
    cache: Path

    def snapshot(self) -> dict[str, str]:
        """Relative path -> sha256 of every file under ``root`` (``"<dir>"`` for folders):
        equal snapshots mean nothing was added, removed, renamed or changed."""
        state = {}
        for path in sorted(self.root.rglob("*")):
            relative = str(path.relative_to(self.root))
            state[relative] = (
                "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            )
        return state


def _folders(root: Path, cache: Path, setenv: Callable[[str, str], None]) -> ProjectFolders:
    folders = ProjectFolders(root, root / "runs", root / "uploads", root / "data", cache)
    for variable, folder in (
        ("KD_CORE_RUNS", folders.runs),
        ("KD_CORE_UPLOADS", folders.uploads),
        ("KD_CORE_DATA", folders.data),
        ("KD_CORE_CACHE", folders.cache),
    ):
        setenv(variable, str(folder))
    return folders


@pytest.fixture(scope="session")
def reliability_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``KD_CORE_CACHE`` for the session (generated data, features)."""
    return tmp_path_factory.mktemp("kd_core_cache")


@pytest.fixture
def project_env(
    tmp_path: Path, reliability_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> ProjectFolders:
    """Fresh project folders for one test (see the module docstring)."""
    project = tmp_path / "project"
    project.mkdir()
    return _folders(project, reliability_cache, monkeypatch.setenv)


@pytest.fixture(scope="module")
def module_project_env(
    tmp_path_factory: pytest.TempPathFactory, reliability_cache: Path
) -> Iterator[ProjectFolders]:
    """Project folders shared by the tests of one module."""
    project = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as patch:
        yield _folders(project, reliability_cache, patch.setenv)


@pytest.fixture(scope="module")
def app_opener(module_project_env: ProjectFolders) -> Callable[..., AppTest]:
    """``open_app(page, **session_state) -> AppTest``: the app run on ``app_pages/<page>``,
    checked for exceptions. Streamlit's process-wide caches are cleared first (they would
    carry another module's folders, e.g. the run manager's root)."""
    st.cache_resource.clear()
    st.cache_data.clear()

    def open_app(page: str, **session_state: Any) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=120)
        for key, value in session_state.items():
            at.session_state[key] = value
        at.run()
        at.switch_page(f"app_pages/{page}").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_app
