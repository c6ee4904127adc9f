"""timm checkpoints, saved as timm saves them (a bare ``state_dict`` file and a hub folder from
``timm.models.save_for_hf``), load with timm's own logits; bad timm inputs get one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
from timm.models import save_for_hf

from kd_core.checkpoints import CheckpointError, export_safetensors, load_checkpoint
from kd_core.checkpoints.hub import list_hub_checkpoints
from kd_core.cli import main
from kd_core.models import extract_features

# the smallest variant of each curated family; the input side (a ViT is saved at 224 so that
# its bare file keeps the curated architecture's shapes)
FAMILIES = [
    ("resnet18", 32),
    ("resnet18d", 32),
    ("mobilenetv2_050", 32),
    ("mobilenetv3_small_050", 32),
    ("efficientnet_b0", 32),
    ("regnetx_002", 32),
    ("convnext_atto", 32),
    ("vit_tiny_patch16_224", 224),
    ("deit_tiny_patch16_224", 224),
]
BARE_SKIPPED = {"mobilenetv2_050", "mobilenetv3_small_050", "deit_tiny_patch16_224"}
"""Families whose bare file is recognised as a tested one's is (the same marker key, compared
with the same candidates: EfficientNet's ``conv_stem.weight``, ViT's ``cls_token``): only
their hub folders are loaded, keeping the test short."""
CLASSES = 7


@pytest.mark.parametrize(("name", "side"), FAMILIES, ids=[name for name, _ in FAMILIES])
def test_hub_folder_and_bare_file_load_with_timms_logits(name, side, tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, num_classes=CLASSES).eval()
    images = torch.randn(1, 3, side, side)
    with torch.no_grad():
        expected = reference(images)
    save_for_hf(reference, tmp_path / "hub", safe_serialization=True)
    paths = [tmp_path / "hub"]
    if name not in BARE_SKIPPED:
        torch.save(reference.state_dict(), tmp_path / "weights.pth")
        paths.append(tmp_path / "weights.pth")
    for path in paths:
        loaded = load_checkpoint(path)
        assert loaded.num_classes == CLASSES
        if path.name == "hub":  # the config names it
            assert loaded.arch == f"timm:{name}"
        else:  # deit_tiny and vit_tiny share their shapes; timm's resnet18 keys are torchvision's
            assert f"timm:{name}" in (loaded.arch, *loaded.also_matches) or (
                loaded.arch == "tv_resnet18" and name == "resnet18"
            )
        with torch.no_grad():
            outputs = extract_features(loaded.model, images)
        torch.testing.assert_close(outputs.logits, expected, rtol=1e-5, atol=1e-6)
        if loaded.arch.startswith("timm:"):  # stages: timm's feature channels at their stride
            info = {f["module"]: f for f in reference.feature_info}
            for stage, feature in outputs.stages.items():
                side_out = side // info[stage]["reduction"]
                assert feature.shape == (1, info[stage]["num_chs"], side_out, side_out), stage


def test_hub_folder_with_model_args_keeps_its_input_recipe_and_exports(tmp_path):
    model = timm.create_model(
        "vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=8
    ).eval()
    save_for_hf(model, tmp_path / "vit", safe_serialization=True)
    loaded = load_checkpoint(tmp_path / "vit")
    assert loaded.model_args["patch_size"] == 8
    exported = load_checkpoint(export_safetensors(loaded, tmp_path / "vit.safetensors"))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.model(images), model(images), rtol=1e-5, atol=1e-6)


def test_hub_cache_lists_its_timm_checkpoints(tmp_path):
    model = timm.create_model("mobilenetv3_small_050", num_classes=4)
    repo = tmp_path / "models--someone--tiny-mnv3"
    save_for_hf(model, repo / "snapshots" / "abc123", safe_serialization=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (tmp_path / "models--other--bert").mkdir()  # not timm's: config with 'architectures'
    (tmp_path / "models--other--bert" / "config.json").write_text('{"architectures": ["Bert"]}')
    (found,) = list_hub_checkpoints(tmp_path)
    assert (found.repo, found.architecture, found.num_classes) == (
        "someone/tiny-mnv3",
        "timm:mobilenetv3_small_050",
        4,
    )
    assert load_checkpoint(repo).arch == "timm:mobilenetv3_small_050"  # the repository folder


@pytest.fixture(scope="module")
def vit_hub(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vit_hub")
    model = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=8)
    save_for_hf(model, folder, safe_serialization=True)
    return folder


def test_config_naming_an_unknown_architecture(vit_hub, tmp_path):
    shutil.copytree(vit_hub, tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    (tmp_path / "hub" / "config.json").write_text(json.dumps({**config, "architecture": "vitx"}))
    with pytest.raises(CheckpointError, match=r"names the architecture 'vitx', which the install"):
        load_checkpoint(tmp_path / "hub")


def test_hub_folder_without_weights(vit_hub, tmp_path):
    (tmp_path / "hub").mkdir()
    shutil.copy(vit_hub / "config.json", tmp_path / "hub")
    with pytest.raises(CheckpointError, match=r"no weights \(model.safetensors or pytorch_model"):
        load_checkpoint(tmp_path / "hub")


def test_weights_disagreeing_with_the_named_architecture(vit_hub, tmp_path):
    shutil.copytree(vit_hub, tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    config["model_args"]["patch_size"] = 16  # the weights are patch 8
    (tmp_path / "hub" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"does not fit architecture 'timm:vit_tiny_patch16"):
        load_checkpoint(tmp_path / "hub")
    with pytest.raises(CheckpointError, match="does not fit architecture 'timm:convnext_atto'"):
        load_checkpoint(vit_hub / "model.safetensors", arch="timm:convnext_atto")


def test_cli_inspect_names_a_hub_vit_and_its_recipe(vit_hub, capsys):
    assert main(["inspect", str(vit_hub)]) == 0
    printed = capsys.readouterr().out
    assert "architecture: timm:vit_tiny_patch16_224" in printed
    assert "blocks.11 1x192x4x4" in printed
    assert "input_size [3, 32, 32]" in printed
