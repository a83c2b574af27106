"""Built-in models: He et al.'s CIFAR ResNets and the plain control, and a name registry.

Holds ``cifar_resnet``, ``plain_net``, ``build_builtin`` (arch name -> model) and
``parse_arch`` (arch name -> builder arguments), so that checkpoints can store an arch name
and its arguments and rebuild the exact model.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

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

BUILTIN_ARCH_PATTERN = (
    "resnetD, preresnetD or plainD with D = 6n + 2 (e.g. resnet20, resnet56, resnet110)"
)
_ARCH = re.compile(r"^(resnet|preresnet|plain)(\d+)$")


def parse_arch(name: str) -> dict[str, Any]:
    """Split a built-in arch name such as ``preresnet110`` into builder arguments."""
    match = _ARCH.match(name.strip().lower())
    if not match:
        raise ValueError(f"unknown built-in architecture {name!r}; expected {BUILTIN_ARCH_PATTERN}")
    family, depth = match.group(1), int(match.group(2))
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"{name}: depth must be 6n + 2 (20, 32, 56, 110, ...), got {depth}")
    return {"family": family, "depth": depth}


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
