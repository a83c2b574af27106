"""Shared fixtures: tiny models that are quick to run and small enough to check by hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from resnet_ensemble.data.datasets import FASHION_MNIST_FILES, FASHION_MNIST_SYSTEM_DIR
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import save_checkpoint

#: Skips a test that reads the real Fashion-MNIST where Debian's package is not installed.
needs_fashion = pytest.mark.skipif(
    not all((FASHION_MNIST_SYSTEM_DIR / f"{n}.gz").is_file() for n in FASHION_MNIST_FILES),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the Fashion-MNIST decompression cache out of the user's home during tests."""
    os.environ.setdefault("RESNET_ENSEMBLE_CACHE", str(tmp_path_factory.mktemp("cache")))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that a wrong
    decomposition cannot hide behind identity normalisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def tiny_vit(seed: int = 0) -> torchvision.models.VisionTransformer:
    """A 2-layer ViT on 16x16 images; torchvision zero-initialises the head, so re-draw it."""
    torch.manual_seed(seed)
    vit = torchvision.models.VisionTransformer(
        image_size=16,
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )
    nn.init.normal_(vit.heads.head.weight)
    nn.init.normal_(vit.heads.head.bias)
    return vit.eval()


@pytest.fixture
def resnet8() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(8, num_classes=10)).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def save_tiny_checkpoint(path: Path, depth: int, bn_seed: int) -> Path:
    """A ResNet-``depth`` for 1-channel 28x28 images (the embedded subset), BatchNorm randomized
    (seed ``bn_seed``) so that deleting blocks changes answers, saved as a toolkit checkpoint."""
    kwargs = {"num_classes": 10, "in_channels": 1}
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(depth, **kwargs), seed=bn_seed).eval()
    save_checkpoint(
        path, model, arch=f"resnet{depth}", arch_kwargs=kwargs, dataset="embedded", metadata={}
    )
    return path
