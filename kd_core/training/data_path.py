"""Where a run's batches come from, and in which order.

Two paths, one order: the ``DataLoader`` (every data set; images prepared one at a time by the
data set's transforms) or the splits held on the training device
(:class:`~kd_core.data.device_split.DeviceSplit`; data sets held in memory, whole batches
cropped, flipped and normalised there). Both visit the items of an epoch in the order of the
generator :func:`seed_epoch` returns, sharded the same way under DDP, so resuming at an epoch
boundary repeats the same batches on either path. ``data_on_device``: ``off`` is the loader;
``on`` the device (an error, before any training, when the data set is read from files or the
splits do not fit in the free device memory); ``auto`` the device on CUDA when the splits take
under :data:`AUTO_SHARE` of its free memory, the loader elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from kd_core.data.device_split import DeviceBatches, DeviceSplit, held_bytes
from kd_core.training.device import DATA_ON_DEVICE
from kd_core.training.distributed import Distributed

AUTO_SHARE = 0.25
"""``auto`` holds the splits on a CUDA device when they need under this share of its free
memory."""

Batches = DataLoader | DeviceBatches
"""A sized iterable of ``(images, labels)`` batches, from either path."""


def augmentation_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's augmentation draws (and of torch's global generator)."""
    return seed * 100_003 + epoch


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global RNG (the loader's augmentation, dropout) for this epoch; return the
    generator that orders the epoch's batches."""
    torch.manual_seed(augmentation_seed(seed, epoch))
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def sample_order(
    size: int, shuffle: bool, generator: torch.Generator | None, distributed: Distributed
) -> Sampler[int] | range:
    """This process's item indices: training in the ``generator``'s order (a
    ``DistributedSampler`` seeded by it under DDP), evaluation in order, each process taking
    every ``world_size``-th item (no padding: exact counts)."""
    items: Sized = range(size)
    if distributed.enabled and shuffle:
        return DistributedSampler(
            items, num_replicas=distributed.world_size, rank=distributed.rank,
            shuffle=True, seed=generator.initial_seed(),
        )  # type: ignore[arg-type]  # fmt: skip
    if distributed.enabled:
        return range(distributed.rank, size, distributed.world_size)
    if shuffle:
        return RandomSampler(items, generator=generator)  # type: ignore[arg-type]
    return range(size)


def loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    distributed: Distributed,
) -> DataLoader:
    """The loader path: ``dataset``'s items in :func:`sample_order`, ``batch_size`` at a time."""
    order = sample_order(len(dataset), shuffle, generator, distributed)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=False)


def resolve_data_on_device(mode: str, datasets: Iterable[Dataset], device: torch.device) -> bool:
    """Whether ``datasets`` (a run's splits) are held on ``device``, for ``mode`` (see the
    module docstring); a ``ValueError`` says why ``on`` cannot be, and what to use instead."""
    if mode not in DATA_ON_DEVICE:
        raise ValueError(
            f"data_on_device must be one of {', '.join(DATA_ON_DEVICE)}, got {mode!r}."
        )
    if mode == "off":
        return False
    datasets = list(datasets)
    sizes = [held_bytes(d) for d in datasets]
    if None in sizes:
        if mode == "on":
            name = getattr(getattr(datasets[0], "info", None), "name", "This data set")
            raise ValueError(
                f"{name} reads its images from files one at a time, so it cannot be held on "
                "the device (only shapes, cifar10 and cifar100 can); use --data-on-device off "
                "or auto, which train it through the loader."
            )
        return False
    if device.type != "cuda":
        return mode == "on"
    needed = sum(sizes)  # type: ignore[arg-type]
    free, _ = torch.cuda.mem_get_info(device)
    if mode == "auto":
        return needed < AUTO_SHARE * free
    if needed > free:
        raise ValueError(
            f"Holding the splits on {device} needs {needed / 2**20:,.0f} MiB but only "
            f"{free / 2**20:,.0f} MiB are free there; use --data-on-device off (the loader) "
            "or free device memory."
        )
    return True


class DataPath:
    """A run's training and test batches on the path ``on_device`` names (see the module
    docstring); batches come out on ``device``, channels-last when ``channels_last``."""

    def __init__(
        self,
        train_set: Dataset,
        test_set: Dataset,
        on_device: bool,
        device: torch.device,
        channels_last: bool,
        distributed: Distributed,
    ) -> None:
        self.train_set, self.test_set = train_set, test_set
        self.on_device, self.device, self.distributed = on_device, device, distributed
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.held: tuple[DeviceSplit, DeviceSplit] | None = None
        if on_device:
            info = train_set.info  # type: ignore[attr-defined]
            self.held = (
                DeviceSplit(train_set, info.mean, info.std, device),
                DeviceSplit(test_set, info.mean, info.std, device),
            )

    @property
    def label(self) -> str:
        """``device`` or ``loader``: what the run's status and the Distill page show."""
        return "device" if self.on_device else "loader"

    def train_batches(self, seed: int, epoch: int, batch_size: int) -> Batches:
        """Epoch ``epoch``'s training batches, randomly cropped and flipped, in the (seed,
        epoch) order; seeds torch's global generator for the epoch (:func:`seed_epoch`)."""
        generator = seed_epoch(seed, epoch)
        if self.held is None:
            return loader(self.train_set, batch_size, True, generator, self.distributed)
        order = sample_order(len(self.held[0]), True, generator, self.distributed)
        draws = torch.Generator(device=self.device).manual_seed(augmentation_seed(seed, epoch))
        return self.held[0].batches(order, batch_size, draws, self.memory_format)

    def test_batches(self, batch_size: int) -> Batches:
        """The test split's batches, in order, this process's share under DDP."""
        if self.held is None:
            return loader(self.test_set, batch_size, False, None, self.distributed)
        order = sample_order(len(self.held[1]), False, None, self.distributed)
        return self.held[1].batches(order, batch_size, None, self.memory_format)
