"""The shapes cache: where it lives, a round trip, and regeneration of bad files."""

from __future__ import annotations

import numpy as np
import pytest

from kd_core.data import create_dataset, shapes
from kd_core.data.cache import cache_dir, default_data_root, save_npz
from kd_core.data.shapes import cache_path, load_shapes
from kd_core.data.shapes_render import GENERATOR_VERSION, render_shapes

FIELDS = ("images", "masks", "labels", "centers", "sizes", "angles")


def _equal(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def _no_rendering(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("rendered although a valid cache file exists")

    monkeypatch.setattr(shapes, "render_shapes", fail)


def test_cache_folder_comes_from_the_environment(tmp_path, monkeypatch, isolated_cache):
    assert cache_dir() == isolated_cache
    assert default_data_root() == tmp_path / "kd_core_data"
    monkeypatch.delenv("KD_CORE_CACHE")
    monkeypatch.delenv("KD_CORE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "kd_core"
    assert default_data_root() == tmp_path / "home" / ".cache" / "kd_core" / "datasets"


def test_the_file_name_carries_the_generator_version_split_and_seed(fresh_cache):
    path = cache_path("test", 3)
    assert path == fresh_cache / f"shapes-v{GENERATOR_VERSION}-test-seed3.npz"


def test_round_trip(fresh_cache, monkeypatch):
    first = load_shapes("test", seed=4)
    path = cache_path("test", 4)
    assert path.parent == fresh_cache
    assert path.is_file() and not list(fresh_cache.glob("*.tmp"))
    with np.load(path) as archive:
        assert archive["images"].dtype == np.uint8 and archive["masks"].dtype == np.bool_
        assert archive["labels"].dtype == np.int64
    _no_rendering(monkeypatch)
    second = load_shapes("test", seed=4)
    assert _equal(first, second)
    assert _equal(second, render_shapes(10_000, 4, "test"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"definitely not an npz file"),
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 3]),
        lambda path: np.savez(path, images=np.zeros((3, 32, 32, 3), np.uint8)),
        lambda path: np.savez(
            path, **{f: np.zeros(10_000, np.float64) for f in FIELDS}
        ),  # right keys, wrong dtypes and shapes
    ],
    ids=["garbage", "truncated", "missing-keys", "wrong-arrays"],
)
def test_a_bad_cache_file_is_regenerated(damage, fresh_cache, shapes_test):
    path = cache_path("test", 0)
    save_npz(path, {f: getattr(shapes_test, f) for f in FIELDS})
    damage(path)
    assert _equal(load_shapes("test", seed=0), shapes_test)
    with np.load(path) as archive:  # and the file was rewritten, valid
        assert archive["images"].shape == (10_000, 32, 32, 3)


def test_a_version_change_means_a_new_file(monkeypatch, fresh_cache):
    load_shapes("test", seed=0)
    monkeypatch.setattr(shapes, "GENERATOR_VERSION", "test-bump")
    load_shapes("test", seed=0)
    names = {p.name for p in fresh_cache.iterdir()}
    assert names == {
        f"shapes-v{GENERATOR_VERSION}-test-seed0.npz",
        "shapes-vtest-bump-test-seed0.npz",
    }


def test_an_unwritable_cache_warns_and_still_returns_data(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("the cache folder would have to be inside this file")
    monkeypatch.setenv("KD_CORE_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="Could not write the cache file"):
        data = load_shapes("test", seed=0)
    assert len(data) == 10_000


def test_root_sets_the_cache_folder_of_create_dataset(tmp_path, monkeypatch):
    create_dataset("shapes", "test", root=tmp_path / "mine", limit=3)
    assert (tmp_path / "mine" / f"shapes-v{GENERATOR_VERSION}-test-seed0.npz").is_file()
    _no_rendering(monkeypatch)
    assert len(create_dataset("shapes", "test", root=tmp_path / "mine")) == 10_000
