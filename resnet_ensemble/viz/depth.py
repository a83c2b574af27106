"""Figures of the depth series: the paper's claims against the number of blocks.

Each takes a table of ``depth_series`` (the "depth" or "depth_k" kind) and returns a two-panel
``Figure`` in the paper style of ``plots``:
- ``plot_depth_single_block``: one block deleted (mean, median, worst error, and mean ÷ full),
  for the ResNet, stochastic depth and effective-path training, with the plain control, against
  blocks
- ``plot_depth_delete_k``: error against k blocks deleted, one line per depth, against k and
  against k / n
- ``plot_depth_gradients``: the effective range beside the central 95% of paths, and the
  single-path gradient's fall per block, against blocks

When every network has the same number of blocks (the converged networks at 54), there is no
depth to draw against: the networks stand side by side, named on the x axis, as marks without
lines between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import paper
from ..results import TABLES, TableKind
from .style import ERROR_LABEL, Style, figure_style, fit_texts
from .style import VARIANT_COLOUR as _VARIANT_COLOUR
from .style import VARIANT_ORDER as _VARIANT_ORDER
from .style import Key as _Key
from .style import legend as _legend
from .style import ms as _ms
from .style import new_figure as _new_figure
from .style import percent as _percent

__all__ = [
    "DEPTH_TITLES",
    "plot_depth_delete_k",
    "plot_depth_gradients",
    "plot_depth_single_block",
]

DEPTH_TITLES = {
    "depth_single_block": "One block deleted, against depth",
    "depth_delete_k": "Deleting k blocks, every depth",
    "depth_gradients": "Effective paths and single-path decay, against depth",
}
# The same figures when every network has one depth (``_one_depth``): nothing is against depth.
SIDE_BY_SIDE_TITLES = {
    "depth_single_block": "One block deleted, network by network",
    "depth_gradients": "Effective paths and single-path decay, network by network",
}
BLOCKS_LABEL = "residual blocks n"
# The depth tables' columns that hold text; every other column is a number.
_TEXT_COLUMNS = {"network", "model", "variant", "decay_measure", "checkpoint_sha256"}


def _colour(variant: str) -> Any:
    return sns.color_palette("colorblind", 10)[_VARIANT_COLOUR.get(variant, 3)]


# Line styles of the k-deletion curves by training variant (the ordinary ResNet solid).
_VARIANT_LINESTYLE = {"stochastic depth": "--", "effective paths": ":"}


def _lesioned_variants(data: pd.DataFrame) -> list[str]:
    """The variants drawn as series over depth: all but the plain control (one path, drawn as a
    mark of its own), in the package's variant order; a variant with a single network (e.g.
    effective-path training at 110) is a single marked point."""
    present = [v for v in data["variant"].unique() if v and v != "plain"]
    return sorted(present, key=lambda v: (_VARIANT_ORDER + (v,)).index(v))


def _one_depth(data: pd.DataFrame) -> bool:
    """Every network has the same number of blocks: a comparison, not a series over depth."""
    return data["blocks"].nunique() == 1


def _network_order(data: pd.DataFrame) -> list[str]:
    """The networks in the package's variant order, then by name: their places on the x axis
    of a one-depth comparison."""
    rank = {v: i for i, v in enumerate(_VARIANT_ORDER)}
    ordered = data.assign(_rank=data["variant"].map(lambda v: rank.get(v, len(rank))))
    return list(dict.fromkeys(ordered.sort_values(["_rank", "network"])["network"]))


def _x(data: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """Where ``rows`` go on the x axis: their block counts, or in a one-depth comparison their
    networks' places (``_network_order``)."""
    if not _one_depth(data):
        return rows["blocks"]
    place = {name: float(i) for i, name in enumerate(_network_order(data))}
    return rows["network"].map(place)


def _blocks_ticks(data: pd.DataFrame, *axes: Any, extra: tuple[str, ...] = ()) -> None:
    """Ticks at the networks' block counts (9, 15, 21, 27, 54), with room on both sides; in a
    one-depth comparison, the networks' names (then ``extra`` names, e.g. the paper's)."""
    if _one_depth(data):
        names = [*_network_order(data), *extra]
        label = f"network ({int(data['blocks'].iloc[0])} residual blocks)"
        for ax in axes:
            ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
            ax.set_xlim(-0.6, len(names) - 0.4)
            ax.set_xlabel(label)
        return
    blocks = sorted(int(b) for b in data["blocks"].dropna().unique())
    for ax in axes:
        ax.set_xticks(blocks)
        ax.set_xlim(min(blocks) - 3, max(blocks) + 3)


def _numeric(df: pd.DataFrame, kind: TableKind) -> pd.DataFrame:
    """The table with every column of its kind (``results.TABLES``), numbers as numbers and a
    column it lacks as NaN, sorted by blocks."""
    data = df.copy()
    for col in TABLES[kind].columns:
        if col not in _TEXT_COLUMNS:
            data[col] = pd.to_numeric(data[col], errors="coerce") if col in data else np.nan
    data["variant"] = data["variant"].fillna("").astype(str)
    return data.sort_values("blocks")


@contextlib.contextmanager
def _two_panels(
    style: Style, name: str, *, side_by_side: bool = False
) -> Iterator[tuple[Figure, Axes, Axes, _Key]]:
    """A page-wide figure of two panels in the paper style: the body draws into the panels and
    the legend; the title and the legend (below, from the left panel) are added after it."""
    with figure_style(style):
        fig, (left, right) = _new_figure(style, "double", extra_height=0.5, ncols=2)
        key = _Key()
        yield fig, left, right, key
        fig.suptitle(SIDE_BY_SIDE_TITLES[name] if side_by_side else DEPTH_TITLES[name])
        _legend(fig, left, key.handles, key.labels, owned=True, below=True)
        fit_texts(fig)


def plot_depth_single_block(df: pd.DataFrame, *, style: Style = "paper") -> Figure:
    """Left: the error with one block deleted (mean ●, median ◆, worst ▲) and the full
    network's (thin line), per variant against blocks; the plain control's mean as a cross,
    chance as a dotted line. Right: mean error with one block deleted ÷ full error."""
    data = _numeric(df, "depth")
    if data.empty:
        raise ValueError("no networks in the depth table")
    lines = _lesioned_variants(data)
    plain = data[data["variant"] == "plain"]
    side_by_side = _one_depth(data)  # marks only: no line joins two networks of one depth
    with _two_panels(style, "depth_single_block", side_by_side=side_by_side) as (
        fig,
        left,
        right,
        key,
    ):
        for variant in lines:
            rows = data[data["variant"] == variant]
            colour = _colour(variant)
            x = _x(data, rows)
            if side_by_side:
                left.plot(x, _percent(rows["full_error"]), color=colour, ls="", marker="_",
                          ms=_ms(2.0), alpha=0.6)  # fmt: skip
            else:
                left.plot(x, _percent(rows["full_error"]), color=colour, lw=0.8, alpha=0.6)
            for col, marker, ls in (
                ("single_mean", "o", "-"),
                ("single_median", "D", "--"),
                ("single_worst", "^", ":"),
            ):
                left.plot(x, _percent(rows[col]), color=colour, ls="" if side_by_side else ls,
                          marker=marker, ms=_ms(0.7))  # fmt: skip
            right.plot(x, rows["single_mean_over_full"], color=colour, marker="o", ms=_ms(0.7),
                       ls="" if side_by_side else "-")  # fmt: skip
            key.add(Patch(facecolor=colour), variant)
        if not plain.empty:
            colour = _colour("plain")
            left.plot(_x(data, plain), _percent(plain["single_mean"]), ls="", marker="X",
                      color=colour, ms=_ms(1.0))  # fmt: skip
            key.add(Line2D([], [], ls="", marker="X", color=colour), "plain control (mean)")
        chance = data["chance_error"].dropna()
        if not chance.empty:
            left.axhline(100 * chance.iloc[0], color="0.5", ls=":", lw=0.8)
            key.add(Line2D([], [], color="0.5", ls=":", lw=0.8), "chance")
        for marker, ls, what in (("o", "-", "mean"), ("D", "--", "median"), ("^", ":", "worst")):
            handle = Line2D([], [], color="0.3", ls="" if side_by_side else ls, marker=marker,
                            ms=_ms(0.7))  # fmt: skip
            key.add(handle, f"{what}, one block deleted")
        full = {"ls": "", "marker": "_", "ms": _ms(2.0)} if side_by_side else {"lw": 0.8}
        key.add(Line2D([], [], color="0.3", alpha=0.6, **full), "full network")
        left.set(xlabel=BLOCKS_LABEL, ylabel=ERROR_LABEL, ylim=(0, None))
        right.axhline(1.0, color="0.5", lw=0.8)
        # Two lines: on one, the label ran the panel's full height, up into the title.
        right.set(xlabel=BLOCKS_LABEL, ylabel="one block deleted:\nmean error ÷ full")
        _blocks_ticks(data, left, right)
    return fig


def plot_depth_delete_k(df: pd.DataFrame, *, style: Style = "paper") -> Figure:
    """Error against k deleted blocks, one line per network (darker = deeper), against k
    (left) and against k / n (right); stochastic depth dashed, effective-path training dotted."""
    data = _numeric(df, "depth_k")
    if data.empty:
        raise ValueError("no k-deletion curves in the depth_k table")
    data["pct"] = _percent(data["error"])
    networks = data.drop_duplicates("network")[["network", "blocks", "variant"]]
    shades = sns.color_palette("rocket_r", len(networks) + 1)[1:]
    with _two_panels(style, "depth_delete_k") as (fig, left, right, key):
        for colour, net in zip(shades, networks.itertuples(), strict=True):
            rows = data[data["network"] == net.network].sort_values("k")
            ls = _VARIANT_LINESTYLE.get(net.variant, "-")
            for ax, x in ((left, "k"), (right, "k_over_n")):
                ax.plot(rows[x], rows["pct"], color=colour, ls=ls, marker="o", ms=_ms(0.5))
            key.add(Line2D([], [], color=colour, ls=ls), f"{net.network} (n = {net.blocks})")
        left.set(xlabel="blocks deleted k", ylabel=ERROR_LABEL, ylim=(0, None))
        right.set(xlabel="share of blocks deleted k / n", ylabel=ERROR_LABEL, ylim=(0, None))
    return fig


def plot_depth_gradients(df: pd.DataFrame, *, style: Style = "paper") -> Figure:
    """Left: per network, the effective range of path lengths (95% of the gradient, a thick
    bar) beside the shortest range holding 95% of all paths (a thin bar), against blocks; at
    the paper's 54 blocks, its 5–17 as a dashed bar.
    Right: the factor by which the single-path gradient norm changes per block of length
    (below 1: it falls with length, as the paper found)."""
    data = _numeric(df, "depth").dropna(subset=["effective_lo", "effective_hi"])
    if data.empty:
        raise ValueError("no effective ranges in the depth table")
    variants = _lesioned_variants(data)
    side_by_side = _one_depth(data)  # each network has a place of its own: no shift needed
    beside = 0.15 if side_by_side else 0.35  # the paths' bar, right of the gradient's
    with _two_panels(style, "depth_gradients", side_by_side=side_by_side) as (
        fig,
        left,
        right,
        key,
    ):
        for v_i, variant in enumerate(variants):
            rows = data[data["variant"] == variant]
            colour = _colour(variant)
            shift = 0.0 if side_by_side else 0.6 * (v_i - (len(variants) - 1) / 2)
            x = _x(data, rows) + shift
            left.vlines(x, rows["effective_lo"], rows["effective_hi"], color=colour, lw=4)
            left.vlines(x + beside, rows["paths95_lo"], rows["paths95_hi"], color="0.6", lw=1.2)
            right.plot(_x(data, rows), rows["decay_per_block"], color=colour, marker="o",
                       ms=_ms(0.7), ls="" if side_by_side else "-")  # fmt: skip
            label = f"{variant}: lengths holding 95% of the gradient"
            key.add(Line2D([], [], color=colour, lw=4), label)
        key.add(Line2D([], [], color="0.6", lw=1.2), "lengths of 95% of all paths (shortest range)")
        paper_here = bool((data["blocks"] == paper.BLOCKS).any())
        if paper_here:  # the paper's own range, at its own depth (its own place side by side)
            if side_by_side:
                x = float(len(_network_order(data)))
            else:
                x = paper.BLOCKS - 0.6 * len(variants) / 2 - 0.7
            left.vlines(x, paper.EFFECTIVE_LO, paper.EFFECTIVE_HI, color="black", lw=1.2, ls="--")
            label = f"paper (ResNet-110, CIFAR-10): {paper.effective_text()}"
            key.add(Line2D([], [], color="black", lw=1.2, ls="--"), label)
        left.set(xlabel=BLOCKS_LABEL, ylabel="path length (blocks)", ylim=(0, None))
        right.axhline(1.0, color="0.5", lw=0.8)
        # Two lines, as in plot_depth_single_block: one ran up into the title.
        right.set(xlabel=BLOCKS_LABEL, ylabel="single-path norm ×,\nper block of length")
        _blocks_ticks(data, left, extra=("paper",) if paper_here and side_by_side else ())
        _blocks_ticks(data, right)
    return fig
