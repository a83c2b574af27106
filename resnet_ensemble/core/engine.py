"""The evaluation engine: a metric of many routes over a dataset, sharing computation.

Holds:
- ``PrefixTree``: routes (as explicit steps) merged on their common prefixes, so a prefix shared
  by many routes runs once per batch
- ``evaluate_routes``: one value per route of a metric (top-1 error by default, top-5, loss,
  perplexity for language models, or a callable); ``measure_routes``: the raw (sum, count) per
  route that distributed sweeps all-reduce; ``count_route_mistakes``: the same for top-1 error
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
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..blocks.registry import Anatomy, anatomy
from ..blocks.runtime import eval_mode, model_device
from ..names import Strategy
from .interventions import Step, in_order, plan_route, route, run_step, run_steps
from .metrics import Metric, MetricSpec, resolve_metric

__all__ = [
    "PrefixTree",
    "RouteCounts",
    "RouteMeasures",
    "Strategy",
    "count_route_mistakes",
    "evaluate_routes",
    "measure_routes",
    "model_logits",
    "naive_evaluate_routes",
]

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


@dataclass
class RouteMeasures:
    """Per route, the metric's sum and count over the data; ``values`` finishes them."""

    metric: Metric
    sums: Tensor  # (R,) float64
    counts: Tensor  # (R,) float64
    images: int

    @property
    def values(self) -> list[float]:
        return [
            self.metric.finish(float(s), float(c))
            for s, c in zip(self.sums.tolist(), self.counts.tolist(), strict=True)
        ]


def _batches(data: Iterable, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for batch in data:
        x, y = batch[0], batch[1]
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _token_batches(data: Iterable, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """Token ids (B, T), given as a tensor, the first item of a tuple, or ``input_ids``; the
    targets are the next tokens, which the engine lines up with the logits."""
    for batch in data:
        if isinstance(batch, Tensor):
            ids = batch
        elif isinstance(batch, dict):
            ids = batch["input_ids"]
        else:
            ids = batch[0]
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(
                f"a language model's data must yield token ids of shape (batch, tokens), got a "
                f"{ids.dtype} tensor of shape {tuple(ids.shape)}"
            )
        if ids.shape[1] < 2:
            raise ValueError("sequences of one token have no next token to predict")
        ids = ids.to(device, non_blocking=True)
        yield ids, ids[:, 1:]


def _scored(found: Anatomy, logits: Tensor) -> Tensor:
    """The logits that the targets line up with: all but the last position for a language
    model (position t predicts token t + 1)."""
    return logits[:, :-1] if found.task == "language" else logits


def model_logits(output: object) -> Tensor:
    """The logits in whatever the model's own call returns: a tensor, a ModelOutput with
    ``logits``, or a tuple whose first item they are."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ValueError(f"cannot find the logits in a {type(output).__name__} returned by the model")


@contextlib.contextmanager
def _inference(model: nn.Module, amp: bool, channels_last: bool) -> Iterator[torch.device]:
    """Eval mode, no grad, optional bf16 autocast and channels_last; all undone on exit."""
    device = model_device(model)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    )
    with eval_mode(model):
        try:
            if channels_last:
                model.to(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast:
                yield device
        finally:
            if channels_last:
                model.to(memory_format=torch.contiguous_format)


def _only_deletions(steps: Sequence[Step], n: int) -> bool:
    return in_order(steps, n)


def _choose(strategy: Strategy, found: Anatomy, step_lists: Sequence[Sequence[Step]]) -> str:
    n = len(found.blocks)
    if strategy != "auto":
        if strategy == "mask" and not all(_only_deletions(s, n) for s in step_lists):
            raise ValueError("the mask strategy evaluates deletions only; use strategy='prefix'")
        if strategy == "mask" and found.context is not None:
            raise ValueError(
                f"the mask strategy stacks routes along the batch, which the call context of "
                f"{found.adapter} models (masks, positions) does not follow; use strategy='prefix'"
            )
        return strategy
    # Prefix sharing wins on both: measured on an H200 (benchmarks/gpu/gpu_check.md), every
    # single deletion of ResNet-110 on 10,000 images took 9.5 s with prefixes and 14.3 s with
    # masks, k-block deletions 1.8 s and 2.2 s; on a CPU masks are 5-6x slower. Masks stay a
    # choice (strategy="mask") for small batches that leave a GPU idle.
    return "prefix"


def _walk_prefix(
    found: Anatomy, tree: PrefixTree, x: Tensor, visit: Callable[[list[int], Tensor], None]
) -> None:
    # Each stack entry holds a node and its parent's output; a node's own output is computed
    # only when it is popped, so live tensors are those on the current path plus the (shared)
    # parent outputs of pending siblings: memory grows with depth, not with the number of routes.
    stack: list[tuple[_Node, Tensor]] = [(tree.root, found.stem(x))]
    while stack:
        node, h = stack.pop()
        if node.step is not None:
            h = run_step(found, node.step, h)
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
        pending = list(found.transitions)
        for j, blk in enumerate(found.blocks):
            while pending and pending[0].before <= j:
                h = pending.pop(0)(h)
            mask = keep[ids, j].repeat_interleave(b).to(h.dtype)  # one entry per sample
            if blk.shortcut is None:
                m = mask.view(-1, *([1] * (h.dim() - 1)))
                h = m * blk.residual(h) + (1 - m) * h
            elif bool(mask.all()):
                h = blk.forward(h)
            else:
                r = blk.residual(h) * mask.view(-1, *([1] * (h.dim() - 1)))
                h = blk.merge(blk.shortcut(h), r)
        while pending:
            h = pending.pop(0)(h)
        out = found.head(h)
        logits = out.view(len(ids), b, *out.shape[1:])
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


def measure_routes(
    model: nn.Module,
    data: Iterable,
    routes: Sequence[Sequence[int]],
    *,
    metric: MetricSpec | None = None,
    strategy: Strategy = "auto",
    amp: bool = False,
    channels_last: bool = False,
    mask_chunk: int = 16,
    on_batch: Callable[[int], None] | None = None,
    on_logits: LogitsCallback | None = None,
) -> RouteMeasures:
    """The metric's (sum, count) for every route over ``data``: (images, labels) batches for
    a classifier, token ids (B, T) for a language model. All routes and the metric are
    validated before any data is touched.

    Raises:
        ValueError: a route out of range or whose shapes do not fit, or an unknown metric
            (before any data), or a route whose outputs are NaN or infinite (at the first batch
            where they are).
    """
    found = anatomy(model)
    scorer = resolve_metric(metric, found.task)
    step_lists = [plan_route(found, r) for r in routes]
    sums = torch.zeros(len(routes), dtype=torch.float64)
    counts = torch.zeros(len(routes), dtype=torch.float64)
    total = 0
    batches = _token_batches if found.task == "language" else _batches
    with _inference(model, amp, channels_last) as device:
        chosen = _choose(strategy, found, step_lists)
        tree = PrefixTree(step_lists) if chosen == "prefix" else None
        full_steps = plan_route(found, range(len(found.blocks))) if scorer.reference else None
        for x, y in batches(data, device):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            full = (
                None if full_steps is None else _scored(found, route_output(found, full_steps, x))
            )
            batch_sum = torch.zeros(len(routes), dtype=torch.float64, device=device)
            batch_count = torch.zeros(len(routes), dtype=torch.float64, device=device)
            batch_bad = torch.zeros(len(routes), dtype=torch.bool, device=device)

            def visit(
                ids: list[int],
                logits: Tensor,
                y: Tensor = y,
                acc: Tensor = batch_sum,
                cnt: Tensor = batch_count,
                bad: Tensor = batch_bad,
                full: Tensor | None = full,
            ) -> None:
                scored = _scored(found, logits)
                value, count = scorer(scored, y, full)
                broken = ~torch.isfinite(logits).all()  # argmax of NaN is garbage, not an answer
                for i in ids:
                    acc[i] += value.to(device)
                    cnt[i] += count.to(device)
                    bad[i] |= broken
                    if on_logits is not None:
                        on_logits(i, scored.float(), y)

            if tree is not None:
                _walk_prefix(found, tree, x, visit)
            else:
                _walk_masks(found, step_lists, x, mask_chunk, visit)
            if bool(batch_bad.any()):
                raise ValueError(_non_finite_message(routes, batch_bad.cpu(), total, amp))
            sums += batch_sum.cpu()
            counts += batch_count.cpu()
            total += int(y.shape[0])
            if on_batch is not None:
                on_batch(int(y.shape[0]))
    return RouteMeasures(scorer, sums, counts, total)


def count_route_mistakes(
    model: nn.Module,
    data: Iterable,
    routes: Sequence[Sequence[int]],
    **kwargs: Any,
) -> RouteCounts:
    """Count top-1 mistakes of every route over ``data`` (an iterable of (images, labels));
    the keywords are ``measure_routes``'s (strategy, amp, channels_last, mask_chunk, on_batch,
    on_logits).

    Raises:
        ValueError: as ``measure_routes``.
    """
    kwargs.pop("metric", None)
    measured = measure_routes(model, data, routes, metric="error", **kwargs)
    return RouteCounts(measured.sums.round().to(torch.int64), measured.images)


def evaluate_routes(
    model: nn.Module,
    data: Iterable,
    routes: Sequence[Sequence[int]],
    *,
    metric: MetricSpec | None = None,
    **kwargs: Any,
) -> list[float]:
    """One value of ``metric`` per route, in order; routes as in ``route``.

    ``metric``: "error" (top-1, a fraction; the default for classifiers), "top5", "loss" (mean
    cross-entropy), "perplexity" (language models, their default: exp of the mean next-token
    loss, with ``data`` yielding token ids (B, T)), or a callable(outputs, targets) ->
    (sum, count) whose value is sum / count.

    Example:
        >>> n = len(residual_blocks(model))
        >>> without_3 = [i for i in range(n) if i != 3]
        >>> full, lesioned = evaluate_routes(model, loader, [range(n), without_3])
        >>> evaluate_routes(gpt2, token_batches, [range(n)], metric="perplexity")

    Raises:
        ValueError: ``routes`` is one route (a flat sequence of block indices), not a list of
            routes: ``[0, 1, 3]`` would silently be three one-block routes.
    """
    _refuse_a_single_route(routes)
    return measure_routes(model, data, routes, metric=metric, **kwargs).values


def _refuse_a_single_route(routes: Any) -> None:
    if isinstance(routes, range) or (
        isinstance(routes, Sequence)
        and len(routes) > 0
        and all(
            (isinstance(r, numbers.Integral) and not isinstance(r, bool)) or isinstance(r, str)
            for r in routes
        )
    ):
        raise ValueError(
            f"evaluate_routes takes a list of routes, and {routes!r} is a single route of block "
            f"indices or names; wrap it in a list: evaluate_routes(model, data, [{routes!r}])"
        )


def naive_evaluate_routes(
    model: nn.Module, data: Iterable, routes: Sequence[Sequence[int]]
) -> list[float]:
    """The naive way: one full forward of the intervened model per route and batch."""
    device = model_device(model)
    batches = list(_batches(data, device))
    errors = []
    with _inference(model, amp=False, channels_last=False):
        for r in routes:
            wrong = total = 0
            with route(model, r):
                for x, y in batches:
                    wrong += int((model_logits(model(x)).argmax(dim=1) != y).sum())
                    total += int(y.shape[0])
            errors.append(wrong / max(total, 1))
    return errors


def route_output(found: Anatomy, steps: Sequence[Step], x: Tensor) -> Tensor:
    """Logits of one explicit route, from images."""
    return found.head(run_steps(found, steps, found.stem(x)))
