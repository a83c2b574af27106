"""The one style of every figure, shared by ``plots``, ``depth_plots`` and ``dynamics_plots``.

Holds the figure sizes (a journal column or a page, scaled for talks), ``figure_style`` (the
seaborn context and rc settings), ``new_figure`` (an Agg figure, no pyplot state), ``legend``
(below the axes in figures we own), the variants' order and colours, and small helpers for
sizes, numbers and legends. It imports no other module of the package, so the figure modules
build on it without importing each other.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.ticker import (
    FuncFormatter,
    LogFormatterSciNotation,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

__all__ = [
    "DPI",
    "ERROR_LABEL",
    "HEIGHT_IN",
    "TALK_SCALE",
    "VARIANT_COLOUR",
    "VARIANT_ORDER",
    "WIDTH_IN",
    "Key",
    "Style",
    "Width",
    "figure_style",
    "legend",
    "ms",
    "new_figure",
    "numbers",
    "percent",
]

Style = Literal["paper", "talk"]
Width = Literal["single", "double"]

ERROR_LABEL = "test error (%)"

DPI = 150
WIDTH_IN = {"single": 3.5, "double": 7.1}  # a journal column and a full page width
HEIGHT_IN = {"single": 2.6, "double": 3.1}
# Talk figures: 1.6x wider, 1.8x taller (room for legends), seaborn's "talk" fonts 1.9x.
TALK_SCALE = (1.6, 1.8)
VARIANT_ORDER = ("residual", "plain", "stochastic depth", "effective paths")
VARIANT_COLOUR = {"residual": 0, "plain": 1, "stochastic depth": 2, "effective paths": 4}


@contextlib.contextmanager
def figure_style(style: Style = "paper") -> Iterator[None]:
    """The one style of every figure: seaborn's ``style`` context, light horizontal grid,
    no top/right spines, frameless legends and TrueType fonts in PDFs (editable text)."""
    if style not in ("paper", "talk"):
        raise ValueError(f"unknown style {style!r}: choose paper or talk")
    rc: dict[Any, Any] = {  # matplotlib types its keys as a Literal of every rc name
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.grid.axis": "y",
        "grid.color": "0.9",
        "grid.linewidth": 0.6,
        "legend.frameon": False,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "savefig.dpi": DPI,
    }
    with sns.axes_style("ticks"), sns.plotting_context(style), mpl.rc_context(rc):
        yield


def new_figure(
    style: Style,
    width: Width,
    *,
    extra_height: float = 0.0,
    ncols: int = 1,
    nrows: int = 1,
    **grid: Any,
) -> tuple[Figure, Any]:
    if width not in WIDTH_IN:
        raise ValueError(f"unknown width {width!r}: choose single or double")
    sx, sy = TALK_SCALE if style == "talk" else (1.0, 1.0)
    size = (WIDTH_IN[width] * sx, (HEIGHT_IN[width] + extra_height) * sy)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg: no display, no pyplot state
    many = ncols > 1 or nrows > 1
    return fig, fig.subplots(nrows, ncols, **grid) if many else fig.add_subplot()


def legend(
    fig: Figure,
    ax: Axes,
    handles: Sequence[Any],
    labels: Sequence[str],
    *,
    owned: bool,
    below: bool = False,
    loc: str = "best",
    title: str | None = None,
) -> None:
    """Below the axes, outside the data, in figures we own (as many columns as fit the
    figure's width, at most 3); else inside ``ax``."""
    kw: dict[str, Any] = {
        "handler_map": {tuple: HandlerTuple(ndivide=None)},
        "title": title,
        "title_fontsize": mpl.rcParams["legend.fontsize"],
        "alignment": "left",
    }
    if not labels:
        return
    if not (below and owned):
        ax.legend(handles, labels, loc=loc, **kw)  # type: ignore[call-overload]
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    fits = 0.98 * fig.bbox.width
    for ncol in range(min(len(labels), 3), 0, -1):
        leg = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, **kw)
        if leg.get_window_extent(renderer).width <= fits:
            return _room_for(fig, leg)
        leg.remove()
    # One column is still wider than the figure (cut off at both edges): wrap the labels.
    longest = max(len(line) for label in labels for line in str(label).split("\n"))
    for chars in range(longest - 1, 11, -1):
        wrapped = [_wrap(str(label), chars) for label in labels]
        leg = fig.legend(handles, wrapped, loc="outside lower center", ncol=1, **kw)
        if leg.get_window_extent(renderer).width <= fits or chars == 12:
            return _room_for(fig, leg)
        leg.remove()


#: The share of a figure's height that a legend below the axes may take before the figure
#: grows taller for it (the extra height the figures ask for is about this).
_LEGEND_SHARE = 0.3


def _room_for(fig: Figure, legend: Any) -> None:
    """Make ``fig`` taller by what a legend below the axes takes beyond ``_LEGEND_SHARE`` of
    it, so that a long legend (several models, datasets) does not squash the axes."""
    height = legend.get_window_extent(fig.canvas.get_renderer()).height  # type: ignore[attr-defined]
    spare = _LEGEND_SHARE * fig.bbox.height
    if height > spare:
        fig.set_figheight(fig.get_figheight() + (height - spare) / fig.dpi)


def _wrap(text: str, chars: int) -> str:
    """``text`` with each of its lines wrapped at ``chars`` characters (breaks kept)."""
    return "\n".join(textwrap.fill(line, chars) or line for line in text.split("\n"))


def _fit_text(text: Any, limit: float, renderer: Any, along: Literal["x", "y"]) -> None:
    """Wrap ``text`` (a matplotlib Text) until its extent ``along`` x (width) or y (height, for
    a vertical label) is at most ``limit`` pixels, or its lines are 12 characters."""
    content = text.get_text()
    if not content:
        return

    def size() -> float:
        box = text.get_window_extent(renderer)
        return box.width if along == "x" else box.height

    if size() <= limit:
        return
    longest = max(len(line) for line in content.split("\n"))
    for chars in range(longest - 1, 11, -1):
        text.set_text(_wrap(content, chars))
        if size() <= limit:
            return


def fit_texts(fig: Figure) -> Figure:
    """Wrap every axis label longer than its axes, and every title wider than its axes (or,
    with one axes, the figure) or legend wider than the figure, so that nothing is clipped at
    the canvas's edges nor runs into the next panel; returns ``fig``.

    Runs the figure's layout first (constrained layout places things only when drawn), wraps
    what is too long, and lays it out again with the wrapped texts."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width = 0.98 * fig.bbox.width
    alone = len(fig.axes) == 1
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        across = width if alone else min(width, 1.1 * box.width)
        # A little longer than the axes is fine (it overhangs the tick labels), never past the
        # canvas: the label is centred on the axes.
        middle = (box.y0 + box.y1) / 2
        room = 2 * min(middle, fig.bbox.height - middle) - 4
        tall = min(room, max(1.2 * box.height, 0.5 * fig.bbox.height))
        _fit_text(ax.yaxis.label, tall, renderer, "y")
        _fit_text(ax.xaxis.label, across, renderer, "x")
        side_titles = [getattr(ax, name, None) for name in ("_left_title", "_right_title")]
        for title in [ax.title, *(t for t in side_titles if t is not None)]:
            _fit_text(title, across, renderer, "x")
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                _fit_text(text, 0.8 * box.width, renderer, "x")
    suptitle = getattr(fig, "_suptitle", None)  # matplotlib's own, when set
    if suptitle is not None:
        _fit_text(suptitle, width, renderer, "x")
    fig.draw_without_rendering()
    return fig


def ms(factor: float = 1.0) -> float:
    """A marker size relative to the style's."""
    return factor * mpl.rcParams["lines.markersize"]


def numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def percent(values: pd.Series) -> pd.Series:
    return 100.0 * numbers(values)


@dataclass
class Key:
    """A legend being built: its handles and their labels, in order."""

    handles: list[Any] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, handle: Any, label: str) -> None:
        self.handles.append(handle)
        self.labels.append(label)


def _tick_number(value: float) -> str:
    """A tick's value as people write it: 200, 1000, 0.005; beyond, 2e-05."""
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def readable_log_axis(ax: Axes, axis: Literal["x", "y"] = "y", least: int = 3) -> None:
    """At least ``least`` labelled ticks on a log axis, whatever it spans: powers of ten where
    the axis spans enough decades, else 1-2-5 steps, else plain evenly spaced values; no
    labels on the minor ticks (matplotlib's automatic ones clash with the major labels).
    Call it once the axis's limits are final."""
    which = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    if not (lo > 0 and np.isfinite(hi)):
        return

    def count(locator: Any) -> int:
        ticks = locator.tick_values(lo, hi)
        return int(((ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))).sum())

    which.set_minor_formatter(NullFormatter())
    decades = LogLocator(base=10, numticks=12)
    if count(decades) >= least:
        which.set_major_locator(decades)
        which.set_major_formatter(LogFormatterSciNotation())
        return
    # Less than ``least`` decades: plain numbers (2×10⁻¹ beside 10⁻¹ reads badly).
    steps = LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12)
    which.set_major_locator(steps if count(steps) >= least else MaxNLocator(4, min_n_ticks=2))
    which.set_major_formatter(FuncFormatter(lambda v, _: _tick_number(v)))
