"""A whole small dataset held as one uint8 tensor, augmented a mini-batch at a time.

On a CPU the per-image PIL pipeline (``RandomCrop`` + ``RandomHorizontalFlip`` + ``ToTensor``
+ ``Normalize`` in DataLoader workers) competes with the training step for the same cores.
Fashion-MNIST and CIFAR fit in memory as uint8 (47 MB and 150 MB), so the same augmentation
can run on whole batches as tensor operations instead: zero padding, one random crop offset and
one flip draw per image, then the per-channel normalisation. The distribution of augmented
images is the same as the PIL pipeline's (padding is black, i.e. 0 before normalisation).

Holds:
- ``TensorImages``: images (N, C, H, W) uint8 and labels (N,), taken from a torchvision dataset
  (or a ``Subset`` of one) that keeps its data in memory; ``from_dataset`` returns None for
  datasets that do not (ImageNet folders, synthetic data), which keep the DataLoader
- ``TensorImages.batches``: one epoch of (normalised float images, labels), shuffled and
  augmented from a seed alone, so a resumed run draws exactly what the uninterrupted run would
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

__all__ = ["TensorImages", "augment_batch"]


def augment_batch(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop after zero padding, and a random horizontal flip, one draw per image.

    Args:
        images: (B, C, H, W) uint8.
        padding: pixels of zeros on each side before cropping back to H x W (0: no crop).
        flip: flip each image left-right with probability 1/2.
        generator: the source of every random draw.
    Returns:
        (B, C, H, W) uint8, the augmented batch.
    """
    b, _, h, w = images.shape
    out = images
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b)[:, None, None, None]
        channel = torch.arange(images.shape[1])[None, :, None, None]
        out = padded[batch, channel, rows, cols]
    if flip:
        flips = torch.rand(b, generator=generator) < 0.5
        out = torch.where(flips[:, None, None, None], out.flip(-1), out)
    return out


@dataclass
class TensorImages:
    """A dataset split as tensors: ``images`` (N, C, H, W) uint8, ``labels`` (N,) int64."""

    images: Tensor
    labels: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, mean: Sequence[float], std: Sequence[float]
    ) -> TensorImages | None:
        """The split behind ``dataset`` as tensors, or None when its images are not in memory.

        Reads torchvision's MNIST-style ``.data`` (N, H, W) tensors and CIFAR's ``.data``
        (N, H, W, C) arrays, and the toolkit's in-memory ``images`` arrays; follows ``Subset``
        indices (``--limit``).
        """
        indices: Tensor | None = None
        while isinstance(dataset, Subset):
            step = torch.as_tensor(list(dataset.indices), dtype=torch.long)
            indices = step if indices is None else step[indices]
            dataset = dataset.dataset
        data = getattr(dataset, "data", None)
        if data is None:
            data = getattr(dataset, "images", None)
        labels = getattr(dataset, "targets", None)
        if labels is None:
            labels = getattr(dataset, "labels", None)
        if data is None or labels is None:
            return None
        images = torch.as_tensor(np.asarray(data))
        if images.dtype != torch.uint8 or images.dim() not in (3, 4):
            return None
        if images.dim() == 3:  # (N, H, W) grey
            images = images[:, None]
        elif images.shape[-1] in (1, 3):  # (N, H, W, C), CIFAR's layout
            images = images.permute(0, 3, 1, 2)
        labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if indices is not None:
            images, labels_t = images[indices], labels_t[indices]
        return cls(images.contiguous(), labels_t, tuple(mean), tuple(std))

    def __len__(self) -> int:
        return len(self.labels)

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 -> float in [0, 1] (as ``ToTensor``) -> per-channel (x - mean) / std."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def batches(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        padding: int = 0,
        flip: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of (normalised images, labels) batches; the last one may be smaller.

        With ``seed`` the order is a random permutation and the augmentation is random, both
        drawn from ``seed`` alone; without it the order is the stored one and nothing is
        augmented (evaluation).
        """
        n = len(self)
        generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size] if order is not None else None
            images = self.images[index] if index is not None else self.images[start:][:batch_size]
            labels = self.labels[index] if index is not None else self.labels[start:][:batch_size]
            if generator is not None and (padding or flip):
                images = augment_batch(images, padding, flip, generator)
            yield self.normalise(images), labels
