"""Bad dataset folders: CIFAR and image folders that are missing, empty, wrongly laid out or
hold a corrupt file. Each is refused with a sentence that says what to put where; the folder
is left exactly as it was (nothing deleted, nothing downloaded); the app shows the sentence.

An image folder with one corrupt image is accepted when it is opened (files are read lazily);
reading that image raises an ``ImageError`` that names the file (the item is not skipped), and
the app's pages show it as an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from kd_core.data import ImageError, create_dataset
from tests.reliability.corpus import assert_sentence, cifar10_folder, image_folder

CIFAR_CASES = {
    "missing": "CIFAR-10 files not found: expected the folder",
    "empty": "CIFAR-10 files not found",
    "wrong_structure": r"missing: data_batch_1, .*test_batch",
    "file_is_folder": r"missing: test_batch\)",
    "corrupt": "not in the expected format .*UnpicklingError.*delete the folder and extract",
    "truncated": "not in the expected format .*truncated",
    "wrong_shape": "not in the expected format .*cannot reshape",
    "wrong_classes": r"hold 5 classes of images shaped \(32, 32, 3\), not CIFAR-10's 10 classes",
}
IMAGE_FOLDER_CASES = {
    "missing": "No folder at .*pass root= a folder with one sub-folder of images per class",
    "empty": "is empty; put one sub-folder of images per class in it",
    "is_a_file": "is a file, not a folder",
    "no_class_folders": r"has no class sub-folders \(it holds 2 file\(s\)\)",
    "class_without_images": "The class folder.* dog .*hold no images",
    "train_without_test": "has a train/ folder but no test/ or val/ folder",
}


def _refusal(name: str, root: Path, phrase: str, project) -> None:
    before = project.snapshot()
    with pytest.raises(ValueError) as refused:
        create_dataset(name, split="test", root=root)
    assert_sentence(str(refused.value), phrase)
    assert project.snapshot() == before  # nothing deleted, created or downloaded


@pytest.mark.parametrize("kind", list(CIFAR_CASES))
def test_a_bad_cifar_folder_is_refused_with_what_to_do(kind: str, project_env) -> None:
    root = cifar10_folder(project_env.data / "cifar", kind)
    _refusal("cifar10", root, CIFAR_CASES[kind], project_env)


def test_a_good_cifar_layout_loads(project_env) -> None:
    """The control for the cases above: the same builder's ``good`` layout is read."""
    dataset = create_dataset("cifar10", split="test", root=cifar10_folder(project_env.data, "good"))
    assert len(dataset) == 4 and tuple(dataset[0][0].shape) == (3, 32, 32)


def test_the_default_cifar_root_says_where_it_looked(project_env) -> None:
    _refusal("cifar100", None, r"CIFAR-100 files not found: .*download=True", project_env)


@pytest.mark.parametrize("kind", list(IMAGE_FOLDER_CASES))
def test_a_bad_image_folder_is_refused_with_what_to_do(kind: str, project_env) -> None:
    root = image_folder(project_env.data / "images", kind)
    _refusal("imagefolder", root, IMAGE_FOLDER_CASES[kind], project_env)


def test_an_image_folder_needs_a_root(project_env) -> None:
    _refusal("imagefolder", None, "imagefolder needs root=", project_env)


def test_a_corrupt_image_in_a_folder_is_named_when_it_is_read(project_env) -> None:
    root = image_folder(project_env.data / "images", "corrupt_image")
    dataset = create_dataset("imagefolder", split="test", root=root)
    assert len(dataset) == 3 and dataset.class_names == ("cat", "dog")
    assert tuple(dataset[0][0].shape) == (3, 224, 224)  # the readable items still load
    corrupt = str(root / "dog" / "1.png")
    with pytest.raises(ImageError) as refused:
        dataset[2]
    assert_sentence(str(refused.value), f"The file {re.escape(corrupt)} is not an image")
    with pytest.raises(ImageError, match=r"1\.png is not an image"):  # not skipped in a loader
        list(DataLoader(dataset, batch_size=3))


# ---------------------------------------------------------------- the app


@pytest.mark.parametrize(
    ("dataset", "builder", "kind", "phrase"),
    [
        ("cifar10", cifar10_folder, "missing", "CIFAR-10 files not found"),
        ("cifar10", cifar10_folder, "corrupt", "not in the expected format"),
        ("imagefolder", image_folder, "no_class_folders", "has no class sub-folders"),
        ("imagefolder", image_folder, "corrupt_image", r"Sample 2 of the dataset cannot be read"),
    ],
    ids=["cifar_missing", "cifar_corrupt", "folder_without_classes", "folder_corrupt_image"],
)
def test_the_inspector_evaluation_shows_a_bad_dataset_folder(
    app_opener, module_project_env, dataset, builder, kind, phrase
):
    root = builder(module_project_env.data / f"{dataset}-{kind}", kind)
    at = app_opener("inspector.py", ws_dataset=dataset, ws_data_root=str(root))
    assert {m.label: m.value for m in at.metric}["Architecture"] == "resnet20"
    before = module_project_env.snapshot()
    [evaluate] = [b for b in at.button if b.label == "Evaluate"]
    evaluate.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, phrase)
    assert module_project_env.snapshot() == before
    assert {m.label: m.value for m in at.metric}["Architecture"] == "resnet20"  # still up


def test_the_attention_page_shows_a_corrupt_image_in_the_dataset(app_opener, module_project_env):
    root = image_folder(module_project_env.data / "attention-corrupt", "corrupt_image")
    at = app_opener(
        "attention.py",
        ws_dataset="imagefolder",
        ws_data_root=str(root),
        ws_students=["bundled:student_resnet8_amd"],
    )
    assert len(at.error) == 1
    assert_sentence(
        at.error[0].value, f"The file {re.escape(str(root / 'dog' / '1.png'))} is not an image"
    )
    assert at.title[0].value == "Attention maps"
