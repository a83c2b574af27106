"""Sub-networks of the unraveled view: evaluate them, and read them as one ensemble.

A sub-network keeps a subset of the residual blocks and deletes the rest; with n blocks there
are 2^n of them, evaluated together through the engine's shared-prefix tree.

Holds:
- ``evaluate_subnetworks``: top-1 error of every subnetwork (subset of kept blocks), exhaustive
  for small n and sampled otherwise, through the shared-prefix engine
- ``EnsembleView`` and ``ensemble_view``: the subnetworks' averaged softmax as an ensemble,
  against the full network and the subnetworks' mean error
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .anatomy import anatomy
from .engine import Strategy, count_route_mistakes
from .paths import format_blocks

__all__ = ["EnsembleView", "ensemble_view", "evaluate_subnetworks"]


@dataclass(frozen=True)
class EnsembleView:
    """The evaluated subnetworks as one ensemble (top-1 errors as fractions).

    ``ensemble_error``: the average of all evaluated subnetworks' softmax outputs;
    ``full_error``: the full network; ``mean_subnetwork_error``: the average of the individual
    subnetworks' errors.
    """

    ensemble_error: float
    full_error: float
    mean_subnetwork_error: float
    subnetworks: int
    images: int


def _subsets(n: int, max_exhaustive: int, samples: int, seed: int) -> list[tuple[int, ...]]:
    """Subsets of kept blocks, in trie order (by keep pattern, block 0 first)."""
    if n <= max_exhaustive:
        patterns = list(product((False, True), repeat=n))
    else:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        rng = np.random.default_rng(seed)
        drawn = rng.random((samples, n)) < 0.5  # each block kept with probability 1/2
        patterns = sorted({tuple(bool(v) for v in row) for row in drawn})
    return [tuple(i for i, keep in enumerate(p) if keep) for p in patterns]


def _run_subnetworks(
    model: nn.Module,
    data: Iterable,
    max_exhaustive: int,
    samples: int,
    seed: int,
    strategy: Strategy,
    amp: bool,
) -> tuple[pd.DataFrame, EnsembleView]:
    found = anatomy(model)
    n = len(found.blocks)
    plain = [b.index for b in found.blocks if b.shortcut is None]
    if plain:
        raise ValueError(
            f"block(s) {format_blocks(plain)} have no shortcut, so a subnetwork that drops them "
            "is not a subset of paths; subnetworks are defined for residual networks only"
        )
    subsets = _subsets(n, max_exhaustive, samples, seed)
    full = tuple(range(n))
    routes = [list(s) for s in subsets]
    full_index = subsets.index(full) if full in subsets else len(routes)
    if full_index == len(routes):
        routes.append(list(full))  # evaluated for the comparison only, not a row
    num_sub = len(subsets)

    # The engine visits every route of a batch before it reports the batch (on_batch), so the
    # softmax sum of the current batch is complete when on_batch fires.
    state: dict[str, Tensor | int | None] = {"sum": None, "targets": None, "wrong": 0}

    def on_logits(i: int, logits: Tensor, targets: Tensor) -> None:
        if i >= num_sub:
            return
        p = torch.softmax(logits.double(), dim=1)  # (B, classes)
        acc = state["sum"]
        state["sum"] = p if acc is None else acc + p  # type: ignore[operator]
        state["targets"] = targets

    def on_batch(_: int) -> None:
        acc, targets = state["sum"], state["targets"]
        if acc is not None:
            state["wrong"] = int(state["wrong"]) + int((acc.argmax(1) != targets).sum())  # type: ignore[union-attr,arg-type]
        state["sum"] = state["targets"] = None

    counts = count_route_mistakes(
        model, data, routes, strategy=strategy, amp=amp, on_logits=on_logits, on_batch=on_batch
    )
    errors = counts.errors
    total = counts.total
    frame = pd.DataFrame(
        {
            "kept": [format_blocks(s) for s in subsets],
            "num_kept": [len(s) for s in subsets],
            "error": errors[:num_sub],
            "images": [total] * num_sub,
        }
    )
    view = EnsembleView(
        ensemble_error=int(state["wrong"]) / max(total, 1),  # type: ignore[arg-type]
        full_error=errors[full_index],
        mean_subnetwork_error=float(np.mean(errors[:num_sub])),
        subnetworks=num_sub,
        images=total,
    )
    frame.attrs["ensemble"] = asdict(view)
    return frame, view


def evaluate_subnetworks(
    model: nn.Module,
    data: Iterable,
    *,
    max_exhaustive: int = 12,
    samples: int = 1024,
    seed: int = 0,
    strategy: Strategy = "auto",
    amp: bool = False,
) -> pd.DataFrame:
    """Top-1 error of subnetworks: each keeps a subset of blocks and deletes the rest.

    With n <= ``max_exhaustive`` blocks all 2^n subsets are evaluated; otherwise ``samples``
    subsets drawn with each block kept with probability 1/2 (duplicates merged, seeded). The
    routes share prefixes in the engine's tree (a binary trie over keep/delete), so each batch
    runs about 2^(n+1) blocks instead of n·2^n. A deleted downsampling block keeps its
    projection, so every subset is a valid network.

    Returns:
        One row per subset: ``kept`` (e.g. ``"0-3,5,7"``), ``num_kept``, ``error`` (a fraction)
        and ``images``. ``frame.attrs["ensemble"]`` holds the ``EnsembleView`` as a dict.

    Raises:
        ValueError: a block has no shortcut (a plain network).

    Example:
        >>> table = evaluate_subnetworks(cifar_resnet(20), loader)   # 9 blocks: 512 rows
        >>> table.groupby("num_kept").error.mean()
    """
    frame, _ = _run_subnetworks(model, data, max_exhaustive, samples, seed, strategy, amp)
    return frame


def ensemble_view(model: nn.Module, data: Iterable, **options: Any) -> EnsembleView:
    """Treat the subnetworks of ``evaluate_subnetworks`` as an ensemble: average their softmax
    outputs and compare its error with the full network's and the subnetworks' mean error.
    ``options`` are ``evaluate_subnetworks``' (max_exhaustive, samples, seed, strategy, amp).

    Example:
        >>> view = ensemble_view(model, loader)
        >>> view.ensemble_error, view.full_error, view.mean_subnetwork_error
    """
    return EnsembleView(**evaluate_subnetworks(model, data, **options).attrs["ensemble"])
