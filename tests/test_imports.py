"""torchvision is imported only when something needs it: importing kd_core (and the app's shared
module) must not pay its seconds of start-up, while the ``tv_*`` models, the CIFAR and
imagefolder datasets and their classes keep working once asked for."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from kd_core.data import cifar, create_dataset, imagefolder
from tests.fresh_python import run_fresh_python


def test_importing_kd_core_and_the_app_does_not_import_torchvision():
    run_fresh_python(
        """
        import sys
        import kd_core, kd_core.data, kd_core.models, kd_core.analysis.extraction
        import kd_core.checkpoints, kd_core.training.runs, app_pages._shared
        from kd_core.data import list_datasets
        from kd_core.models import list_models, model_info

        # the registries answer without torchvision
        assert list_datasets() == ["shapes", "cifar10", "cifar100", "imagefolder"]
        assert "tv_resnet18" in list_models()
        assert model_info("tv_resnet18").input_size == 224
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torchvision")
        assert not loaded, f"torchvision was imported: {loaded[:5]}"
        """
    )


def test_a_torchvision_model_still_builds_and_imports_torchvision_then():
    run_fresh_python(
        """
        import sys
        import torch
        from kd_core.models import create_model, extract_features

        assert "torchvision" not in sys.modules
        model = create_model("tv_resnet18", num_classes=10).eval()
        assert "torchvision" in sys.modules
        assert type(model).__module__ == "torchvision.models.resnet"
        with torch.no_grad():
            outputs = extract_features(model, torch.zeros(1, 3, 64, 64))
        assert outputs.logits.shape == (1, 10)
        assert list(outputs.stages) == ["layer1", "layer2", "layer3", "layer4"]
        """
    )


def test_a_bare_cifar_state_dict_is_recognised_without_torchvision_or_timm(tmp_path):
    """Architecture inference tries the CIFAR zoo before torchvision's networks (building those
    imports torchvision, about 3 s) and timm's: a bare state dict of the zoo pays neither."""
    run_fresh_python(
        f"""
        import sys
        import torch
        from kd_core.checkpoints import load_checkpoint
        from kd_core.models import create_model

        path = {str(tmp_path / "bare.pt")!r}
        torch.save(create_model("resnet8", num_classes=10).state_dict(), path)
        loaded = load_checkpoint(path)
        assert (loaded.arch, loaded.num_classes, loaded.source_format) == (
            "resnet8", 10, "state_dict"
        )
        for heavy in ("torchvision", "timm"):
            assert heavy not in sys.modules, f"{{heavy}} was imported"
        """
    )


def test_the_image_extensions_are_torchvisions_and_gif():
    assert tuple(sorted({*IMG_EXTENSIONS, ".gif"})) == imagefolder.EXTENSIONS


@pytest.mark.parametrize(
    ("module", "name", "base"),
    [
        (cifar, "LocalCIFAR10", CIFAR10),
        (cifar, "LocalCIFAR100", CIFAR100),
        (imagefolder, "CheckedImageFolder", ImageFolder),
    ],
)
def test_the_deferred_subclasses_are_module_attributes_that_pickle(module, name, base):
    cls = getattr(module, name)
    assert issubclass(cls, base) and cls.__name__ == name
    assert getattr(module, name) is cls  # created once
    assert pickle.loads(pickle.dumps(cls)) is cls  # found again by module and name
    assert not hasattr(module, "Missing")  # other names still raise AttributeError


def test_an_imagefolder_dataset_pickles_and_loads_the_same_images(tmp_path):
    for index, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 30), (100 * index, 50, 7)).save(tmp_path / name / "001.png")
    dataset = create_dataset("imagefolder", "test", root=tmp_path)
    copy = pickle.loads(pickle.dumps(dataset))
    assert type(copy) is type(dataset) is imagefolder.CheckedImageFolder
    assert copy.class_names == ("cat", "dog")
    for (image, label), (image_copy, label_copy) in zip(dataset, copy, strict=True):
        assert label == label_copy and torch.equal(image, image_copy)


def test_the_first_page_pays_neither_scipy_stats_nor_dynamo():
    """The app's first script run imports the run manager (the trainer, the attention probe) and
    loads the default checkpoints, whose architecture is matched on the meta device. Neither
    needs ``scipy.stats`` (rank correlation imports it when called: about 0.5 s) nor
    ``torch._dynamo`` (torch's meta ``normal_`` imports it: about 2 s, so initialisation skips
    meta tensors)."""
    run_fresh_python(
        """
        import sys
        import torch
        import app_pages._shared, kd_core.training.runs
        from kd_core.checkpoints import load_checkpoint
        from kd_core.models import create_model
        from kd_core.workspace import ASSETS_DIR

        loaded = load_checkpoint(ASSETS_DIR / "teacher_resnet20.pt")
        assert loaded.arch == "resnet20"
        with torch.device("meta"):
            model = create_model("resnet8", num_classes=10)
        assert all(p.is_meta for p in model.parameters())
        for heavy in ("scipy.stats", "torch._dynamo"):
            assert heavy not in sys.modules, f"{heavy} was imported"

        from kd_core.analysis.agreement import rank_correlation  # imports scipy.stats on use
        t = torch.tensor([[[0.1, 0.2, 0.4]]])
        assert rank_correlation(t, 1 - t).item() == -1.0
        assert "scipy.stats" in sys.modules
        """
    )
