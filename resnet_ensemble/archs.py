"""The built-in architecture names and their block counts, in one place (no torch).

Holds:
- ``BUILTIN_ARCH_PATTERN``: the names, as a user reads them in help and errors
- ``parse_arch``: a name such as ``preresnet110`` -> ``{"family": "preresnet", "depth": 110}``
- ``is_builtin_form``: whether a name reads as one (``resnet21`` does, with a depth that is wrong)
- ``check_depth`` / ``blocks_of_depth`` / ``num_blocks``: depth 6n + 2 has 3n residual blocks
  (three stages of n), e.g. ResNet-110 has 54
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "BUILTIN_ARCH_PATTERN",
    "MAX_DEPTH",
    "blocks_of_depth",
    "check_depth",
    "is_builtin_form",
    "num_blocks",
    "parse_arch",
]

BUILTIN_ARCH_PATTERN = (
    "resnetD, preresnetD, fbpreresnetD or plainD with D = 6n + 2 (e.g. resnet20, resnet56, "
    "resnet110)"
)
#: preresnet: He et al.'s pre-activation layout; fbpreresnet: fb.resnet.torch's preresnet.lua,
#: the layout of the networks Veit et al. lesioned (``models.cifar.FbPreActBlock``).
_ARCH = re.compile(r"^(resnet|preresnet|fbpreresnet|plain)([0-9]{1,6})$")


#: The deepest built-in network: He et al.'s deepest CIFAR ResNet has 1202 layers (600 blocks).
#: A deeper name or checkpoint is refused before anything is allocated.
MAX_DEPTH = 2000


def check_depth(depth: int) -> str | None:
    """What is wrong with ``depth`` for a CIFAR ResNet (6n + 2, n >= 1, at most
    ``MAX_DEPTH``), or None."""
    if depth < 8 or (depth - 2) % 6:
        return f"depth must be 6n + 2 (20, 32, 56, 110, ...), got {depth}"
    if depth > MAX_DEPTH:
        return (
            f"depth {depth} is beyond the {MAX_DEPTH} layers a built-in network may have "
            "(He et al.'s deepest CIFAR ResNet has 1202)"
        )
    return None


def is_builtin_form(name: str) -> bool:
    """Whether ``name`` is a built-in family and a number (``resnet21``), whatever the number: a
    user who wrote one meant a built-in, and ``parse_arch``'s error says how to fix the depth."""
    return bool(_ARCH.match(name.strip().lower()))


def parse_arch(name: str) -> dict[str, Any]:
    """Split a built-in arch name such as ``preresnet110`` into builder arguments."""
    match = _ARCH.match(name.strip().lower())
    if not match:
        raise ValueError(f"unknown built-in architecture {name!r}; expected {BUILTIN_ARCH_PATTERN}")
    family, depth = match.group(1), int(match.group(2))
    problem = check_depth(depth)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return {"family": family, "depth": depth}


def blocks_of_depth(depth: int) -> int:
    """Residual blocks of a depth-(6n + 2) CIFAR ResNet: 3n (110 -> 54, 32 -> 15, 20 -> 9)."""
    return 3 * ((depth - 2) // 6)


def num_blocks(name: str) -> int:
    """Residual blocks (or, in a plain net, two-layer units) of a built-in arch name."""
    return blocks_of_depth(parse_arch(name)["depth"])
