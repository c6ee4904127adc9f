"""``imagefolder``: a real load from a small tree of PNGs, the split layout, and every bad tree
with its message."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from kd_core.data import ImageError, create_dataset, dataset_info


def write_png(path, size=(40, 30), colour=(10, 200, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def make_tree(root, classes=("cat", "dog"), per_class=3):
    for c_index, name in enumerate(classes):
        for i in range(per_class):
            write_png(root / name / f"{i:03d}.png", (30 + 10 * i, 40), (40 * c_index, 100, 7 * i))
    return root


def test_a_tree_of_pngs_loads(tmp_path):
    root = make_tree(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored: not an image name
    (root / ".thumbnails").mkdir()  # hidden folders are not classes
    write_png(root / ".thumbnails" / "x.png")
    test = create_dataset("imagefolder", "test", root=root)
    assert len(test) == 6 and test.class_names == ("cat", "dog")
    assert test.info.num_classes == 2 and test.info.class_names == ("cat", "dog")
    assert dataset_info("imagefolder").num_classes is None  # the registry's info is untouched
    image, label = test[4]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 1
    train = create_dataset("imagefolder", "train", root=root, limit=4)
    assert len(train) == 4 and train[0][0].shape == (3, 224, 224)


def test_train_and_test_subfolders_are_the_splits(tmp_path):
    make_tree(tmp_path / "train", per_class=3)
    make_tree(tmp_path / "val", per_class=1)
    assert len(create_dataset("imagefolder", "train", root=tmp_path)) == 6
    assert len(create_dataset("imagefolder", "test", root=tmp_path)) == 2


def test_a_train_folder_without_a_test_folder(tmp_path):
    make_tree(tmp_path / "train")
    with pytest.raises(ValueError, match="has a train/ folder but no test/ or val/ folder"):
        create_dataset("imagefolder", "test", root=tmp_path)


def test_root_is_required(tmp_path):
    with pytest.raises(ValueError, match="imagefolder needs root="):
        create_dataset("imagefolder")
    with pytest.raises(ValueError, match="nothing to download"):
        create_dataset("imagefolder", root=tmp_path, download=True)


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match=f"No folder at {tmp_path / 'nope'}"):
        create_dataset("imagefolder", root=tmp_path / "nope")


def test_a_file_instead_of_a_folder(tmp_path):
    write_png(tmp_path / "one.png")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        create_dataset("imagefolder", root=tmp_path / "one.png")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty; put one sub-folder of images per class"):
        create_dataset("imagefolder", root=tmp_path / "empty")


def test_images_but_no_class_subfolders(tmp_path):
    for i in range(3):
        write_png(tmp_path / "flat" / f"{i}.png")
    with pytest.raises(ValueError, match=r"has no class sub-folders \(it holds 3 file\(s\)\)"):
        create_dataset("imagefolder", root=tmp_path / "flat")


def test_class_folders_without_images(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        (tmp_path / "tree" / name / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"No images found in the class folders .* \(a, b\)"):
        create_dataset("imagefolder", root=tmp_path / "tree")


def test_one_class_folder_without_images(tmp_path):
    make_tree(tmp_path / "tree", classes=("cat", "dog"))
    (tmp_path / "tree" / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"The class folder\(s\) empty_class in .* hold no images"):
        create_dataset("imagefolder", root=tmp_path / "tree")


def test_an_unreadable_image_fails_alone_and_names_the_file(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50), (1, 2, 3)).save(buffer, "JPEG")
    (root / "cat" / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    data = create_dataset("imagefolder", "test", root=root)
    assert len(data) == 8
    paths = [path for path, _ in data.samples]
    for name in ("broken.png", "cut.jpg"):
        index = next(i for i, p in enumerate(paths) if p.endswith(name))
        with pytest.raises(ImageError, match=name.replace(".", r"\.")):
            data[index]
    good = next(i for i, p in enumerate(paths) if p.endswith("000.png"))
    assert data[good][0].shape == (3, 224, 224)


def test_rgba_and_grayscale_files_load_as_rgb(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(root / "a" / "clear.png")
    Image.new("L", (20, 20), 128).save(root / "a" / "gray.png")
    data = create_dataset("imagefolder", "test", root=root)
    assert [data[i][0].shape for i in range(2)] == [(3, 224, 224)] * 2
