"""The shared drawing kit of the figures: their names and titles, axis labels, line widths,
markers, shaded ranges and palettes, so every figure module draws alike."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    MaxNLocator,
)

from .style import (
    ERROR_LABEL,
    Style,
    Width,
    figure_style,
    fit_texts,
)
from .style import VARIANT_COLOUR as _VARIANT_COLOUR
from .style import ms as _ms
from .style import new_figure as _new_figure

FIGURES = (
    "fig3_single_block",
    "fig5a_delete_k",
    "fig5b_reorder",
    "fig6a_path_lengths",
    "fig6b_gradient_per_length",
    "fig6c_total_gradient",
    "fig8_stochastic_depth",
    "effective_paths_training",
    "subnetworks",
    "depth_single_block",
    "depth_delete_k",
    "depth_gradients",
    "training_dynamics",
)
TITLES = {
    "fig3_single_block": "Fig. 3 — deleting single blocks",
    "fig5a_delete_k": "Fig. 5a — deleting k blocks",
    "fig5b_reorder": "Fig. 5b — reordering blocks",
    "fig6a_path_lengths": "Fig. 6a — path lengths",
    "fig6b_gradient_per_length": "Fig. 6b — single-path gradient",
    "fig6c_total_gradient": "Fig. 6c — total gradient per length",
    "fig8_stochastic_depth": "Fig. 8 — stochastic depth, single blocks",
    "effective_paths_training": "Training on effective paths only",
    "subnetworks": "Sub-networks — error by blocks kept",
}

#: The paper's figure number that starts the title of a figure reproducing one ("Fig. 3 — ").
_NUMBER_SEP = " — "


def figure_title(name: str, numbered: bool = True) -> str:
    """The title of figure ``name`` (a key of ``TITLES``): with the paper's "Fig. N — " where
    ``numbered`` (only figures that reproduce a paper figure have one), else without it."""
    title = TITLES[name]
    if numbered or not title.startswith("Fig. ") or _NUMBER_SEP not in title:
        return title
    rest = title.split(_NUMBER_SEP, 1)[1]
    return rest[:1].upper() + rest[1:]


# Each sweep metric's axis label, and whether its values are fractions (drawn as %); another
# (a custom metric's) is drawn as it is, labelled with its name.
METRIC_AXES: dict[str, tuple[str, bool]] = {
    "error": (ERROR_LABEL, True),
    "top5": ("top-5 test error (%)", True),
    "loss": ("test loss (cross-entropy, nats)", False),
    "perplexity": ("test perplexity", False),
    "kl": ("KL from the full network (nats)", False),
}
LENGTH_LABEL = "path length (blocks)"
GRADIENT_LABEL = "gradient magnitude (L2 norm)"

SHADE = "0.88"  # shaded ranges: downsampling blocks, central / effective path lengths
# The share of the gradient that makes a range of path lengths "effective" (the paper's, and
# ``gradient_analysis``'s headline range), where a table's sidecar does not give the range.
EFFECTIVE_SHARE = 0.95

# ----------------------------------------------------------------------------------------------
# Style and figure plumbing


@contextlib.contextmanager
def seeded_jitter(seed: int = 0) -> Iterator[None]:
    """Numpy's global generator seeded for the block and restored after it: the same table
    draws the same jittered points, so a re-rendered figure is the same file."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def styled(
    draw: Callable[..., None], ax: Axes | None, style: Style, width: Width, **figure: Any
) -> Figure:
    """Run ``draw(fig, ax, owned)`` in the paper style on ``ax`` or on a new figure."""
    with figure_style(style):
        if ax is not None:
            draw(ax.figure, ax, False)
            return ax.figure  # type: ignore[return-value]
        fig, new_ax = _new_figure(style, width, **figure)
        draw(fig, new_ax, True)
        return fit_texts(fig)


def series_palette(labels: Sequence[str], variants: Mapping[str, str]) -> dict[str, Any]:
    """Colour-blind-safe colours, one per series; a variant keeps its colour in every figure."""
    colours = sns.color_palette("colorblind", 10)
    used: set[int] = set()
    out: dict[str, Any] = {}
    for label in labels:
        idx = _VARIANT_COLOUR.get(variants.get(label, ""), -1)
        if idx < 0 or idx in used:  # an unknown variant, or a second model of one variant
            free = [i for i in (3, 5, 6, 8, 9, 0, 1, 2, 4, 7) if i not in used]
            idx = free[0] if free else len(out) % 10
        used.add(idx)
        out[label] = colours[idx]
    return out


def line_width(factor: float = 1.0) -> float:
    """A line width relative to the style's (the talk context draws thicker lines)."""
    return factor * mpl.rcParams["lines.linewidth"]


def integer_ticks(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))


def dot_handle(colour: Any, size: float, *, edge: float | None = 0, **line: Any) -> Line2D:
    """A legend handle with round markers ``size`` times the style's (``edge`` None: the
    style's marker edge)."""
    return Line2D([], [], color=colour, marker="o", markersize=_ms(size), mew=edge, **line)


def line_handle(
    ax: Axes,
    data: pd.DataFrame | None,
    x: Any,
    y: Any,
    colour: Any = None,
    *,
    dots: float | None = None,
    **kw: Any,
) -> None:
    """seaborn's line plot as the figures draw it: no error bars and no legend of its own
    unless ``kw`` asks; with ``dots``, round markers that size (times the style's), no edges."""
    if dots is not None:
        kw.update(marker="o", markersize=_ms(dots), markeredgewidth=0)
    if colour is not None:
        kw["color"] = colour
    sns.lineplot(data=data, x=x, y=y, ax=ax, **{"errorbar": None, "legend": False, **kw})


def shade_span(ax: Axes, lo: float, hi: float, gid: str | None = None) -> Patch:
    """Shade the cells lo..hi (blocks or lengths) behind the data; returns a legend handle."""
    ax.axvspan(lo - 0.5, hi + 0.5, color=SHADE, lw=0, zorder=0).set_gid(gid)
    return Patch(facecolor=SHADE, lw=0)


def hline(ax: Axes, y: float, gid: str, colour: Any, ls: str, lw: float) -> Line2D:
    """A reference line across ``ax``, under the data; returns a legend handle."""
    ax.axhline(y, color=colour, ls=ls, lw=lw, zorder=1).set_gid(gid)
    return Line2D([], [], color=colour, ls=ls, lw=lw)
