"""The first page a server draws imports no torch: Home and the sidebar read checkpoint lists,
class counts and the margin's geometry from files and NumPy, so a new server draws its first
page while ``serve.py`` is still importing torch (``benchmarks/bench_app.py``: home after
healthy). Each case runs in a new interpreter, where nothing is imported yet."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

from kd_core.lazy import lazy_attributes
from tests.fresh_python import run_fresh_python

ROOT = Path(__file__).resolve().parents[2]
LAZY_PACKAGES = ("kd_core.checkpoints", "kd_core.data", "kd_core.losses", "kd_core.models")


def _folders(tmp_path: Path) -> dict[str, str]:
    """Runs, uploads and the hub cache in ``tmp_path``: the workspace is the bundled one."""
    return {
        "KD_CORE_RUNS": str(tmp_path / "runs"),
        "KD_CORE_UPLOADS": str(tmp_path / "uploads"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
    }


def test_home_and_the_sidebar_are_drawn_without_torch(tmp_path):
    run_fresh_python(
        f"""
        import sys
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        heavy = sorted(m for m in ("torch", "scipy", "captum", "timm") if m in sys.modules)
        assert not heavy, f"the first page imported {{heavy}}"
        assert at.title.values == ["Angular margin-based distillation (AMD)"]
        sidebar = " ".join(at.sidebar.markdown.values)
        assert "compute device: named once torch has loaded" in sidebar
        import importlib.metadata
        assert f"torch `{{importlib.metadata.version('torch')}}`" in sidebar
        # the default workspace's class counts are read beside the files: the report is offered
        assert [b.label for b in at.get("download_button")][1] == "Report of this workspace (HTML)"

        import app_pages._models  # what serve.py imports after the first page
        at.run()
        assert "compute device: `cpu`" in " ".join(at.sidebar.markdown.values)
        """,
        _folders(tmp_path),
    )


def test_the_margin_figure_and_checkpoint_list_need_no_torch(tmp_path):
    run_fresh_python(
        """
        import sys
        from kd_core.data import dataset_info, list_datasets
        from kd_core.figures.margin import boundary_angle, margin_figure
        from kd_core.losses.amd_constants import DEFAULT_MARGIN
        from kd_core.workspace import default_selection, list_checkpoints

        entries = list_checkpoints()
        teacher, students = default_selection(entries)
        assert teacher == "bundled:teacher_resnet20" and len(students) == 2
        assert {e.num_classes for e in entries if e.source == "bundled"} == {10}
        assert list_datasets() == ["shapes", "cifar10", "cifar100", "imagefolder"]
        assert dataset_info("cifar100").num_classes == 100
        assert "<polyline" in margin_figure(DEFAULT_MARGIN)
        assert round(boundary_angle(1.0), 6) == 60.0
        assert "torch" not in sys.modules
        """,
        _folders(tmp_path),
    )


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_lazy_name_resolves_and_none_hides_a_submodule(package):
    """A lazy name equal to a submodule's would be replaced by that module once it is imported
    (``kd_core.data.model_inputs`` is bound eagerly for that reason)."""
    module = importlib.import_module(package)
    for submodule in pkgutil.iter_modules(module.__path__):  # as if everything were loaded
        importlib.import_module(f"{package}.{submodule.name}")
    for name in module.__all__:
        value = getattr(module, name)
        assert not (isinstance(value, type(sys)) and value.__name__ == f"{package}.{name}"), name
    assert set(module.__all__) <= set(dir(module))


def test_an_unknown_lazy_name_raises_attribute_error():
    getattr_, dir_ = lazy_attributes("kd_core.data", {"list_datasets": ".registry"})
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        getattr_("nothing")
    assert "list_datasets" in dir_()
