"""The figure of the training dynamics: the paper's measures against the epoch of one run.

``plot_training_dynamics`` takes a "dynamics" table (``dynamics.collect_dynamics``) and returns a
page-wide figure of four panels in the paper style of ``plots``: one block deleted (mean and
median ÷ full), reordering (median error after 1, 3 and 10 swaps), the effective range (the
paper's sampled measure and the exact decomposition, beside the lengths of 95% of all paths) and
the single-path gradient's change per block of length.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..results import TABLES
from .style import ERROR_LABEL, Style, figure_style, fit_texts
from .style import legend as _legend
from .style import ms as _ms
from .style import new_figure as _new_figure
from .style import percent as _percent

__all__ = ["DYNAMICS_TITLE", "plot_training_dynamics"]

DYNAMICS_TITLE = "How the ensemble behaviour emerges in training"
EPOCH_LABEL = "epoch"
_TEXT_COLUMNS = {"model", "keep_stage_first", "checkpoint_sha256"}


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    data = df.copy()
    for column in TABLES["dynamics"].columns:
        if column in data and column not in _TEXT_COLUMNS:
            data[column] = pd.to_numeric(data[column], errors="coerce")
    return data.sort_values("epoch")


def plot_training_dynamics(df: pd.DataFrame, *, style: Style = "paper") -> Figure:
    """Four panels against the epoch: (a) one block deleted, mean and median error ÷ the full
    network's; (b) the median error after 1, 3 and 10 swaps, beside the full network's; (c) the
    lengths carrying 95% of the gradient, by the paper's sampled measure (bars) and exactly
    (band), beside the lengths of 95% of all paths (grey); (d) the factor by which the
    single-path gradient norm changes per block of length."""
    data = _numeric(df)
    if data.empty:
        raise ValueError("no epochs in the dynamics table")
    colours = sns.color_palette("colorblind", 10)
    x = data["epoch"]
    with figure_style(style):
        fig, axes = _new_figure(style, "double", extra_height=2.4, ncols=2, nrows=2)
        (deletion, swaps), (ranges, decay) = axes
        marks = {"marker": "o", "ms": _ms(0.6)}

        deletion.plot(x, data["single_mean_over_full"], color=colours[0], **marks)
        deletion.plot(x, data["single_median_over_full"], color=colours[0], ls="--", **marks)
        deletion.axhline(1.0, color="0.5", lw=0.8)
        deletion.set(ylabel="one block deleted ÷ full error", title="(a) deleting one block")
        deletion.legend(
            [Line2D([], [], color=colours[0]), Line2D([], [], color=colours[0], ls="--")],
            ["mean of all blocks", "median"],
            loc="best",
        )

        swaps.plot(x, _percent(data["full_error"]), color="0.3", lw=0.9, **marks)
        shades = sns.color_palette("rocket_r", 4)[1:]
        for shade, k in zip(shades, (1, 3, 10), strict=True):
            swaps.plot(x, _percent(data[f"swaps_{k}_median"]), color=shade, **marks)
        swaps.set(ylabel=ERROR_LABEL, ylim=(0, None), title="(b) reordering: median of the draws")
        swaps.legend(
            [Line2D([], [], color="0.3")] + [Line2D([], [], color=c) for c in shades],
            ["full network", "1 swap", "3 swaps", "10 swaps"],
            loc="best",
        )

        ranges.fill_between(x, data["paths95_lo"], data["paths95_hi"], color="0.85", lw=0)
        ranges.fill_between(x, data["exact_lo"], data["exact_hi"], color=colours[2], alpha=0.35)
        ranges.vlines(x, data["effective_lo"], data["effective_hi"], color=colours[0], lw=3)
        ranges.set(ylabel="path length (blocks)", ylim=(0, None), title="(c) effective paths")

        decay.plot(x, data["decay_per_block"], color=colours[0], **marks)
        decay.axhline(1.0, color="0.5", lw=0.8)
        decay.set(ylabel="single-path norm ×,\nper block of length", title="(d) single paths")

        for ax in (deletion, swaps, ranges, decay):
            ax.set_xlabel(EPOCH_LABEL)
            ax.set_xticks(sorted(int(e) for e in x.dropna().unique()))
        handles = [
            Line2D([], [], color=colours[0], lw=3),
            Line2D([], [], color=colours[2], alpha=0.5, lw=6),
            Line2D([], [], color="0.85", lw=6),
        ]
        labels = [
            "(c) 95% of the gradient: the paper's sampled measure",
            "(c) 95% of the gradient: exact decomposition",
            "(c) the lengths of 95% of all paths",
        ]
        fig.suptitle(DYNAMICS_TITLE)
        _legend(fig, ranges, handles, labels, owned=True, below=True)
        fit_texts(fig)
    return fig
