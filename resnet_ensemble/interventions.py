"""Test-time interventions on a model's own forward: delete, reorder and route residual blocks.

Holds:
- ``Step`` and ``plan_route``: a route (a sequence of block indices) made explicit as steps that
  run a block whole or deleted, validated against the blocks' shapes before anything is touched
- ``run_steps``: apply steps to a block input, the functional core that sweeps build on
- ``route``, ``lesion``, ``reorder``: context managers that make ``model(x)`` follow a route and
  restore the model exactly on exit, also when the body raises

Route semantics: the listed blocks run whole, in the listed order, and may repeat; a block left
out is deleted, which keeps its shortcut and whatever follows the addition. A deleted block whose
deleted form is not the identity (a projection shortcut, a post-addition ReLU) runs where it
stands in the network: just before the first listed block with a larger index, or at the end.
"""

from __future__ import annotations

import contextlib
import numbers
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .anatomy import Anatomy, Block, anatomy, block_shapes, describe_shape

__all__ = ["Step", "lesion", "plan_route", "reorder", "route", "run_steps"]


@dataclass(frozen=True)
class Step:
    """Run block ``block`` whole (``keep``) or deleted (residual branch zero)."""

    block: int
    keep: bool = True


def _as_indices(values: Iterable[object] | int, n: int, what: str) -> list[int]:
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of block indices, got {values!r}")
    try:
        items = list(values)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of block indices, got {values!r}") from None
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"block index {v!r} in {what} is not an integer; valid are 0..{n - 1}")
        if not 0 <= int(v) < n:
            raise ValueError(
                f"block {v} in {what} is out of range: the model has {n} blocks, 0..{n - 1}"
            )
        out.append(int(v))
    return out


def _label(b: Block) -> str:
    return f"block {b.index} ({b.name})"


def plan_route(found: Anatomy, sequence: Iterable[int]) -> tuple[Step, ...]:
    """Make a route explicit: whole and deleted steps in execution order, checked for shapes.

    Raises:
        ValueError: an index out of range, a block without shortcut deleted where the shape
            changes, or a block moved to where its input shape does not fit.
    """
    n = len(found.blocks)
    seq = _as_indices(sequence, n, "the route")
    listed = set(seq)
    pending = [i for i in range(n) if i not in listed]
    steps: list[Step] = []
    for b in seq:
        while pending and pending[0] < b:
            steps.append(Step(pending.pop(0), keep=False))
        steps.append(Step(b))
    steps.extend(Step(i, keep=False) for i in pending)
    for s in steps:
        blk = found.blocks[s.block]
        if not s.keep and blk.shortcut is None and blk.downsamples:
            raise ValueError(
                f"{_label(blk)} has no shortcut and changes the tensor shape, so it cannot be "
                "deleted; delete only blocks that keep the shape"
            )
    if [s.block for s in steps] != list(range(n)):
        _check_route_shapes(found, steps)
    return tuple(steps)


def _check_route_shapes(found: Anatomy, steps: Sequence[Step]) -> None:
    shapes = block_shapes(found.model, found)
    current = shapes.stem_out
    position = 0
    for s in steps:
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


def run_steps(found: Anatomy, steps: Iterable[Step], h: Tensor) -> Tensor:
    """Apply ``steps`` to a block input ``h`` (the stem's output for a whole route)."""
    blocks = found.blocks
    for s in steps:
        h = blocks[s.block].forward(h) if s.keep else blocks[s.block].skip(h)
    return h


_ACTIVE: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_MISSING = object()


def _runner_plans(
    found: Anatomy, steps: tuple[Step, ...]
) -> dict[nn.Module, tuple[Step, ...] | None]:
    """Which runner runs which steps; None passes its input through.

    A position-preserving route (deletions only) patches just the runners that hold a deleted
    block, each running its own blocks, so it works even where blocks are not back to back. Any
    other route runs whole from the first runner and the others pass their input on.
    """
    runners = found.runners
    if [s.block for s in steps] == list(range(len(found.blocks))):
        plans: dict[nn.Module, tuple[Step, ...] | None] = {}
        for runner in runners:
            mine = tuple(s for s in steps if found.blocks[s.block].runner is runner)
            if not all(s.keep for s in mine):
                plans[runner] = mine
        return plans
    return {runner: (steps if i == 0 else None) for i, runner in enumerate(runners)}


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

    def running(my_steps: tuple[Step, ...]) -> Callable[[Tensor], Tensor]:
        def forward(x: Tensor) -> Tensor:
            handoff["out"] = out = run_steps(found, my_steps, x)
            return out

        return forward

    def pass_through(x: Tensor) -> Tensor:
        if x is not handoff["out"]:
            raise RuntimeError(
                "the blocks are not run back to back in this model's forward, so a route that "
                "moves blocks cannot be applied here; deletions still work (docs/adapters.md)"
            )
        return x

    saved: dict[nn.Module, object] = {}
    _ACTIVE[model] = what
    try:
        for runner, plan in _runner_plans(found, steps).items():
            saved[runner] = runner.__dict__.get("forward", _MISSING)
            # An instance attribute shadows the class's forward; nn.Module.__call__ looks it up.
            runner.__dict__["forward"] = pass_through if plan is None else running(plan)
        yield model
    finally:
        for runner, old in saved.items():
            if old is _MISSING:
                runner.__dict__.pop("forward", None)
            else:
                runner.__dict__["forward"] = old
        _ACTIVE.pop(model, None)


def _plan(model: nn.Module, sequence: Iterable[int]) -> tuple[Anatomy, tuple[Step, ...]]:
    found = anatomy(model)
    steps = plan_route(found, sequence)
    return found, steps


@contextlib.contextmanager
def route(model: nn.Module, sequence: Iterable[int]) -> Iterator[nn.Module]:
    """Run the model through any sequence of its blocks: omit to delete, permute to reorder,
    repeat to run a block again.

    Example:
        >>> with route(model, [0, 1, 1, 3]):   # block 2 deleted, block 1 twice
        ...     logits = model(x)
    """
    found, steps = _plan(model, sequence)
    with _patched(model, found, steps, f"route {list(sequence)}"):
        yield model


@contextlib.contextmanager
def lesion(model: nn.Module, drop: Iterable[int] | int = ()) -> Iterator[nn.Module]:
    """Delete blocks: their residual branches become zero, everything else stays.

    Example:
        >>> with lesion(model, drop=[3, 7]):
        ...     logits = model(x)
    """
    found = anatomy(model)
    n = len(found.blocks)
    dropped = _as_indices(drop, n, "drop")
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
    seq = _as_indices(order, n, "the order")
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
