"""Shared fixtures for the data tests.

Every test runs with ``KD_CORE_CACHE`` and ``KD_CORE_DATA`` pointing into temporary folders
(never ``~/.cache``). The cache folder is shared by the session, so each ``shapes`` split is
rendered once; tests of the cache itself use ``fresh_cache``, a folder of their own.
"""

from __future__ import annotations

import pytest

from kd_core.data.shapes import load_shapes
from kd_core.data.shapes_render import ShapesArrays


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kd_core_cache")


@pytest.fixture(autouse=True)
def isolated_cache(session_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CORE_CACHE", str(session_cache))
    monkeypatch.setenv("KD_CORE_DATA", str(tmp_path / "kd_core_data"))
    return session_cache


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for this test alone."""
    cache = tmp_path / "fresh_cache"
    monkeypatch.setenv("KD_CORE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def shapes_train(session_cache) -> ShapesArrays:
    return load_shapes("train", seed=0, folder=session_cache)


@pytest.fixture(scope="session")
def shapes_test(session_cache) -> ShapesArrays:
    return load_shapes("test", seed=0, folder=session_cache)
