"""The one style of every figure, shared by ``plots``, ``depth_plots`` and ``dynamics_plots``.

Holds the figure sizes (a journal column or a page, scaled for talks), ``figure_style`` (the
seaborn context and rc settings), ``new_figure`` (an Agg figure, no pyplot state), ``legend``
(below the axes in figures we own), the variants' order and colours, and small helpers for
sizes, numbers and legends. It imports no other module of the package, so the figure modules
build on it without importing each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple

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
    if not (below and owned):
        ax.legend(handles, labels, **{"loc": loc, **kw})
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ncol in range(min(len(labels), 3), 0, -1):
        leg = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, **kw)
        if ncol == 1 or leg.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return
        leg.remove()


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
