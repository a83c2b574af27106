"""The evaluation engine: top-1 error of many routes over a dataset, sharing computation.

Holds:
- ``PrefixTree``: routes (as explicit steps) merged on their common prefixes, so a prefix shared
  by many routes runs once per batch
- ``evaluate_routes``: top-1 error per route; ``count_route_mistakes``: the raw counts that
  distributed sweeps all-reduce
- ``naive_evaluate_routes``: one full intervened forward per route, the reference the engine is
  tested and benchmarked against

Two strategies, picked per call:
- ``prefix``: per batch, the stem runs once and the tree is walked depth first; every node runs
  one block on its parent's output, and a cache holds only the activations along the current
  path (memory is per batch and per depth, never per dataset).
- ``mask``: routes that only delete blocks are stacked along the batch, and each residual branch
  is multiplied by a per-sample keep mask (as timm's ``drop_path``), so one large batch evaluates
  many lesions; this wins on a GPU when batches are small, never on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from .anatomy import Anatomy, anatomy
from .interventions import Step, plan_route, route, run_steps

__all__ = [
    "PrefixTree",
    "RouteCounts",
    "count_route_mistakes",
    "evaluate_routes",
    "naive_evaluate_routes",
]

Strategy = Literal["auto", "prefix", "mask"]
LogitsCallback = Callable[[int, Tensor, Tensor], None]  # (route index, logits, targets)


@dataclass
class _Node:
    step: Step | None
    children: dict[Step, _Node] = field(default_factory=dict)
    routes: list[int] = field(default_factory=list)  # routes that end here


class PrefixTree:
    """Routes merged on common prefixes. ``evaluations`` counts block runs per batch."""

    def __init__(self, step_lists: Sequence[Sequence[Step]]) -> None:
        self.root = _Node(None)
        self.num_routes = len(step_lists)
        for i, steps in enumerate(step_lists):
            node = self.root
            for s in steps:
                node = node.children.setdefault(s, _Node(s))
            node.routes.append(i)

    def nodes(self) -> Iterator[_Node]:
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    @property
    def evaluations(self) -> int:
        """Block runs (whole or deleted) per batch when walking the tree."""
        return sum(1 for node in self.nodes() if node.step is not None)

    @property
    def heads(self) -> int:
        return sum(1 for node in self.nodes() if node.routes)


@dataclass
class RouteCounts:
    """Mistakes per route and images seen; errors are ``wrong / total``."""

    wrong: Tensor  # (R,) int64
    total: int

    @property
    def errors(self) -> list[float]:
        return (self.wrong.double() / max(self.total, 1)).tolist()


def _batches(data: Iterable, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for batch in data:
        x, y = batch[0], batch[1]
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@contextlib.contextmanager
def _inference(model: nn.Module, amp: bool, channels_last: bool) -> Iterator[torch.device]:
    """Eval mode, no grad, optional bf16 autocast and channels_last; all undone on exit."""
    modes = {m: m.training for m in model.modules()}
    device = next(model.parameters()).device
    try:
        model.eval()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            yield device
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        for m, mode in modes.items():
            m.training = mode


def _only_deletions(steps: Sequence[Step], n: int) -> bool:
    return [s.block for s in steps] == list(range(n))


def _choose(
    strategy: Strategy, step_lists: Sequence[Sequence[Step]], n: int, device: torch.device
) -> str:
    if strategy != "auto":
        if strategy == "mask" and not all(_only_deletions(s, n) for s in step_lists):
            raise ValueError("the mask strategy evaluates deletions only; use strategy='prefix'")
        return strategy
    masks_fit = device.type == "cuda" and all(_only_deletions(s, n) for s in step_lists)
    return "mask" if masks_fit else "prefix"


def _walk_prefix(
    found: Anatomy, tree: PrefixTree, x: Tensor, visit: Callable[[list[int], Tensor], None]
) -> None:
    # Each stack entry holds a node and its parent's output; a node's own output is computed
    # only when it is popped, so live tensors are those on the current path plus the (shared)
    # parent outputs of pending siblings: memory grows with depth, not with the number of routes.
    blocks = found.blocks
    stack: list[tuple[_Node, Tensor]] = [(tree.root, found.stem(x))]
    while stack:
        node, h = stack.pop()
        s = node.step
        if s is not None:
            h = blocks[s.block].forward(h) if s.keep else blocks[s.block].skip(h)
        if node.routes:
            visit(node.routes, found.head(h))
        stack.extend((child, h) for child in node.children.values())


def _walk_masks(
    found: Anatomy,
    step_lists: Sequence[Sequence[Step]],
    x: Tensor,
    chunk: int,
    visit: Callable[[list[int], Tensor], None],
) -> None:
    keep = torch.tensor([[s.keep for s in steps] for steps in step_lists], device=x.device)
    b = x.shape[0]
    h0 = found.stem(x)
    for start in range(0, len(step_lists), chunk):
        ids = list(range(start, min(start + chunk, len(step_lists))))
        h = h0.repeat(len(ids), *([1] * (h0.dim() - 1)))  # (len(ids) * B, ...)
        for j, blk in enumerate(found.blocks):
            mask = keep[ids, j].repeat_interleave(b).to(h.dtype)  # one entry per sample
            if blk.shortcut is None:
                m = mask.view(-1, *([1] * (h.dim() - 1)))
                h = m * blk.residual(h) + (1 - m) * h
            elif bool(mask.all()):
                h = blk.forward(h)
            else:
                r = blk.residual(h) * mask.view(-1, *([1] * (h.dim() - 1)))
                h = blk.merge(blk.shortcut(h), r)
        logits = found.head(h).view(len(ids), b, -1)
        for k, i in enumerate(ids):
            visit([i], logits[k])


def _non_finite_message(routes: Sequence[Sequence[int]], bad: Tensor, seen: int, amp: bool) -> str:
    ids = [int(i) for i in torch.nonzero(bad).flatten()]
    shown = "; ".join(f"route {list(routes[i])}" for i in ids[:2])
    more = f" (and {len(ids) - 2} more routes)" if len(ids) > 2 else ""
    fix = "run without --amp, or check" if amp else "check"
    return (
        f"the model's outputs are NaN or infinite for {shown}{more} on the batch after image "
        f"{seen}: its error would be meaningless; {fix} the checkpoint's weights and the input "
        "normalisation"
    )


def count_route_mistakes(
    model: nn.Module,
    data: Iterable,
    routes: Sequence[Sequence[int]],
    *,
    strategy: Strategy = "auto",
    amp: bool = False,
    channels_last: bool = False,
    mask_chunk: int = 16,
    on_batch: Callable[[int], None] | None = None,
    on_logits: LogitsCallback | None = None,
) -> RouteCounts:
    """Count top-1 mistakes of every route over ``data`` (an iterable of (images, labels)).

    All routes are validated before any image is touched.

    Raises:
        ValueError: a route out of range or whose shapes do not fit (before any image), or a
            route whose outputs are NaN or infinite (at the first batch where they are).
    """
    found = anatomy(model)
    step_lists = [plan_route(found, r) for r in routes]
    wrong = torch.zeros(len(routes), dtype=torch.int64)
    total = 0
    with _inference(model, amp, channels_last) as device:
        chosen = _choose(strategy, step_lists, len(found.blocks), device)
        tree = PrefixTree(step_lists) if chosen == "prefix" else None
        for x, y in _batches(data, device):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            batch_wrong = torch.zeros(len(routes), dtype=torch.int64, device=device)
            batch_bad = torch.zeros(len(routes), dtype=torch.bool, device=device)

            def visit(
                ids: list[int],
                logits: Tensor,
                y: Tensor = y,
                acc: Tensor = batch_wrong,
                bad: Tensor = batch_bad,
            ) -> None:
                miss = (logits.argmax(dim=1) != y).sum()
                broken = ~torch.isfinite(logits).all()  # argmax of NaN is garbage, not an answer
                for i in ids:
                    acc[i] += miss
                    bad[i] |= broken
                    if on_logits is not None:
                        on_logits(i, logits.float(), y)

            if tree is not None:
                _walk_prefix(found, tree, x, visit)
            else:
                _walk_masks(found, step_lists, x, mask_chunk, visit)
            if bool(batch_bad.any()):
                raise ValueError(_non_finite_message(routes, batch_bad.cpu(), total, amp))
            wrong += batch_wrong.cpu()
            total += int(y.shape[0])
            if on_batch is not None:
                on_batch(int(y.shape[0]))
    return RouteCounts(wrong, total)


def evaluate_routes(
    model: nn.Module, data: Iterable, routes: Sequence[Sequence[int]], **kwargs: object
) -> list[float]:
    """Top-1 error (a fraction) of each route, in order; routes as in ``route``.

    Example:
        >>> n = len(residual_blocks(model))
        >>> without_3 = [i for i in range(n) if i != 3]
        >>> full, lesioned = evaluate_routes(model, loader, [range(n), without_3])
    """
    return count_route_mistakes(model, data, routes, **kwargs).errors  # type: ignore[arg-type]


def naive_evaluate_routes(
    model: nn.Module, data: Iterable, routes: Sequence[Sequence[int]]
) -> list[float]:
    """The naive way: one full forward of the intervened model per route and batch."""
    device = next(model.parameters()).device
    batches = list(_batches(data, device))
    errors = []
    with _inference(model, amp=False, channels_last=False):
        for r in routes:
            wrong = total = 0
            with route(model, r):
                for x, y in batches:
                    wrong += int((model(x).argmax(dim=1) != y).sum())
                    total += int(y.shape[0])
            errors.append(wrong / max(total, 1))
    return errors


def route_output(found: Anatomy, steps: Sequence[Step], x: Tensor) -> Tensor:
    """Logits of one explicit route, from images."""
    return found.head(run_steps(found, steps, found.stem(x)))
