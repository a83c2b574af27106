"""resnet-ensemble: take trained residual networks apart at test time.

Reproduces Veit, Wilber & Belongie (NeurIPS 2016), "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks": delete, reorder and route residual blocks, count and evaluate the
2^n unrolled paths, and decompose the gradient by path length, exactly.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .anatomy import Adapter, Anatomy, Block, anatomy, register_adapter, residual_blocks
from .interventions import lesion, reorder, route

try:
    __version__ = version("resnet-ensemble")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

__all__ = [
    "Adapter",
    "Anatomy",
    "Block",
    "__version__",
    "anatomy",
    "lesion",
    "register_adapter",
    "reorder",
    "residual_blocks",
    "route",
]
