"""Top-1, top-5 and loss of a model over a data loader (summed across processes under DDP)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.training.device import Precision
from kd_core.training.distributed import Distributed


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    precision: Precision,
    distributed: Distributed | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) and mean cross-entropy of ``model`` over ``loader`` (a
    ``DataLoader`` or the batches of a split held on the device)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    with (
        torch.no_grad(),
        torch.autocast(
            device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
        ),
    ):
        for images, labels in loader:
            images, labels = (
                images.to(device, non_blocking=True),
                labels.to(device, non_blocking=True),
            )
            logits = model(images).float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hits = top.eq(labels[:, None])
            totals += torch.stack(
                [
                    F.cross_entropy(logits, labels, reduction="sum").double(),
                    hits[:, 0].sum().double(),
                    hits.any(dim=1).sum().double(),
                    torch.full((), labels.numel(), dtype=torch.float64, device=device),
                ]
            )
    if distributed is not None and distributed.enabled:
        dist.all_reduce(totals)
    model.train(was_training)
    loss, top1, top5, count = totals.tolist()
    count = max(count, 1.0)
    return {
        "loss": loss / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count,
        "images": int(count),
    }  # fmt: skip
