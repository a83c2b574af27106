"""Built-in models: He et al.'s CIFAR ResNets and the plain control, and a name registry.

Holds ``cifar_resnet``, ``plain_net`` and ``build_builtin`` (arch name -> model), so that
checkpoints can store an arch name and its arguments and rebuild the exact model; the names
themselves (``parse_arch``) are ``archs``'.
"""

from __future__ import annotations

from torch import nn

from ..archs import BUILTIN_ARCH_PATTERN, parse_arch
from .cifar import (
    CifarResNet,
    cifar_resnet,
    plain_net,
    survival_probabilities,
    unscaled_residuals,
)

__all__ = [
    "BUILTIN_ARCH_PATTERN",
    "CifarResNet",
    "build_builtin",
    "cifar_resnet",
    "parse_arch",
    "plain_net",
    "survival_probabilities",
    "unscaled_residuals",
]


def build_builtin(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: str = "A",
    stochastic_depth: float | None = None,
    active_blocks: int | None = None,
    stochastic_depth_draw: str = "batch",
) -> nn.Module:
    """Build a built-in architecture by name with random initialisation."""
    arch = parse_arch(name)
    if arch["family"] == "plain":
        return plain_net(arch["depth"], num_classes=num_classes, in_channels=in_channels)
    return cifar_resnet(
        arch["depth"],
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=shortcut,  # type: ignore[arg-type]
        preact=arch["family"] == "preresnet",
        stochastic_depth=stochastic_depth,
        active_blocks=active_blocks,
        stochastic_depth_draw=stochastic_depth_draw,  # type: ignore[arg-type]
    )
