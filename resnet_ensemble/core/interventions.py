"""Test-time interventions on a model's own forward: delete, reorder and route residual blocks.

Holds:
- ``Step`` and ``plan_route``: a route (a sequence of block indices) made explicit as steps that
  run a block whole or deleted, validated against the blocks' shapes before anything is touched
- ``run_steps``: apply steps to a block input, the functional core that sweeps build on
- ``route``, ``lesion``, ``reorder``: context managers that make ``model(x)`` follow a route and
  restore the model exactly on exit, also when the body raises

Routes hold block indices and ``Parallel`` groups (branches that read one input, outputs
averaged); ``route_language`` reads them from text (``parse_route``: ``"0-3,5x2,[6|7|8],9"``,
within bounds) and both are re-exported here; ``painters`` builds the operations
of "Transformer Layers as Painters" (skip, repeat, reverse, shuffle, parallel) on top of them.

Route semantics: the listed blocks run whole, in the listed order, and may repeat; a block left
out is deleted, which keeps its shortcut and whatever follows the addition. A deleted block whose
deleted form is not the identity (a projection shortcut, a post-addition ReLU) runs where it
stands in the network: just before the first listed block with a larger index, or at the end.
A transition (a module between blocks, such as a stage's downsampling) runs in place by the
same rule: once, just before the first step whose block index is at least its own place.

The ``with`` forms follow the model's own call: an owner called with keyword arguments (masks,
positions) hands them to its blocks through the anatomy's ``CallContext``, and KV caches are
turned off while an intervention is active (a cache written by re-ordered or deleted layers
would be stale or mis-indexed).
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..blocks.registry import (
    ADAPTER_DOC,
    Anatomy,
    Block,
    anatomy,
    resolve_block,
)
from ..blocks.shapes import block_shapes, describe_shape
from ..call_args import split_call as _split_call
from ..route_language import Parallel, RouteItem, format_route_item, parse_route

__all__ = [
    "Parallel",
    "RouteItem",
    "Step",
    "format_route_item",
    "in_order",
    "lesion",
    "parse_route",
    "plan_route",
    "reorder",
    "route",
    "run_step",
    "run_steps",
]


@dataclass(frozen=True)
class Step:
    """Run block ``block`` whole (``keep``) or deleted (residual branch zero); with
    ``transition``, run the anatomy's transition number ``block`` instead; with ``branches``,
    run each branch (a tuple of steps) on the same input and average their outputs (a parallel
    group; ``block`` is then its smallest block index)."""

    block: int
    keep: bool = True
    transition: bool = False
    branches: tuple[tuple[Step, ...], ...] = ()


def in_order(steps: Sequence[Step], n: int) -> bool:
    """True where the steps run every block once, in the network's order (deletions only)."""
    if any(s.branches for s in steps):
        return False
    return [s.block for s in steps if not s.transition] == list(range(n))


def _as_indices(values: Iterable[object] | int, found: Anatomy, what: str) -> list[int]:
    """Block references (indices, negative from the end, or names) -> 0-based indices."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of block indices or names, got {values!r}")
    try:
        items = list(cast(Iterable[object], values))
    except TypeError:
        raise ValueError(
            f"{what} must be a sequence of block indices or names, got {values!r}"
        ) from None
    return [resolve_block(found, v, what) for v in items]


def _label(b: Block) -> str:
    return f"block {b.index} ({b.name})"


def _as_items(values: Iterable[object] | int, found: Anatomy, what: str) -> list[RouteItem]:
    """A route's items: block indices, and ``Parallel`` groups (a tuple or list inside the
    route is read as one) whose branches hold valid indices."""
    if isinstance(values, Parallel):
        values = [values]
    if isinstance(values, (numbers.Integral, str, bytes)):
        return list(_as_indices(values, found, what))
    try:
        raw = list(cast(Iterable[object], values))
    except TypeError:
        raise ValueError(
            f"{what} must be a sequence of block indices or names, got {values!r}"
        ) from None
    out: list[RouteItem] = []
    for v in raw:
        if isinstance(v, (tuple, list)):
            v = Parallel(v)
        if isinstance(v, Parallel):
            if len(v.branches) < 2:
                raise ValueError(
                    f"the parallel group {v!r} in {what} has {len(v.branches)} branch; a "
                    "parallel group needs two or more (a single block runs as a plain index)"
                )
            for br in v.branches:
                if not br:
                    raise ValueError(f"the parallel group {v!r} in {what} has an empty branch")
            out.append(
                Parallel([_as_indices(br, found, f"the parallel group {v!r}") for br in v.branches])
            )
        else:
            out.extend(_as_indices([v], found, what))
    return out


def _first_block(item: RouteItem) -> int:
    return min(min(br) for br in item.branches) if isinstance(item, Parallel) else item


def plan_route(found: Anatomy, sequence: Iterable[object]) -> tuple[Step, ...]:
    """Make a route explicit: whole and deleted steps in execution order, checked for shapes.

    A route lists block indices (omit = delete, permute = reorder, repeat = run again) and
    ``Parallel`` groups (branches that read the same input, outputs averaged). A deleted block
    runs in place: before the first listed item whose smallest block index is larger.

    Raises:
        ValueError: an index out of range, a block without shortcut deleted where the shape
            changes, a block moved to where its input shape does not fit, or a parallel group
            whose branches do not all keep the same shape.
    """
    n = len(found.blocks)
    seq = _as_items(sequence, found, "the route")
    listed = {
        i
        for item in seq
        for i in ([i for br in item.branches for i in br] if isinstance(item, Parallel) else [item])
    }
    pending = [i for i in range(n) if i not in listed]
    steps: list[Step] = []
    for item in seq:
        b = _first_block(item)
        while pending and pending[0] < b:
            steps.append(Step(pending.pop(0), keep=False))
        if isinstance(item, Parallel):
            branches = tuple(tuple(Step(i) for i in br) for br in item.branches)
            steps.append(Step(b, branches=branches))
        else:
            steps.append(Step(item))
    steps.extend(Step(i, keep=False) for i in pending)
    for s in steps:
        blk = found.blocks[s.block]
        if not s.keep and blk.shortcut is None and blk.downsamples:
            raise ValueError(
                f"{_label(blk)} has no shortcut and changes the tensor shape, so it cannot be "
                "deleted; delete only blocks that keep the shape"
            )
    _check_shared_inputs(found, steps)
    _check_groups_and_transitions(found, steps)
    steps = _with_transitions(found, steps)
    if not in_order(steps, n):
        _check_route_shapes(found, steps)
    return tuple(steps)


def _check_groups_and_transitions(found: Anatomy, steps: Sequence[Step]) -> None:
    """A parallel group runs its branches from one input, so no transition may fall inside
    the range of blocks it spans."""
    for s in steps:
        if not s.branches:
            continue
        members = [t.block for br in s.branches for t in br]
        lo, hi = min(members), max(members)
        for t in found.transitions:
            if lo < t.before <= hi:
                raise ValueError(
                    f"the parallel group of blocks {lo}..{hi} spans transition {t.name} "
                    f"(before block {t.before}); a parallel group must lie within one stage"
                )


def _check_shared_inputs(found: Anatomy, steps: Sequence[Step]) -> None:
    for prev, s in zip([None, *steps], steps, strict=False):
        if s.branches:
            for branch in s.branches:  # each branch starts afresh from the group's input
                _check_shared_inputs(found, branch)
            continue
        blk = found.blocks[s.block]
        j = blk.shares_input_with
        if j is not None and (prev is None or prev.block != j):
            raise ValueError(
                f"{_label(blk)} reads the input of block {j} (their layer adds both branches "
                f"to the same input), so it must run right after block {j}; move them together"
            )


def _with_transitions(found: Anatomy, steps: list[Step]) -> list[Step]:
    """Insert each transition just before the first step whose block index reaches its place."""
    pending = list(enumerate(found.transitions))
    out: list[Step] = []
    for s in steps:
        while pending and pending[0][1].before <= s.block:
            out.append(Step(pending.pop(0)[0], transition=True))
        out.append(s)
    out.extend(Step(i, transition=True) for i, _ in pending)
    return out


def _check_route_shapes(found: Anatomy, steps: Sequence[Step]) -> None:
    shapes = block_shapes(found.model, found)
    current = shapes.stem_out
    position = 0
    for s in steps:
        if s.transition:
            t = found.transitions[s.block]
            need, made = shapes.transitions[s.block]
            if need != current:
                raise ValueError(
                    f"transition {t.name} (before block {t.before}) would run on a "
                    f"{describe_shape(current)} tensor at position {position} but needs "
                    f"{describe_shape(need)}: a block moved across it changes the shape"
                )
            current = made
            continue
        if s.branches:
            current = _group_shape(found, shapes, s, current, position)
            position += 1
            continue
        blk = found.blocks[s.block]
        need = shapes.inputs[s.block]
        if need != current:
            if s.keep:
                where = f"cannot move to position {position}"
            else:
                where = f"is deleted, and its shortcut cannot run before position {position}"
            cin, cout = shapes.inputs[s.block][0], shapes.outputs[s.block][0]
            change = f" downsamples {cin}→{cout} channels; it" if cin != cout else ""
            raise ValueError(
                f"{_label(blk)}{change} {where}, where the tensor is {describe_shape(current)} "
                f"and it needs {describe_shape(need)}"
            )
        current = shapes.outputs[s.block]
        position += s.keep
    if current != shapes.outputs[-1]:
        raise ValueError(
            f"the route ends with a {describe_shape(current)} tensor but the head needs "
            f"{describe_shape(shapes.outputs[-1])}"
        )


def _group_shape(
    found: Anatomy, shapes: Any, group: Step, current: tuple[int, ...], position: int
) -> tuple[int, ...]:
    """The shape a parallel group hands on; every branch must start from ``current`` and all
    must end at the same shape (their outputs are averaged)."""
    ends = []
    for branch in group.branches:
        shape = current
        for t in branch:
            blk = found.blocks[t.block]
            if shapes.inputs[t.block] != shape:
                raise ValueError(
                    f"{_label(blk)} cannot run in the parallel group at position {position}, "
                    f"where the tensor is {describe_shape(shape)} and it needs "
                    f"{describe_shape(shapes.inputs[t.block])}"
                )
            shape = shapes.outputs[t.block]
        ends.append(shape)
    if len(set(ends)) > 1:
        detail = ", ".join(describe_shape(e) for e in ends)
        raise ValueError(
            f"the branches of the parallel group at position {position} end with different "
            f"shapes ({detail}), so their outputs cannot be averaged; put only blocks that "
            "keep the shape (no downsampling block) in a parallel group"
        )
    return ends[0]


def run_step(found: Anatomy, s: Step, h: Tensor) -> Tensor:
    """One step on ``h``: a transition, a block whole or deleted, or a parallel group."""
    if s.transition:
        return found.transitions[s.block](h)
    if s.branches:
        outs = [run_steps(found, branch, h) for branch in s.branches]
        return torch.stack(outs).mean(dim=0)
    blk = found.blocks[s.block]
    return blk.forward(h) if s.keep else blk.skip(h)


def run_steps(found: Anatomy, steps: Iterable[Step], h: Tensor) -> Tensor:
    """Apply ``steps`` to a block input ``h`` (the stem's output for a whole route)."""
    for s in steps:
        h = run_step(found, s, h)
    return h


_ACTIVE: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_MISSING = object()


def _runner_plans(
    found: Anatomy, steps: tuple[Step, ...]
) -> dict[nn.Module, tuple[Step, ...] | None]:
    """Which runner runs which steps; None passes its input through.

    A position-preserving route (deletions only) patches just the runners that hold a deleted
    block, each running its own blocks, so it works even where blocks are not back to back, and
    blocks without an owner are left to the model unless they are the ones deleted. Any other
    route runs whole (transitions included) from the first runner, and the other runners and
    the transitions' modules pass their input on.
    """
    blocks = [s for s in steps if not s.transition]
    if in_order(steps, len(found.blocks)):
        plans: dict[nn.Module, tuple[Step, ...] | None] = {}
        for s in blocks:
            if not s.keep:
                found.blocks[s.block].runner  # noqa: B018 - raises for a block with no owner
        for runner in found.runners:
            mine = tuple(s for s in blocks if found.blocks[s.block].owner is runner)
            if not all(s.keep for s in mine):
                plans[runner] = mine
        return plans
    runners = [b.runner for b in found.blocks]  # raises for the first block with no owner
    for t in found.transitions:
        if t.module is None:
            raise ValueError(
                f"transition {t.name} names no module that runs it, so model(x) cannot follow "
                "a route that moves blocks; use evaluate_routes, or deletions only"
            )
    movers: list[nn.Module] = list(dict.fromkeys(runners))
    movers += [t.module for t in found.transitions if t.module is not None]
    return {m: (steps if i == 0 else None) for i, m in enumerate(movers)}


_CACHE_KEYS = ("cache", "past_key_values", "past_key_value", "layer_past")


def _refuse_cache(call: dict[str, Any], runner: nn.Module) -> None:
    """A KV cache handed to a patched layer would be written by deleted or moved layers (or
    not at all), and be stale or mis-indexed at the next step: refuse it."""
    if call.get("use_cache") or any(call.get(k) is not None for k in _CACHE_KEYS):
        raise ValueError(
            f"a KV cache reached {type(runner).__name__} while blocks are deleted or moved; such "
            "a cache would be stale or mis-indexed, so call the model with use_cache=False "
            "(generate(..., use_cache=False))"
        )


@contextlib.contextmanager
def _caches_off(model: nn.Module) -> Iterator[None]:
    """A model with a KV cache (``config.use_cache``) runs without one while patched."""
    config = getattr(model, "config", None)
    old = getattr(config, "use_cache", None)
    if old:
        setattr(config, "use_cache", False)  # noqa: B010 - config is typed as object
    try:
        yield
    finally:
        if old:
            setattr(config, "use_cache", old)  # noqa: B010


@contextlib.contextmanager
def _patched(
    model: nn.Module, found: Anatomy, steps: tuple[Step, ...], what: str
) -> Iterator[nn.Module]:
    if model in _ACTIVE:
        raise ValueError(
            f"an intervention ({_ACTIVE[model]}) is already active on this model; combine them "
            "into one route instead of nesting"
        )
    handoff: dict[str, Tensor | None] = {"out": None}
    context = found.context

    def running(runner: nn.Module, my_steps: tuple[Step, ...]) -> Callable[..., Tensor]:
        try:
            signature: inspect.Signature | None = inspect.signature(runner.forward)
        except (TypeError, ValueError):
            signature = None

        def forward(*args: Any, **kwargs: Any) -> Tensor:
            x, extra = _split_call(signature, args, kwargs)
            _refuse_cache(extra, runner)
            if context is not None:
                context.set(extra)
            handoff["out"] = out = run_steps(found, my_steps, x)
            return out

        return forward

    def pass_through(*args: Any, **kwargs: Any) -> Tensor:
        x: Tensor = args[0] if args else next(iter(kwargs.values()))
        if x is not handoff["out"]:
            raise RuntimeError(
                "the blocks are not run back to back in this model's forward, so a route that "
                f"moves blocks cannot be applied here; deletions still work ({ADAPTER_DOC})"
            )
        return x

    plans = _runner_plans(found, steps)  # refuses before anything is patched
    saved: dict[nn.Module, object] = {}
    _ACTIVE[model] = what
    try:
        for runner, plan in plans.items():
            patched = pass_through if plan is None else running(runner, plan)
            saved[runner] = runner.__dict__.get("forward", _MISSING)
            # An instance attribute shadows the class's forward; nn.Module.__call__ looks it up.
            runner.__dict__["forward"] = patched
        with _caches_off(model):
            yield model
    finally:
        for runner, old in saved.items():
            if old is _MISSING:
                runner.__dict__.pop("forward", None)
            else:
                runner.__dict__["forward"] = old
        _ACTIVE.pop(model, None)


def _plan(model: nn.Module, sequence: Iterable[object]) -> tuple[Anatomy, tuple[Step, ...]]:
    found = anatomy(model)
    steps = plan_route(found, sequence)
    return found, steps


@contextlib.contextmanager
def route(model: nn.Module, sequence: Iterable[object]) -> Iterator[nn.Module]:
    """Run the model through any sequence of its blocks: omit to delete, permute to reorder,
    repeat to run a block again, and ``Parallel`` groups (or a tuple inside the route) to run
    blocks side by side on one input with their outputs averaged.

    Example:
        >>> with route(model, [0, 1, 1, 3]):   # block 2 deleted, block 1 twice
        ...     logits = model(x)
    """
    found, steps = _plan(model, sequence)
    with _patched(model, found, steps, f"route {list(sequence)}"):
        yield model


@contextlib.contextmanager
def lesion(model: nn.Module, drop: Iterable[int | str] | int | str = ()) -> Iterator[nn.Module]:
    """Delete blocks: their residual branches become zero, everything else stays. Blocks are
    given by index (negative from the end) or by name (``resolve_block``).

    Example:
        >>> with lesion(model, drop=[3, 7]):       # or drop=["layer2.1", -1]
        ...     logits = model(x)
    """
    found = anatomy(model)
    n = len(found.blocks)
    if isinstance(drop, str):  # one block by name: lesion(model, drop="layer2.1")
        drop = [drop]
    dropped = _as_indices(drop, found, "drop")
    twice = sorted({d for d in dropped if dropped.count(d) > 1})
    if twice:
        raise ValueError(f"block {twice[0]} is listed more than once in drop")
    gone = set(dropped)
    steps = plan_route(found, [i for i in range(n) if i not in gone])
    with _patched(model, found, steps, f"lesion drop={sorted(gone)}"):
        yield model


@contextlib.contextmanager
def reorder(model: nn.Module, order: Sequence[int]) -> Iterator[nn.Module]:
    """Run all blocks in another order; ``order`` is a permutation of ``range(n)``.

    Example:
        >>> with reorder(model, [0, 2, 1, 3, 4, 5, 6, 7, 8]):   # swap blocks 1 and 2
        ...     logits = model(x)
    """
    found = anatomy(model)
    n = len(found.blocks)
    seq = _as_indices(order, found, "the order")
    missing = sorted(set(range(n)) - set(seq))
    repeated = sorted({i for i in seq if seq.count(i) > 1})
    if missing or repeated or len(seq) != n:
        detail = (
            "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"repeated {repeated}" if repeated else "",
                )
                if part
            )
            or f"{len(seq)} entries"
        )
        raise ValueError(
            f"the order must be a permutation of 0..{n - 1} ({detail}); use route() to delete "
            "or repeat blocks"
        )
    steps = plan_route(found, seq)
    with _patched(model, found, steps, f"reorder {seq}"):
        yield model
