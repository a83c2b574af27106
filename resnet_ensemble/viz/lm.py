"""Figures of the language-model analyses (``experiments/lm_analyse.py``), in the paper style of
``plots``: the same style kit, palette, legends below the panels and texts fitted to the canvas.

Holds:
- ``plot_lm_lesions``: single-unit deletion, k random units deleted, adjacent swaps (perplexity)
- ``plot_lm_painters_gradients``: the Painters operations by range width, and the exact
  gradient per path length: the norm of the sum over all paths of each length, and that norm ÷
  the number of paths, which is the norm of the *mean* path gradient (paths cancel, so it is
  not the magnitude of a single path: ``plots.plot_gradient_per_length`` draws that)

Each takes the tables the script writes and returns a page-wide ``Figure``; ``plots.save_figure``
writes it as PNG and PDF.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .kit import integer_ticks
from .style import Key as _Key
from .style import Style, figure_style, fit_texts, readable_log_axis
from .style import legend as _legend
from .style import ms as _ms
from .style import new_figure as _new_figure

__all__ = ["LM_TITLES", "plot_lm_lesions", "plot_lm_painters_gradients"]

LM_TITLES = {
    "lesions": "Deleting and reordering the units of a language model",
    "painters_gradients": "Painters operations and the gradient per path length",
}
PERPLEXITY_LABEL = "test perplexity"
#: A path's length in units (attention and MLP units are the blocks of a language model).
UNITS_LENGTH_LABEL = "path length (units)"
#: The exact decomposition's two per-length measures, as the legend names them.
SUM_LABEL = "all paths of the length: norm of their summed gradient"
MEAN_PATH_LABEL = "norm of the mean path gradient (the above ÷ number of paths)"


def _colours() -> list:
    return sns.color_palette("colorblind", 10)


def _full_model(single: pd.DataFrame) -> float:
    """The full model's perplexity: the single-deletion table's baseline row."""
    base = single.loc[single["config"].astype(str) == "baseline", "perplexity"]
    if base.empty:
        raise ValueError("the single-deletion table has no baseline row (config 'baseline')")
    return float(base.iloc[0])


def plot_lm_lesions(
    single: pd.DataFrame, delete_k: pd.DataFrame, swaps: pd.DataFrame, *, style: Style = "paper"
) -> Figure:
    """Three panels of test perplexity (log scale), the full model's as a dashed line: each
    unit deleted alone (attention and MLP units coloured apart), k random units deleted (each
    draw and the median), and each pair of adjacent layers or units swapped."""
    colours = _colours()
    full = _full_model(single)
    units = single.dropna(subset=["deleted"]).copy()
    units["deleted"] = units["deleted"].astype(int)
    with figure_style(style):
        fig, (one, k_ax, swap_ax) = _new_figure(style, "double", extra_height=0.6, ncols=3)
        kind_colour = {"attention": colours[0], "mlp": colours[1]}
        bar_colours = [kind_colour.get(str(k), colours[7]) for k in units["kind"]]
        one.bar(units["deleted"], units["perplexity"], color=bar_colours, width=0.8, lw=0)
        one.set(xlabel="unit deleted", title="one unit deleted")
        draws = delete_k.groupby("k")["perplexity"].median()
        k_ax.scatter(delete_k["k"], delete_k["perplexity"], s=_ms(0.6) ** 2, alpha=0.5,
                     color=colours[0], lw=0)  # fmt: skip
        k_ax.plot(draws.index, draws.values, color=colours[0], marker="o", ms=_ms(0.7))
        k_ax.set(xlabel="units deleted (k)", title="k random units deleted")
        markers = {"layer": "o", "unit": "s"}
        for kind, marker in markers.items():
            rows = swaps[swaps["swap"] == kind]
            colour = colours[2] if kind == "layer" else colours[4]
            swap_ax.plot(rows["first"], rows["perplexity"], color=colour, marker=marker,
                         ms=_ms(0.7))  # fmt: skip
        swap_ax.set(xlabel="swapped: i and i + 1", title="adjacent swaps")
        for ax in (one, k_ax, swap_ax):
            ax.axhline(full, color="0.3", ls="--", lw=0.8, zorder=1)
            ax.set_yscale("log")
            readable_log_axis(ax)
            integer_ticks(ax)
        one.set_ylabel(PERPLEXITY_LABEL)
        key = _Key()
        key.add(Patch(facecolor=colours[0], lw=0), "attention unit (even index)")
        key.add(Patch(facecolor=colours[1], lw=0), "MLP unit (odd index)")
        key.add(Line2D([], [], color="0.3", ls="--", lw=0.8), f"full model ({full:.4g})")
        dot = Line2D([], [], color=colours[0], marker="o", ls="", alpha=0.5, ms=_ms(0.6))
        key.add(dot, "one draw of k units")
        key.add(Line2D([], [], color=colours[0], marker="o", ms=_ms(0.7)), "median over draws")
        for kind, marker in markers.items():
            colour = colours[2] if kind == "layer" else colours[4]
            key.add(Line2D([], [], color=colour, marker=marker, ms=_ms(0.7)), f"{kind}s swapped")
        fig.suptitle(LM_TITLES["lesions"])
        _legend(fig, one, key.handles, key.labels, owned=True, below=True)
        fit_texts(fig)
    return fig


def plot_lm_painters_gradients(
    painters: pd.DataFrame,
    grads: pd.DataFrame,
    *,
    full: float | None = None,
    style: Style = "paper",
) -> Figure:
    """Left: the median test perplexity of each Painters operation (Sun et al. 2024) against
    the number of middle layers it acts on (``full``: the full model's, dashed). Right: the
    exact gradient per path length at the input embeddings (log scale): the norm of the
    gradient all paths of a length carry together, and that ÷ the number of paths, the norm of
    the mean path gradient (not a single path's magnitude: paths cancel)."""
    colours = _colours()
    with figure_style(style):
        fig, (ops, grad_ax) = _new_figure(style, "double", extra_height=0.7, ncols=2)
        key = _Key()
        for i, (op, rows) in enumerate(painters.groupby("operation")):
            medians = rows.groupby(rows["stop"] - rows["start"])["perplexity"].median()
            colour = colours[i % 10]
            ops.plot(medians.index, medians.values, color=colour, marker="o", ms=_ms(0.7))
            key.add(Line2D([], [], color=colour, marker="o", ms=_ms(0.7)), f"{op}")
        if full is not None:
            ops.axhline(full, color="0.3", ls="--", lw=0.8, zorder=1)
            key.add(Line2D([], [], color="0.3", ls="--", lw=0.8), f"full model ({full:.4g})")
        ops.set_yscale("log")
        readable_log_axis(ops)
        integer_ticks(ops)
        ops.set(xlabel="middle layers in the range", ylabel="test perplexity\n(median of ranges)",
                title="Painters operations")  # fmt: skip
        per_path = grads["norm"] / grads["paths"]
        grad_ax.plot(grads["length"], grads["norm"], color="0.2", marker="o", ms=_ms(0.7))
        grad_ax.plot(grads["length"], per_path, color="0.2", ls="--", marker="s", ms=_ms(0.6))
        key.add(Line2D([], [], color="0.2", marker="o", ms=_ms(0.7)), SUM_LABEL)
        key.add(Line2D([], [], color="0.2", ls="--", marker="s", ms=_ms(0.6)), MEAN_PATH_LABEL)
        grad_ax.set_yscale("log")
        readable_log_axis(grad_ax)
        integer_ticks(grad_ax)
        grad_ax.set(xlabel=UNITS_LENGTH_LABEL, ylabel="gradient norm\n(at the input embeddings)",
                    title="gradient per path length (exact)")  # fmt: skip
        fig.suptitle(LM_TITLES["painters_gradients"])
        _legend(fig, ops, key.handles, key.labels, owned=True, below=True)
        fit_texts(fig)
    return fig
