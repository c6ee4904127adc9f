"""Each model sees its own inputs: on an image folder, a timm ViT (32 px, mean/std 0.5) and a
timm MobileNetV3 (40 px, ImageNet statistics) get the same images prepared by their own
recipes; the CIFAR zoo and ``shapes`` see the dataset as before; a training group shares the
students' recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.models import save_for_hf

from kd_core.analysis.extraction import extract_feature_set
from kd_core.analysis.feature_cache import FeatureCache, feature_set_for
from kd_core.data import create_dataset, model_inputs, prepare_image
from kd_core.data.catalog import IMAGENET_MEAN, IMAGENET_STD
from kd_core.data.model_inputs import input_recipe, shared_inputs
from kd_core.models import create_model
from kd_core.training.config import TrainConfig
from kd_core.training.trainer import train

COLOUR = (200, 100, 50)
VIT_ARGS = {"img_size": 32, "patch_size": 8}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of one uniform 60 x 45 image each: any resize or crop keeps the colour, so
    a pixel's value tells which statistics prepared it."""
    root = tmp_path_factory.mktemp("images")
    for name in ("cat", "dog"):
        (root / name).mkdir()
        Image.new("RGB", (60, 45), COLOUR).save(root / name / "001.png")
    return root


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("timm:vit_tiny_patch16_224", num_classes=2, model_args=VIT_ARGS)


def _cnn(side: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "timm:mobilenetv3_small_050", num_classes=2, pretrained_cfg={"input_size": (3, side, side)}
    )


def _expected(mean, std) -> torch.Tensor:
    return (torch.tensor(COLOUR) / 255 - torch.tensor(mean)) / torch.tensor(std)


def test_two_models_see_the_same_images_through_their_own_recipes(folder, vit):
    dataset = create_dataset("imagefolder", split="test", root=folder)
    for model, side, mean, std in (
        (vit, 32, (0.5,) * 3, (0.5,) * 3),
        (_cnn(40), 40, IMAGENET_MEAN, IMAGENET_STD),
    ):
        view = model_inputs(dataset, model)
        image, label = view[1]
        assert image.shape == (3, side, side) and label == 1
        assert torch.allclose(image.mean(dim=(1, 2)), _expected(mean, std), atol=1e-2)
        assert view.info.image_size == side and view.info.mean == tuple(mean)
        features = extract_feature_set(model, dataset, name="m", arch="m")
        assert features.logits.shape == (2, 2)
    # the dataset itself is unchanged, and what a CIFAR-zoo network sees
    assert dataset[1][0].shape == (3, 224, 224)
    assert model_inputs(dataset, create_model("resnet8", num_classes=2)) is dataset
    assert input_recipe("shapes", vit) is None and input_recipe("cifar100", vit) is None


def test_an_upload_is_prepared_by_each_models_recipe(folder, vit):
    png = (folder / "cat" / "001.png").read_bytes()
    assert prepare_image(png, "imagefolder", model=vit).shape == (1, 3, 32, 32)
    plain = prepare_image(png, "imagefolder", model=create_model("resnet8", num_classes=2))
    assert plain.shape == (1, 3, 224, 224)
    assert torch.equal(plain, prepare_image(png, "imagefolder"))
    assert prepare_image(png, "shapes", model=vit).shape == (1, 3, 32, 32)


def test_the_feature_cache_tells_apart_the_same_weights_seen_through_two_recipes(folder):
    dataset = create_dataset("imagefolder", split="test", root=folder)
    cache = FeatureCache(persist=False)
    maps = [
        feature_set_for(_cnn(side), dataset, "folder", name="m", arch="m", cache=cache)
        for side in (32, 64)
    ]
    assert [fs.attention[fs.stage_names[-1]].shape[-1] for fs in maps] == [1, 2]


def test_a_group_shares_the_students_recipe_and_the_teacher_sees_it(folder, vit):
    dataset = create_dataset("imagefolder", split="train", root=folder)
    view = shared_inputs(dataset, [_cnn(32), _cnn(32)], vit, augment=True)
    assert view[0][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"need one input recipe.*Train them separately"):
        shared_inputs(dataset, [_cnn(32), vit])
    with pytest.raises(ValueError, match="teacher accepts only 32 x 32 images"):
        shared_inputs(dataset, [_cnn(40)], vit)


def test_training_refuses_a_teacher_that_cannot_take_the_students_inputs(folder, vit, tmp_path):
    save_for_hf(vit, tmp_path / "vit", safe_serialization=True)
    config = TrainConfig(
        student="timm:mobilenetv3_small_050",  # its recipe: 224 px
        teacher=str(tmp_path / "vit"),
        dataset="imagefolder",
        data_root=str(folder),
        objective={"ce": 1.0, "amd": 1.0},
        loss_params={"amd": {"align": True}},
        epochs=1,
        batch_size=2,
        device="cpu",
    )
    with pytest.raises(ValueError, match=r"teacher accepts only 32 x 32 images.*prepares 224"):
        train(config)
