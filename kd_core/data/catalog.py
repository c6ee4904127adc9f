"""What each dataset is (:class:`DatasetInfo`), and the built-in ones: read without torch.

The app's sidebar lists datasets and the CLI checks names before anything is loaded, so what a
dataset is lives here, apart from how it is built (:mod:`~kd_core.data.shapes`,
:mod:`~kd_core.data.cifar`, :mod:`~kd_core.data.imagefolder`, which need torch). The
normalisation statistics are here for the same reason; :mod:`~kd_core.data.transforms` uses
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kd_core.data.shapes_render import CLASS_NAMES as SHAPES_CLASSES
from kd_core.data.shapes_render import SIZE as SHAPES_SIZE


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset expects.

    Attributes:
        name: the registry name.
        title: a short human-readable name.
        description: one or two sentences for people choosing a dataset.
        num_classes: number of classes; ``None`` until loaded (``imagefolder``).
        class_names: class names by label index; ``None`` until loaded (``imagefolder``).
        mean, std: per-channel normalisation of ``[0, 1]`` RGB values.
        image_size: side of the square images the models see.
        crop_fraction: share of an image's shorter side kept by the test-time centre crop
            (1.0 for 32-px datasets; 224/256 for ``imagefolder``: resize 256, crop 224).
        has_masks: whether each image comes with a boolean object mask.
        needs_files: whether the images must be on disk (``root``) rather than generated.
        per_model_inputs: whether a model with its own input recipe (a timm model's pretrained
            config) sees the images prepared its own way (:mod:`~kd_core.data.model_inputs`)
            rather than by the dataset's transform (``imagefolder``).
    """

    name: str
    title: str
    description: str
    num_classes: int | None
    class_names: tuple[str, ...] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    crop_fraction: float = 1.0
    has_masks: bool = False
    needs_files: bool = True
    per_model_inputs: bool = False


# Per-channel statistics of the shapes train split for seed 0, in [0, 1], measured on its first
# 10,000 images; the whole 50,000 agree within 1e-3 (checked by a test).
SHAPES_MEAN = (0.3842, 0.3836, 0.3847)
SHAPES_STD = (0.2280, 0.2281, 0.2285)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The fine labels, in the order of the archive's ``meta`` file (alphabetical).
_CIFAR100_NAMES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
"""
CIFAR100_CLASSES = tuple(_CIFAR100_NAMES.split())

SHAPES_INFO = DatasetInfo(
    name="shapes",
    title="Shapes (embedded)",
    description=(
        "Ten shapes (circle, square, triangle, star, cross, ring, ellipse, hexagon, heart, "
        "arrow) on cluttered backgrounds, 32 x 32, generated on this machine: 50,000 training "
        "and 10,000 test images, each with the mask of its object."
    ),
    num_classes=len(SHAPES_CLASSES),
    class_names=SHAPES_CLASSES,
    mean=SHAPES_MEAN,
    std=SHAPES_STD,
    image_size=SHAPES_SIZE,
    has_masks=True,
    needs_files=False,
)
CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    title="CIFAR-10",
    description="60,000 32 x 32 photos in 10 classes (50,000 train, 10,000 test); local files.",
    num_classes=10,
    class_names=CIFAR10_CLASSES,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    image_size=32,
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    title="CIFAR-100",
    description="60,000 32 x 32 photos in 100 classes (50,000 train, 10,000 test); local files.",
    num_classes=100,
    class_names=CIFAR100_CLASSES,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    image_size=32,
)
IMAGEFOLDER_INFO = DatasetInfo(
    name="imagefolder",
    title="Image folder",
    description=(
        "Your own images, one sub-folder per class (optionally under train/ and test/ or val/);"
        " seen at 224 x 224 with ImageNet statistics."
    ),
    num_classes=None,
    class_names=None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    image_size=224,
    crop_fraction=224 / 256,
    per_model_inputs=True,
)

BUILTIN_DATASETS = (
    (SHAPES_INFO, "kd_core.data.shapes"),
    (CIFAR10_INFO, "kd_core.data.cifar"),
    (CIFAR100_INFO, "kd_core.data.cifar"),
    (IMAGEFOLDER_INFO, "kd_core.data.imagefolder"),
)
"""The built-in datasets in the order of ``list_datasets()``, each with the module that
registers its builder."""
