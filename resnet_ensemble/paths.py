"""Paths of the unraveled view: how many there are of each length (pure combinatorics).

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
- ``path_table``: the per-length table (the "paths" kind of ``results.TABLES``)
- ``format_blocks`` and ``parse_blocks``: compact block sets such as ``"0-3,5,7"``

Evaluating sub-networks (``evaluate_subnetworks``, ``ensemble_view``) is ``subnetworks``'.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

import pandas as pd
from scipy.special import comb

__all__ = [
    "PathSummary",
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
    # mass of [lo, hi]; hi only moves right as lo does (weights >= 0)
    hi, mass = -1, 0 * total  # 0 in the weights' type (int or Fraction)
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
