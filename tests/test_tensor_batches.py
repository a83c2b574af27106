"""Whole-batch tensor augmentation against the per-image reference: torchvision's transforms
and a hand-written crop-and-flip over every offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from resnet_ensemble.data.datasets import ArrayImageDataset, dataset_info, make_transform
from resnet_ensemble.data.tensor_batches import TensorImages, augment_batch


def _grey_dataset(n: int = 40, seed: int = 0) -> ArrayImageDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    return ArrayImageDataset(images, labels, make_transform("fashion-mnist", augment=False))


def _all_crops_and_flips(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every image the PIL pipeline can produce: each crop offset of the zero-padded image,
    flipped or not. (C, H, W) uint8 in, a list of (C, H, W) out."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out += [crop, crop[:, :, ::-1]]
    return out


def test_unaugmented_batches_equal_the_torchvision_transform() -> None:
    ds = _grey_dataset()
    info = dataset_info("fashion-mnist")
    tensors = TensorImages.from_dataset(Subset(ds, range(3, 30)), info.mean, info.std)
    assert tensors is not None and len(tensors) == 27
    got_x, got_y = zip(*tensors.batches(8), strict=True)
    x, y = torch.cat(got_x), torch.cat(got_y)
    reference = torch.stack([ds[i][0] for i in range(3, 30)])
    torch.testing.assert_close(x, reference, rtol=0, atol=1e-6)
    assert y.tolist() == [int(ds.labels[i]) for i in range(3, 30)]


def test_each_augmented_image_is_one_crop_and_flip_of_its_source() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    out = augment_batch(images, padding=2, flip=True, generator=g)
    seen = set()
    for src, got in zip(images.numpy(), out.numpy(), strict=True):
        matches = [i for i, ref in enumerate(_all_crops_and_flips(src, 2)) if (ref == got).all()]
        assert matches, "not a crop-and-flip of its source image"
        seen.add(matches[0])
    assert len(seen) > 20  # offsets and flips vary from image to image


def test_epochs_are_permutations_drawn_from_the_seed_alone() -> None:
    ds = _grey_dataset(50)
    info = dataset_info("fashion-mnist")
    tensors = TensorImages.from_dataset(ds, info.mean, info.std)
    assert tensors is not None

    def epoch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*tensors.batches(16, seed=seed, padding=2, flip=True), strict=True)
        return torch.cat(xs), torch.cat(ys)

    x0, y0 = epoch(0)
    x0_again, y0_again = epoch(0)
    x1, _ = epoch(1)
    assert torch.equal(x0, x0_again) and torch.equal(y0, y0_again)
    assert not torch.equal(x0, x1)
    assert sorted(y0.tolist()) == sorted(int(v) for v in ds.labels)  # every image once


def test_datasets_without_images_in_memory_are_declined() -> None:
    class Folder(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(3, 8, 8), 0

    assert TensorImages.from_dataset(Folder(), (0.0,), (1.0,)) is None


@pytest.mark.parametrize("flip", [False, True])
def test_no_padding_keeps_the_image_or_its_mirror(flip: bool) -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (32, 1, 5, 5), generator=g, dtype=torch.uint8)
    out = augment_batch(images, padding=0, flip=flip, generator=g)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert bool(mirrored.any()) == flip and bool((~same).any()) == flip
