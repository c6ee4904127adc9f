"""pickle_globals names what a pickle would import, without running it, in every protocol."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from kd_core.pickle_scan import pickle_globals


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_imports_nothing(protocol: int) -> None:
    assert pickle_globals(pickle.dumps({"a": [1, 2.0, "x"], "b": None}, protocol)) == []


def test_bytes_in_old_protocols_use_the_codec() -> None:
    assert pickle_globals(pickle.dumps(b"y", 2)) == ["_codecs.encode"]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_functions_are_named_once_each(protocol: int) -> None:
    data = pickle.dumps([os.system, print, os.system], protocol)
    builtins = "__builtin__" if protocol < 3 else "builtins"  # Python 2 names before protocol 3
    assert pickle_globals(data) == [f"{os.system.__module__}.system", f"{builtins}.print"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_memoised_names_are_followed(protocol: int) -> None:
    # Two arrays: the second refers to the memoised "numpy" strings and globals.
    data = pickle.dumps([np.zeros(2), np.ones(3), os.system], protocol)
    found = pickle_globals(data)
    assert f"{os.system.__module__}.system" in found
    assert all(name.startswith(("numpy", "_codecs", os.system.__module__)) for name in found)


def test_garbage_yields_what_was_read() -> None:
    assert pickle_globals(b"not a pickle at all") == []
    assert pickle_globals(pickle.dumps(os.system)[:-1]) == [f"{os.system.__module__}.system"]
