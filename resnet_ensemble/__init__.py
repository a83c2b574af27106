"""resnet-ensemble: take trained residual networks apart at test time.

Reproduces Veit, Wilber & Belongie (NeurIPS 2016), "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks": delete, reorder and route residual blocks, count and evaluate the
2^n unrolled paths, and decompose the gradient by path length, exactly.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .anatomy import Adapter, Anatomy, Block, anatomy, register_adapter, residual_blocks
from .engine import evaluate_routes
from .gradients import path_length_gradients, sample_path_gradients
from .interventions import lesion, reorder, route
from .paths import path_length_counts

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
    "evaluate_routes",
    "lesion",
    "path_length_counts",
    "path_length_gradients",
    "register_adapter",
    "reorder",
    "residual_blocks",
    "route",
    "sample_path_gradients",
]
