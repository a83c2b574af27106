"""Built-in models: He et al.'s CIFAR ResNets and the plain control, and a name registry.

Holds ``cifar_resnet``, ``plain_net`` and ``build_builtin`` (arch name -> model), and
``BUILDER_OPTIONS``, the arguments a checkpoint stores beside the name, so that checkpoints can
rebuild the exact model; the names themselves (``parse_arch``) are ``archs``'.

Layer 3. Beside the builders: ``cifar`` (the networks), ``checkpoints`` (the toolkit's file
format, read with ``weights_only=True`` and size bounds) and ``specs`` (``--model`` strings: a
file, ``torchvision:``, ``timm:``, ``hf:``, a factory). Imports ``data/`` (a dataset's
normalisation), ``blocks/`` and the top level.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..archs import BUILTIN_ARCH_PATTERN, parse_arch
from ..bounds import BOUNDS
from .cifar import (
    CifarResNet,
    PreactLayout,
    cifar_resnet,
    plain_net,
    survival_probabilities,
    unscaled_residuals,
)

__all__ = [
    "BUILDER_OPTIONS",
    "BUILTIN_ARCH_PATTERN",
    "CifarResNet",
    "build_builtin",
    "cifar_resnet",
    "parse_arch",
    "plain_net",
    "survival_probabilities",
    "unscaled_residuals",
]

# ``cifar_resnet``'s keyword arguments that a built-in name does not already say (its family
# and depth do); a plain net takes the first two.
BUILDER_OPTIONS = (
    "num_classes",
    "in_channels",
    "shortcut",
    "stochastic_depth",
    "stochastic_depth_draw",
    "active_blocks",
)
_PLAIN_OPTIONS = BUILDER_OPTIONS[:2]


#: Bounds on what a name or a checkpoint's metadata may ask for, checked before any tensor is
#: allocated (ImageNet-21k has 21,841 classes; images have a handful of channels).
MAX_CLASSES = BOUNDS["num_classes"].hi
MAX_IN_CHANNELS = BOUNDS["in_channels"].hi


def _check_sizes(name: str, options: dict[str, Any]) -> None:
    for key, most in (("num_classes", MAX_CLASSES), ("in_channels", MAX_IN_CHANNELS)):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ValueError(
                f"{name}: {key} must be a whole number from 1 to {most:,}, got {value!r}"
            )


def build_builtin(name: str, **options: Any) -> nn.Module:
    """Build a built-in architecture by name with random initialisation.

    Args:
        name: "resnet56", "preresnet110", "fbpreresnet110", "plain20", ... (``parse_arch``).
        options: some of ``BUILDER_OPTIONS``, as ``cifar_resnet`` takes them; a plain net uses
            num_classes and in_channels and has no shortcut or stochastic depth to set.
    Raises:
        TypeError: an option that is not one of ``BUILDER_OPTIONS``.
    Example:
        >>> build_builtin("resnet20", num_classes=100, shortcut="B")
    """
    unknown = sorted(set(options) - set(BUILDER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown builder options {unknown}; expected some of {BUILDER_OPTIONS}")
    arch = parse_arch(name)
    _check_sizes(name, options)
    if arch["family"] == "plain":
        return plain_net(arch["depth"], **{k: options[k] for k in _PLAIN_OPTIONS if k in options})
    family = arch["family"]
    layout: PreactLayout = "fb.resnet.torch" if family == "fbpreresnet" else "he"
    preact = family in ("preresnet", "fbpreresnet")
    return cifar_resnet(arch["depth"], preact=preact, layout=layout, **options)
