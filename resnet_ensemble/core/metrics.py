"""What a route is scored by: top-1 error, top-5 error, cross-entropy, perplexity, the KL
divergence from the full network's predictions (Lad et al. 2024), or yours.

Holds ``MetricName`` (the names, a ``Literal`` kept in ``names``), ``Metric`` and
``resolve_metric``. A metric turns one batch of outputs and targets into a (sum, count) pair;
sums and counts add up over batches (and over torchrun ranks), and ``finish(sum, count)`` gives
the value. For language models the engine passes next-token logits ``(B, T - 1, vocab)`` and the
next tokens ``(B, T - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor

from ..names import MetricName

__all__ = ["METRICS", "Metric", "MetricFn", "MetricName", "MetricSpec", "resolve_metric"]

#: A user's metric: callable(outputs, targets) -> (sum, count), whose value is sum / count.
MetricFn = Callable[[Tensor, Tensor], tuple[Tensor | float, Tensor | float]]


def _mean(total: float, count: float) -> float:
    return total / count if count else math.nan


def _perplexity(total: float, count: float) -> float:
    return math.exp(total / count) if count else math.nan


def _flat(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(B, ..., classes) and (B, ...) as (N, classes) and (N,)."""
    return outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)


def _top1_wrong(outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    logits, y = _flat(outputs, targets)
    return (logits.argmax(dim=-1) != y).sum(), y.numel()


def _top5_wrong(outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    logits, y = _flat(outputs, targets)
    k = min(5, logits.shape[-1])
    hit = (logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(dim=-1)
    return (~hit).sum(), y.numel()


def _cross_entropy(outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    logits, y = _flat(outputs, targets)
    return F.cross_entropy(logits.double(), y, reduction="sum"), y.numel()


def _kl_from_full(outputs: Tensor, targets: Tensor, reference: Tensor) -> tuple[Tensor, int]:  # noqa: ARG001 - the targets play no part
    """KL(p_full || p_route) of the predicted distributions, summed over positions (each
    image of a classifier; each next-token prediction of a language model), in nats."""
    logits, _ = _flat(outputs, targets)
    ref = reference.reshape(-1, reference.shape[-1])
    log_q = logits.double().log_softmax(dim=-1)
    log_p = ref.double().log_softmax(dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return kl.sum(), kl.numel()


@dataclass(frozen=True)
class Metric:
    """A named score: ``batch(outputs, targets) -> (sum, count)``, ``finish(sum, count)``.

    A metric with ``reference`` compares each route with the full network:
    ``batch(outputs, targets, full_outputs)``; the engine runs the full network on each batch
    to provide ``full_outputs``.
    """

    name: str
    batch: Callable[..., tuple[Tensor | float, Tensor | float]]
    finish: Callable[[float, float], float] = _mean
    counts_mistakes: bool = False  # sums are whole numbers of wrong answers
    reference: bool = False

    def __call__(
        self, outputs: Tensor, targets: Tensor, reference: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.reference:
            if reference is None:
                raise ValueError(f"the {self.name} metric needs the full network's outputs")
            total, count = self.batch(outputs, targets, reference)
        else:
            total, count = self.batch(outputs, targets)
        return torch.as_tensor(total, dtype=torch.float64), torch.as_tensor(
            count, dtype=torch.float64
        )


METRICS: dict[MetricName, Metric] = {
    "error": Metric("error", _top1_wrong, counts_mistakes=True),
    "top5": Metric("top5", _top5_wrong, counts_mistakes=True),
    "loss": Metric("loss", _cross_entropy),
    "perplexity": Metric("perplexity", _cross_entropy, _perplexity),
    "kl": Metric("kl", _kl_from_full, reference=True),
}

#: What every ``metric=`` argument takes: a name, a callable, a ``Metric``.
MetricSpec: TypeAlias = MetricName | MetricFn | Metric


def resolve_metric(metric: MetricSpec | None, task: str = "classification") -> Metric:
    """A metric by name (error, top5, loss, perplexity, kl: the mean KL(p_full || p_route) per
    prediction, in nats), a callable(outputs, targets) ->
    (sum, count) whose value is sum / count, or None for the task's default (error for
    classifiers, perplexity for language models).

    Raises:
        ValueError: an unknown name, or perplexity for a classifier.
    """
    if metric is None:
        metric = "perplexity" if task == "language" else "error"
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        key = metric.strip().lower()
        if key not in METRICS:
            raise ValueError(
                f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}, or pass a "
                "callable(outputs, targets) -> (sum, count)"
            )
        if key == "perplexity" and task != "language":
            raise ValueError(
                "perplexity is for language models (next-token prediction); for a classifier "
                "use error, top5 or loss"
            )
        return METRICS[key]  # checked against METRICS just above
    if callable(metric):
        return Metric(getattr(metric, "__name__", "custom").strip("<>") or "custom", metric)
    raise ValueError(f"metric must be a name or a callable, got {type(metric).__name__}")
