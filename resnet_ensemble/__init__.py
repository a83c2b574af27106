"""resnet-ensemble: take trained residual networks apart at test time.

Reproduces Veit, Wilber & Belongie (NeurIPS 2016), "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks": delete, reorder and route residual blocks, count and evaluate the
2^n unrolled paths, and decompose the gradient by path length, exactly.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__

# The public names and the module each lives in. They load on first use (PEP 562), so that
# `import resnet_ensemble` and the command line's --help do not import torch.
_EXPORTS = {
    "Adapter": "anatomy",
    "Anatomy": "anatomy",
    "Block": "anatomy",
    "anatomy": "anatomy",
    "register_adapter": "anatomy",
    "residual_blocks": "anatomy",
    "resolve_block": "anatomy",
    "evaluate_routes": "engine",
    "path_length_gradients": "gradients",
    "sample_path_gradients": "gradients",
    "lesion": "interventions",
    "reorder": "interventions",
    "route": "interventions",
    "path_length_counts": "paths",
    "Parallel": "interventions",
    "block_proxies": "proxies",
    "study_sweep": "sweeps",
    "evaluate_subnetworks": "subnetworks",
    "analyze_gradients": "gradient_analysis",
    "load_dataset": "data",
    "make_loader": "data",
}

if TYPE_CHECKING:
    from .anatomy import (
        Adapter,
        Anatomy,
        Block,
        anatomy,
        register_adapter,
        residual_blocks,
        resolve_block,
    )
    from .data import load_dataset, make_loader
    from .engine import evaluate_routes
    from .gradient_analysis import analyze_gradients
    from .gradients import path_length_gradients, sample_path_gradients
    from .interventions import Parallel, lesion, reorder, route
    from .paths import path_length_counts
    from .proxies import block_proxies
    from .subnetworks import evaluate_subnetworks
    from .sweeps import study_sweep


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (``__all__``) and the dunders, not the plumbing of this file."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})


class _Package(ModuleType):
    """Keeps ``resnet_ensemble.anatomy`` the function: importing the submodule of the same name
    would otherwise set the package's attribute to the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "anatomy" and isinstance(value, ModuleType):
            value = value.anatomy
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
