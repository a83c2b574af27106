"""The paper's lesion experiments as sweeps of routes, written to resumable results tables.

Holds:
- ``RouteSpec``: one configuration (a route and what describes it in the table)
- ``single_deletions`` (paper Fig. 3), ``multi_deletions`` (Fig. 5a), ``random_swaps`` (Fig. 5b):
  the configurations, seeded so that a resumed sweep regenerates exactly the same ones
- ``kendall_tau``: how far an order is from the original, with scipy
- ``format_route``: a route as a compact string, e.g. ``0-2,4,6-8``
- ``run_sweep``: evaluate configurations through the engine in chunks, appending each finished
  chunk to the table; distributed over torchrun ranks by sharding the images
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats
import torch

from .anatomy import Anatomy, block_shapes
from .distributed import Distributed
from .engine import measure_routes
from .experiment import Experiment
from .metrics import resolve_metric
from .results import ResultsTable

__all__ = [
    "SWEEP_COLUMNS",
    "RouteSpec",
    "format_route",
    "kendall_tau",
    "multi_deletions",
    "random_swaps",
    "run_sweep",
    "single_deletions",
    "sweep_columns",
]

SWEEP_COLUMNS = [
    "model",
    "variant",
    "sweep",
    "config",
    "route",
    "deleted",
    "k",
    "sample",
    "seed",
    "kendall_tau",
    "deleted_name",
    "downsampling",
    "error",
    "wrong",
    "images",
]


def sweep_columns(metric: str = "error") -> list[str]:
    """The table's columns: ``SWEEP_COLUMNS`` for top-1 error; for another metric its value
    column is named after it and ``wrong`` becomes ``sum`` (the metric's sum over images)."""
    if metric == "error":
        return list(SWEEP_COLUMNS)
    return [{"error": metric, "wrong": "sum"}.get(c, c) for c in SWEEP_COLUMNS]


@dataclass(frozen=True)
class RouteSpec:
    """One configuration of a sweep: its id, route, and the columns that describe it."""

    config: str
    route: tuple[int, ...]
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def format_route(route: Sequence[int]) -> str:
    """Runs of consecutive blocks as ranges: [0, 1, 2, 4, 6, 7, 8] -> "0-2,4,6-8"; "" if empty."""
    parts: list[str] = []
    i = 0
    route = list(route)
    while i < len(route):
        j = i
        while j + 1 < len(route) and route[j + 1] == route[j] + 1:
            j += 1
        parts.append(str(route[i]) if j == i else f"{route[i]}-{route[j]}")
        i = j + 1
    return ",".join(parts)


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's tau between ``order`` and the original order 0..n-1 (1 = unchanged)."""
    if len(order) < 2:
        return 1.0
    return float(scipy.stats.kendalltau(range(len(order)), order).statistic)


def _baseline(n: int, sweep: str) -> RouteSpec:
    return RouteSpec("baseline", tuple(range(n)), {"sweep": sweep, "k": 0, "deleted": ""})


def single_deletions(found: Anatomy) -> list[RouteSpec]:
    """The full network, then each block deleted alone; blocks without a shortcut that change
    the shape (plain networks' downsampling layers) cannot be deleted and are left out."""
    n = len(found.blocks)
    specs = [_baseline(n, "single")]
    for b in found.blocks:
        if b.shortcut is None and b.downsamples:
            continue
        specs.append(
            RouteSpec(
                f"drop={b.index}",
                tuple(i for i in range(n) if i != b.index),
                {
                    "sweep": "single",
                    "k": 1,
                    "deleted": str(b.index),
                    "deleted_name": b.name,
                    "downsampling": b.downsamples,
                },
            )
        )
    return specs


def _rng(seed: int, *keys: int) -> np.random.Generator:
    # One generator per configuration: a resumed sweep draws exactly the same configurations.
    return np.random.default_rng([seed, *keys])


def multi_deletions(
    found: Anatomy, max_k: int = 10, samples: int = 5, seed: int = 0
) -> list[RouteSpec]:
    """k = 1..max_k random non-downsampling blocks deleted together, ``samples`` draws each."""
    n = len(found.blocks)
    candidates = [b.index for b in found.blocks if not b.downsamples]
    if max_k > len(candidates):
        raise ValueError(
            f"cannot delete {max_k} blocks: the model has only {len(candidates)} "
            "non-downsampling blocks; lower --max-k"
        )
    specs = [_baseline(n, "multi")]
    for k in range(1, max_k + 1):
        for s in range(samples):
            drop = sorted(_rng(seed, k, s).choice(candidates, size=k, replace=False).tolist())
            specs.append(
                RouteSpec(
                    f"k={k},sample={s}",
                    tuple(i for i in range(n) if i not in drop),
                    {
                        "sweep": "multi",
                        "k": k,
                        "sample": s,
                        "seed": seed,
                        "deleted": format_route(drop),
                    },
                )
            )
    return specs


def swappable_groups(found: Anatomy) -> list[list[int]]:
    """Blocks that keep the shape, grouped by that shape: any two in a group can trade places."""
    shapes = block_shapes(found.model, found)
    groups: dict[tuple[int, ...], list[int]] = {}
    for b in found.blocks:
        if not b.downsamples and shapes.inputs[b.index] == shapes.outputs[b.index]:
            groups.setdefault(shapes.inputs[b.index], []).append(b.index)
    return [g for g in groups.values() if len(g) >= 2]


def random_swaps(
    found: Anatomy, max_swaps: int = 10, samples: int = 5, seed: int = 0
) -> list[RouteSpec]:
    """k = 1..max_swaps random swaps of same-shape blocks, ``samples`` draws each, with the
    Kendall tau of the resulting order."""
    n = len(found.blocks)
    groups = swappable_groups(found)
    if not groups:
        raise ValueError("the model has no two blocks of the same shape to swap")
    sizes = np.array([len(g) * (len(g) - 1) / 2 for g in groups])
    specs = [_baseline(n, "reorder")]
    specs[0].fields["kendall_tau"] = 1.0
    for k in range(1, max_swaps + 1):
        for s in range(samples):
            rng = _rng(seed, k, s)
            order = list(range(n))
            for _ in range(k):
                # A uniformly random same-shape pair: pick a group by its number of pairs.
                group = groups[int(rng.choice(len(groups), p=sizes / sizes.sum()))]
                i, j = rng.choice(group, size=2, replace=False).tolist()
                pi, pj = order.index(i), order.index(j)
                order[pi], order[pj] = order[pj], order[pi]
            specs.append(
                RouteSpec(
                    f"swaps={k},sample={s}",
                    tuple(order),
                    {
                        "sweep": "reorder",
                        "k": k,
                        "sample": s,
                        "seed": seed,
                        "kendall_tau": kendall_tau(order),
                    },
                )
            )
    return specs


def run_sweep(
    exp: Experiment,
    specs: Sequence[RouteSpec],
    table: ResultsTable | None,
    *,
    chunk: int = 64,
    dist: Distributed | None = None,
    strategy: str = "auto",
    amp: bool = False,
    channels_last: bool = False,
    progress: Callable[[int], None] | None = None,
    metric: str = "error",
) -> list[dict[str, Any]]:
    """Evaluate every configuration not yet in ``table`` and append its row when its chunk
    finishes. Rows come out in the order of ``specs``, whether or not the sweep was resumed.

    ``table`` is None on ranks other than 0; ranks evaluate disjoint shards of the images and
    sum their counts, so the result equals a single-process run. ``metric`` names the score
    (error, top5, loss); the table's columns follow ``sweep_columns(metric)``.
    """
    dist = dist or Distributed()
    scorer = resolve_metric(metric)
    done = dist.from_main(table.done if table is not None else set())
    todo = [s for s in specs if s.config not in done]
    written: list[dict[str, Any]] = []
    for start in range(0, len(todo), max(chunk, 1)):
        part = todo[start : start + chunk]
        measured = measure_routes(
            exp.model,
            exp.loader(dist.rank, dist.world),
            [s.route for s in part],
            metric=scorer,
            strategy=strategy,  # type: ignore[arg-type]
            amp=amp,
            channels_last=channels_last,
            on_batch=(lambda b, m=len(part): progress(b * m)) if progress else None,
        )
        k = len(part)
        totals = dist.sum_(
            torch.cat(
                [
                    measured.sums,
                    measured.counts,
                    torch.tensor([measured.images], dtype=torch.float64),
                ]
            )
        )
        sums, counts, images = totals[:k].tolist(), totals[k : 2 * k].tolist(), int(totals[-1])
        value_key, sum_key = ("error", "wrong") if scorer.name == "error" else (scorer.name, "sum")
        rows = [
            {
                **s.fields,
                "model": exp.describe()["model"],
                "variant": exp.variant,
                "config": s.config,
                "route": format_route(s.route),
                value_key: scorer.finish(total, count) if images else math.nan,
                sum_key: int(round(total)) if scorer.counts_mistakes else total,
                "images": images,
            }
            for s, total, count in zip(part, sums, counts, strict=True)
        ]
        if table is not None:
            table.append(rows)
        written.extend(rows)
    return written
