"""The package's small vocabularies, each written once: as a ``Literal`` for type hints and as a
tuple (or a dict with one line of help per name) for checks, ``--help`` and error messages.

Holds ``MetricName`` / ``METRIC_NAMES`` (the metrics known by name), ``Strategy`` /
``STRATEGIES`` (how routes are evaluated), ``SweepKind`` / ``SWEEP_KINDS`` (the paper's lesion
experiments), ``Eligible`` / ``ELIGIBLE`` (which blocks k-deletion draws from) and ``TableKind``
/ ``TABLE_KINDS`` (the kinds of results table, ``results.TABLES``' keys).

Torch-free and importing nothing of the package, so that the command line's ``--help`` and the
table readers can use it without loading torch.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ELIGIBLE",
    "METRIC_NAMES",
    "STRATEGIES",
    "SWEEP_KINDS",
    "TABLE_KINDS",
    "Eligible",
    "MetricName",
    "Strategy",
    "SweepKind",
    "TableKind",
]

#: The metrics known by name (``metrics.METRICS``' keys, the CLI's --metric choices); a sweep's
#: value column is named after its metric.
MetricName = Literal["error", "top5", "loss", "perplexity", "kl"]
METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)

#: How routes are evaluated: prefix (share common prefixes in a tree), mask (batch deletion
#: masks along the batch, GPU), or auto (prefix: the faster on the CPU and on an H200).
Strategy = Literal["auto", "prefix", "mask"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

#: The paper's lesion experiments, each with its one line of help.
SweepKind = Literal["single", "multi", "reorder"]
SWEEP_KINDS: dict[SweepKind, str] = {
    "single": "every block deleted alone (paper Fig. 3)",
    "multi": "k random blocks deleted together (paper Fig. 5a)",
    "reorder": "k random swaps of same-shape blocks (paper Fig. 5b)",
}

#: Which blocks k-block deletion draws from: every deletable block; those whose shortcut is the
#: identity (the default, as this toolkit always drew); or every block but the first of each
#: stage (the authors' plots leave out draws that touch one).
Eligible = Literal["all", "non-downsampling", "not-stage-first"]
ELIGIBLE: tuple[Eligible, ...] = get_args(Eligible)

#: The kinds of results table (``results.TABLES`` describes each one's columns).
TableKind = Literal[
    "sweep",
    "paths",
    "gradients",
    "gradient_samples",
    "subnetworks",
    "history",
    "training",
    "depth",
    "depth_k",
    "dynamics",
    "effective_path_evaluation",
    "proxies",
]
TABLE_KINDS: tuple[TableKind, ...] = get_args(TableKind)
