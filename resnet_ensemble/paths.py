"""Paths of the unraveled view: how many there are of each length, and what each subnetwork does.

A network of n residual blocks unravels into 2^n paths, one per subset of blocks whose residual
branch the path goes through; the path's length is the size of that subset, so path lengths
follow Binomial(n, 1/2).

Holds:
- ``path_length_counts``: the exact number of paths of each length 0..n
- ``PathSummary`` and ``summarize_paths``: mean, spread and the shortest range of lengths holding
  a given share of all paths (and the normal-approximation range the paper quotes)
- ``shortest_range_holding``: the shortest contiguous range of lengths holding a share of any
  non-negative weights (paths, or gradient magnitude for "effective paths")
- ``path_fraction``: the share of all 2^n paths whose length lies in a range
- ``format_blocks`` and ``parse_blocks``: compact block sets such as ``"0-3,5,7"``
- ``evaluate_subnetworks``: top-1 error of every subnetwork (subset of kept blocks), exhaustive
  for small n and sampled otherwise, through the shared-prefix engine
- ``EnsembleView`` and ``ensemble_view``: the subnetworks' averaged softmax as an ensemble,
  against the full network and the subnetworks' mean error
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from itertools import product
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from scipy.special import comb
from torch import Tensor, nn

from .anatomy import anatomy
from .engine import Strategy, count_route_mistakes

__all__ = [
    "EnsembleView",
    "PathSummary",
    "ensemble_view",
    "evaluate_subnetworks",
    "format_blocks",
    "parse_blocks",
    "path_fraction",
    "path_length_counts",
    "path_table",
    "shortest_range_holding",
    "summarize_paths",
]


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 0:
        raise ValueError(f"the number of blocks must be a non-negative integer, got {n!r}")
    return int(n)


def _check_share(share: float) -> Fraction:
    # Through str() so that 0.95 means 19/20, not the binary float just below it.
    if not 0.0 < float(share) <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    return Fraction(str(float(share)))


def path_length_counts(n: int) -> list[int]:
    """Number of paths of each length 0..n through n residual blocks: C(n, k), exact integers.

    Example:
        >>> path_length_counts(3)
        [1, 3, 3, 1]
    """
    n = _check_n(n)
    return [int(comb(n, k, exact=True)) for k in range(n + 1)]


def shortest_range_holding(weights: Sequence[float], share: float) -> tuple[int, int, float]:
    """The shortest contiguous range [lo, hi] of indices whose weights hold at least ``share``
    of the total, with the share it holds.

    Exact: integer weights are summed as integers and float weights as exact binary fractions,
    so no rounding decides a borderline case. Among equally short ranges the one holding most
    wins, then the lowest ``lo``.

    Raises:
        ValueError: negative or non-finite weights, all weights zero, or share outside (0, 1].
    """
    target_share = _check_share(share)
    exact: list[Fraction | int] = []
    for w in weights:
        if isinstance(w, numbers.Integral):
            exact.append(int(w))
        else:
            f = float(w)
            if not math.isfinite(f):
                raise ValueError(f"weights must be finite, got {w!r}")
            exact.append(Fraction(f))
    if not exact:
        raise ValueError("weights is empty")
    if any(w < 0 for w in exact):
        raise ValueError("weights must be non-negative")
    total = sum(exact)
    if total == 0:
        raise ValueError("all weights are zero, so no range holds a share of them")
    need = target_share * total
    best: tuple[int, Fraction | int, int, int] | None = None  # (length, -mass, lo, hi)
    hi, mass = -1, 0  # mass of [lo, hi]; hi only moves right as lo does (weights >= 0)
    for lo in range(len(exact)):
        while mass < need and hi + 1 < len(exact):
            hi += 1
            mass += exact[hi]
        if mass < need:
            break
        key = (hi - lo + 1, -mass, lo, hi)
        if best is None or key < best:
            best = key
        mass -= exact[lo]
    assert best is not None  # the full range always holds everything
    _, neg_mass, lo, hi = best
    return lo, hi, float(Fraction(-neg_mass) / total)


def path_fraction(n: int, lo: int, hi: int) -> float:
    """Share of all 2^n paths whose length lies in [lo, hi] (inclusive).

    Example:
        >>> round(100 * path_fraction(54, 5, 17), 2)   # the paper's effective paths
        0.45
    """
    n = _check_n(n)
    if not (isinstance(lo, numbers.Integral) and isinstance(hi, numbers.Integral)):
        raise ValueError(f"lo and hi must be integers, got {lo!r} and {hi!r}")
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"need 0 <= lo <= hi <= n = {n}, got lo = {lo}, hi = {hi}")
    counts = path_length_counts(n)
    return float(Fraction(sum(counts[lo : hi + 1]), 2**n))


@dataclass(frozen=True)
class PathSummary:
    """The path-length distribution of n blocks, Binomial(n, 1/2).

    ``lo``..``hi`` is the shortest range of lengths holding at least ``share`` of all paths and
    ``fraction`` the share it holds (exact). ``normal_lo``..``normal_hi`` is mean ± z·std with z
    the two-sided normal quantile of ``share``, rounded outward, and ``normal_fraction`` its
    exact share: this is how the paper's "19 to 35" for n = 54 comes about (27 ± 7.2), while
    the shortest exact range is 20–34 (95.98 % of paths; 19–35 holds 98.02 %).
    """

    n: int
    mean: float
    std: float
    share: float
    lo: int
    hi: int
    fraction: float
    normal_lo: int
    normal_hi: int
    normal_fraction: float

    def numbers(self) -> dict[str, float]:
        """The summary as results metadata. The central range (mean ± z·sd) is what the paper
        quotes and Fig. 6a shades, so it is ``range_*``; the shortest range is ``shortest_*``."""
        return {
            "share": self.share,
            "mean": self.mean,
            "std": self.std,
            "range_lo": self.normal_lo,
            "range_hi": self.normal_hi,
            "range_fraction": self.normal_fraction,
            "shortest_lo": self.lo,
            "shortest_hi": self.hi,
            "shortest_fraction": self.fraction,
        }


def summarize_paths(n: int, share: float = 0.95) -> PathSummary:
    """Mean, standard deviation and central ranges of the path lengths of n blocks.

    Example:
        >>> s = summarize_paths(54)
        >>> (s.lo, s.hi), (s.normal_lo, s.normal_hi)
        ((20, 34), (19, 35))
    """
    n = _check_n(n)
    _check_share(share)
    lo, hi, fraction = shortest_range_holding(path_length_counts(n), share)
    mean, std = n / 2, math.sqrt(n) / 2
    z = NormalDist().inv_cdf(0.5 + float(share) / 2) if share < 1 else math.inf
    normal_lo = max(0, math.floor(mean - z * std)) if math.isfinite(z) else 0
    normal_hi = min(n, math.ceil(mean + z * std)) if math.isfinite(z) else n
    return PathSummary(
        n=n,
        mean=mean,
        std=std,
        share=float(share),
        lo=lo,
        hi=hi,
        fraction=fraction,
        normal_lo=normal_lo,
        normal_hi=normal_hi,
        normal_fraction=path_fraction(n, normal_lo, normal_hi),
    )


def path_table(n: int, model: str) -> pd.DataFrame:
    """One row per length 0..n: ``paths`` (C(n, k), exact, as text so that no float rounds it),
    ``fraction`` of all 2^n paths and ``cumulative`` fraction."""
    counts = path_length_counts(n)
    total = 2**n
    frame = pd.DataFrame(
        {"model": model, "length": range(n + 1), "paths": [str(c) for c in counts]}
    )
    frame["fraction"] = [c / total for c in counts]
    frame["cumulative"] = frame["fraction"].cumsum()
    return frame


def format_blocks(indices: Iterable[int]) -> str:
    """Compact text for a set of block indices: runs become ranges, ``"none"`` for the empty set.

    Example:
        >>> format_blocks([0, 1, 2, 3, 5, 7])
        '0-3,5,7'
    """
    items = sorted(set(int(i) for i in indices))
    if not items:
        return "none"
    runs: list[list[int]] = []
    for i in items:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def parse_blocks(text: str) -> list[int]:
    """Inverse of ``format_blocks``: ``"0-3,5,7"`` -> ``[0, 1, 2, 3, 5, 7]``."""
    text = text.strip()
    if text in ("", "none"):
        return []
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        try:
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ValueError(f"cannot read block set {text!r}: expected e.g. '0-3,5,7'") from None
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


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
    *,
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
    frame, _ = _run_subnetworks(
        model,
        data,
        max_exhaustive=max_exhaustive,
        samples=samples,
        seed=seed,
        strategy=strategy,
        amp=amp,
    )
    return frame


def ensemble_view(
    model: nn.Module,
    data: Iterable,
    *,
    max_exhaustive: int = 12,
    samples: int = 1024,
    seed: int = 0,
    strategy: Strategy = "auto",
    amp: bool = False,
) -> EnsembleView:
    """Treat the subnetworks of ``evaluate_subnetworks`` as an ensemble: average their softmax
    outputs and compare its error with the full network's and the subnetworks' mean error.

    Example:
        >>> view = ensemble_view(model, loader)
        >>> view.ensemble_error, view.full_error, view.mean_subnetwork_error
    """
    _, view = _run_subnetworks(
        model,
        data,
        max_exhaustive=max_exhaustive,
        samples=samples,
        seed=seed,
        strategy=strategy,
        amp=amp,
    )
    return view
