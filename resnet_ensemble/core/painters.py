"""The operations of "Transformer Layers as Painters" (Sun et al. 2024) as routes.

Skip a range of layers, repeat a layer, reverse a range, shuffle a range, or run a range in
parallel (each layer reads the same input; their outputs, and so their residual updates, are
averaged). Each function returns a route in the route language of ``interventions.route``, so
it runs under ``route(model, r)``, ``evaluate_routes(model, data, [r])`` and the sweeps alike,
and each is refused with a ValueError naming what cannot apply before any data is touched.

A *layer* is the set of units one module runs in the model's own forward (``Block.owner``): a
transformer layer holds two units (2i: attention, 2i + 1: MLP), a ResNet block one. Ranges are
of layers, ``start`` inclusive and ``stop`` exclusive, as Python's ``range``; pass
``by="unit"`` to work on units instead.

Holds ``layer_units``, ``skip``, ``repeat``, ``reverse``, ``shuffle``, ``parallel``,
``painters_route`` (an operation by name, as the CLI spells it) and ``OPERATIONS``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from torch import nn

from ..blocks.registry import Anatomy, anatomy
from .interventions import Parallel, RouteItem, plan_route

__all__ = [
    "OPERATIONS",
    "layer_units",
    "painters_route",
    "parallel",
    "repeat",
    "reverse",
    "shuffle",
    "skip",
]

By = Literal["layer", "unit"]
OPERATIONS = ("skip", "repeat", "reverse", "shuffle", "parallel")


def _found(model: nn.Module | Anatomy) -> Anatomy:
    return model if isinstance(model, Anatomy) else anatomy(model)


def layer_units(model: nn.Module | Anatomy, by: By = "layer") -> list[tuple[int, ...]]:
    """The units of each layer in forward order: consecutive blocks with the same owner
    (``by="unit"``: one unit each)."""
    found = _found(model)
    if by not in ("layer", "unit"):
        raise ValueError(f"by must be 'layer' or 'unit', got {by!r}")
    groups: list[list[int]] = []
    last: object = None
    for b in found.blocks:
        owner = b.owner if b.owner is not None else b.module
        if by == "layer" and groups and owner is last:
            groups[-1].append(b.index)
        else:
            groups.append([b.index])
        last = owner
    return [tuple(g) for g in groups]


def _range(layers: Sequence[tuple[int, ...]], start: int, stop: int, by: By, least: int = 1):
    n = len(layers)
    for v in (start, stop):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"layer range bounds must be integers, got {v!r}")
    if not (0 <= start < stop <= n):
        raise ValueError(
            f"the {by} range {start}..{stop} (start inclusive, stop exclusive) is not within the "
            f"model's {n} {by}s: need 0 <= start < stop <= {n}"
        )
    if stop - start < least:
        raise ValueError(
            f"this operation needs a range of at least {least} {by}s, got {start}..{stop}"
        )


def _flat(layers: Sequence[tuple[int, ...]]) -> list[RouteItem]:
    return [i for layer in layers for i in layer]


def _checked(found: Anatomy, route: list[RouteItem], what: str) -> list[RouteItem]:
    try:
        plan_route(found, route)
    except ValueError as err:
        raise ValueError(f"{what} cannot apply to this model: {err}") from None
    return route


def skip(model: nn.Module | Anatomy, start: int, stop: int, *, by: By = "layer") -> list[RouteItem]:
    """Delete layers ``start..stop-1`` (their residual branches become zero)."""
    found = _found(model)
    layers = layer_units(found, by)
    _range(layers, start, stop, by)
    route = _flat(layers[:start] + layers[stop:])
    return _checked(found, route, f"skipping {by}s {start}..{stop - 1}")


def repeat(
    model: nn.Module | Anatomy, layer: int, times: int = 2, *, by: By = "layer"
) -> list[RouteItem]:
    """Run layer ``layer`` ``times`` times in a row (Painters' "repeat")."""
    found = _found(model)
    layers = layer_units(found, by)
    _range(layers, layer, layer + 1, by)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be a positive integer, got {times!r}")
    route = _flat(layers[:layer] + [layers[layer]] * times + layers[layer + 1 :])
    return _checked(found, route, f"repeating {by} {layer} {times} times")


def reverse(
    model: nn.Module | Anatomy, start: int, stop: int, *, by: By = "layer"
) -> list[RouteItem]:
    """Run layers ``start..stop-1`` in reverse order (each layer's own units keep their order)."""
    found = _found(model)
    layers = layer_units(found, by)
    _range(layers, start, stop, by, least=2)
    route = _flat(layers[:start] + layers[start:stop][::-1] + layers[stop:])
    return _checked(found, route, f"reversing {by}s {start}..{stop - 1}")


def shuffle(
    model: nn.Module | Anatomy, start: int, stop: int, seed: int = 0, *, by: By = "layer"
) -> list[RouteItem]:
    """Run layers ``start..stop-1`` in a random order drawn from ``seed`` (never the original
    order where the range has two or more layers)."""
    found = _found(model)
    layers = layer_units(found, by)
    _range(layers, start, stop, by, least=2)
    middle = list(layers[start:stop])
    rng = random.Random(seed)
    shuffled = middle[:]
    while shuffled == middle:
        rng.shuffle(shuffled)
    route = _flat(layers[:start] + shuffled + layers[stop:])
    return _checked(found, route, f"shuffling {by}s {start}..{stop - 1}")


def parallel(
    model: nn.Module | Anatomy, start: int, stop: int, *, by: By = "layer"
) -> list[RouteItem]:
    """Run layers ``start..stop-1`` side by side: each reads the same input and the group's
    output is the mean of theirs, ``h + mean_l f_l(h)`` (Painters' "parallel")."""
    found = _found(model)
    layers = layer_units(found, by)
    _range(layers, start, stop, by, least=2)
    route: list[RouteItem] = [*_flat(layers[:start]), Parallel(layers[start:stop])]
    route += _flat(layers[stop:])
    return _checked(found, route, f"running {by}s {start}..{stop - 1} in parallel")


def painters_route(
    model: nn.Module | Anatomy,
    operation: str,
    start: int,
    stop: int | None = None,
    *,
    times: int = 2,
    seed: int = 0,
    by: By = "layer",
) -> list[RouteItem]:
    """One Painters operation by name: skip, repeat (of layer ``start``), reverse, shuffle or
    parallel over layers ``start..stop-1``."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
    if operation == "repeat":
        return repeat(model, start, times, by=by)
    if stop is None:
        raise ValueError(f"{operation} needs a range: start and stop")
    if operation == "skip":
        return skip(model, start, stop, by=by)
    if operation == "reverse":
        return reverse(model, start, stop, by=by)
    if operation == "shuffle":
        return shuffle(model, start, stop, seed, by=by)
    return parallel(model, start, stop, by=by)
