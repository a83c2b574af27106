"""resnet-ensemble: take trained residual networks apart at test time.

Reproduces Veit, Wilber & Belongie (NeurIPS 2016), "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks": delete, reorder and route residual blocks, count and evaluate the
2^n unrolled paths, and decompose the gradient by path length, exactly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

# The public names and the module each lives in. They load on first use (PEP 562), so that
# `import resnet_ensemble` and the command line's --help do not import torch.
_EXPORTS = {
    "Adapter": "blocks.registry",
    "Anatomy": "blocks.registry",
    "Block": "blocks.registry",
    "anatomy": "blocks.registry",
    "register_adapter": "blocks.registry",
    "residual_blocks": "blocks.registry",
    "resolve_block": "blocks.registry",
    "evaluate_routes": "core.engine",
    "path_length_gradients": "core.gradients",
    "sample_path_gradients": "core.gradients",
    "lesion": "core.interventions",
    "reorder": "core.interventions",
    "route": "core.interventions",
    "path_length_counts": "paths",
    "Parallel": "core.interventions",
    "block_proxies": "studies.proxies",
    "study_sweep": "studies.sweeps",
    "evaluate_subnetworks": "studies.subnetworks",
    "analyze_gradients": "studies.gradient_analysis",
    "load_dataset": "data.datasets",
    "make_loader": "data.datasets",
}

if TYPE_CHECKING:
    from .blocks.registry import (
        Adapter,
        Anatomy,
        Block,
        anatomy,
        register_adapter,
        residual_blocks,
        resolve_block,
    )
    from .core.engine import evaluate_routes
    from .core.gradients import path_length_gradients, sample_path_gradients
    from .core.interventions import Parallel, lesion, reorder, route
    from .data.datasets import load_dataset, make_loader
    from .paths import path_length_counts
    from .studies.gradient_analysis import analyze_gradients
    from .studies.proxies import block_proxies
    from .studies.subnetworks import evaluate_subnetworks
    from .studies.sweeps import study_sweep


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (``__all__``) and the dunders, not the plumbing of this file."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})


__all__ = [
    "Adapter",
    "Anatomy",
    "Block",
    "Parallel",
    "block_proxies",
    "__version__",
    "analyze_gradients",
    "anatomy",
    "evaluate_routes",
    "evaluate_subnetworks",
    "lesion",
    "load_dataset",
    "make_loader",
    "path_length_counts",
    "path_length_gradients",
    "register_adapter",
    "reorder",
    "residual_blocks",
    "resolve_block",
    "route",
    "sample_path_gradients",
    "study_sweep",
]
