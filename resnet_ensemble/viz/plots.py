"""Figures from results tables: the paper's plots, drawn with seaborn, saved as PNG and PDF.

Plotting only reads tables; it never computes an experiment. The kinds of table and their columns
are ``results.TABLES``'. A sweep is drawn in its own metric (the column named after it: error,
top5, loss, ...); errors in the tables are fractions and are drawn as percentages.

Holds:
- ``load_table`` / ``load_tables`` / ``find_tables``: read results CSVs and tell their kind (the
  kinds are ``results.TABLES``) from the sidecar's ``table`` key, or, without one, from the
  columns; a table lacking columns is refused with one line; folders are searched for tables
- ``figure_style``: the one paper style (seaborn "paper" or "talk" context, colour-blind palette),
  defined with the other shared figure plumbing in ``plot_style``
- one function per figure, each taking DataFrames and returning a ``Figure``:
  ``plot_single_block`` (paper Fig. 3), ``plot_delete_k`` (Fig. 5a), ``plot_reorder``
  (Fig. 5b), ``plot_path_lengths`` (Fig. 6a), ``plot_gradient_per_length`` (Fig. 6b),
  ``plot_total_gradient`` (Fig. 6c), ``plot_stochastic_depth`` (Fig. 8), ``plot_training``
  (training on effective paths only) and ``plot_subnetworks`` (error by blocks kept)
- ``check_values``: a table's plotted measurements checked against their ranges (an error
  from 0 to 1, a loss finite and non-negative), refusing the table and naming the lines
- ``render_figure`` / ``save_figure``: PNG at 150 dpi and vector PDF, rendered in memory, then
  each written atomically; ``plot_all`` renders every figure before it writes any
- ``plot_all``: every figure the given tables allow, named after the paper figure (a sweep in
  another metric than error adds the metric to the name: ``fig3_single_block_top5``)
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

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

from ..outputs import claim_outputs
from ..paths import parse_blocks, shortest_range_holding, summarize_paths
from ..results import (
    TABLES,
    SweepKind,
    SweepMetric,
    TableKind,
    as_flags,
    atomic_write_bytes,
    chance_level,
    check_writable,
    is_baseline,
    read_sidecar,
    read_table,
    sweep_metric,
    table_kind,
)
from .style import (
    DPI,
    ERROR_LABEL,
    Style,
    Width,
    figure_style,
    fit_texts,
    readable_log_axis,
)
from .style import VARIANT_COLOUR as _VARIANT_COLOUR
from .style import VARIANT_ORDER as _VARIANT_ORDER
from .style import WIDTH_IN as _WIDTH_IN
from .style import Key as _Key
from .style import legend as _legend
from .style import ms as _ms
from .style import new_figure as _new_figure
from .style import numbers as _numbers
from .style import percent as _percent

__all__ = [
    "FIGURES",
    "TABLE_COLUMNS",
    "TITLES",
    "LoadedTable",
    "figure_title",
    "find_tables",
    "figure_style",
    "fit_texts",
    "load_table",
    "load_tables",
    "plot_all",
    "plot_delete_k",
    "plot_gradient_per_length",
    "plot_path_lengths",
    "plot_reorder",
    "plot_single_block",
    "plot_stochastic_depth",
    "plot_subnetworks",
    "plot_total_gradient",
    "plot_training",
    "readable_log_axis",
    "save_figure",
]

Format = Literal["png", "pdf", "svg"]
# The columns a figure needs from each kind of table (``results.TABLES``); others are drawn
# when present.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {kind: spec.required for kind, spec in TABLES.items()}

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
_METRIC_AXES: dict[str, tuple[str, bool]] = {
    "error": (ERROR_LABEL, True),
    "top5": ("top-5 test error (%)", True),
    "loss": ("test loss (cross-entropy, nats)", False),
    "perplexity": ("test perplexity", False),
    "kl": ("KL from the full network (nats)", False),
}
LENGTH_LABEL = "path length (blocks)"
GRADIENT_LABEL = "gradient magnitude (L2 norm)"

_SHADE = "0.88"  # shaded ranges: downsampling blocks, central / effective path lengths
# The share of the gradient that makes a range of path lengths "effective" (the paper's, and
# ``gradient_analysis``'s headline range), where a table's sidecar does not give the range.
_EFFECTIVE_SHARE = 0.95


# ----------------------------------------------------------------------------------------------
# Reading tables


@dataclass
class LoadedTable:
    """One results table: where it came from, its kind, its rows and its sidecar."""

    path: Path
    kind: TableKind
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def _missing(kind: str, columns: Sequence[str]) -> list[str]:
    return TABLES[kind].missing(columns)


def _kinds_text() -> str:
    kinds = list(TABLES)
    return f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def load_table(path: str | Path) -> LoadedTable:
    """Read one results CSV and tell its kind: the sidecar's ``table`` key where it names a
    known kind, else the kind whose required columns the table has.

    Raises:
        ValueError: one line naming the file, the columns it lacks and the kinds it could be.
    """
    path = Path(path)
    frame = read_table(path)
    meta = read_sidecar(path)
    columns = list(frame.columns)
    named = meta.get("table")
    if named in TABLES:
        missing = _missing(named, columns)
        if missing:
            raise ValueError(
                f"{path}: a {named} table (per its sidecar) but it lacks the columns {missing}"
            )
    kind = table_kind(columns, meta)  # the most specific kind wins, should two ever fit
    if kind is not None:
        check_values(path, kind, frame, meta)
        return LoadedTable(path, kind, frame, meta)
    overlap = {k: len(set(TABLE_COLUMNS[k]) & set(columns)) for k in TABLE_COLUMNS}
    best = max(overlap.values())
    if best == 0:
        raise ValueError(
            f"{path}: not a results table the plots can read: it has the columns {columns}, "
            f"none of those of a {_kinds_text()} table"
        )
    near = [k for k in TABLE_COLUMNS if overlap[k] == best]
    lacks = "; ".join(f"as a {k} table it lacks {_missing(k, columns)}" for k in near)
    raise ValueError(f"{path}: missing columns: {lacks} (it could be a {' or '.join(near)} table)")


#: What a plotted measurement may hold, per kind of table: (low, high, NaN allowed). A value
#: outside it (a negative or infinite error, text where a number belongs) would be drawn
#: without a word, so the table is refused instead, naming the lines.
_UNIT = (0.0, 1.0, False)
_NONNEGATIVE = (0.0, math.inf, False)
_MEASURED = (0.0, math.inf, True)  # NaN: not measured (a skipped estimator)
_VALUE_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "paths": {"paths": _NONNEGATIVE, "fraction": _UNIT},
    "gradients": {c: _MEASURED for c in ("exact_norm", "sampled_mean", "rms_single_path")},
    "subnetworks": {"error": _UNIT},
    "history": {"train_error": (0.0, 1.0, True), "test_error": (0.0, 1.0, True)},
    "training": {"train_error": (0.0, 1.0, True), "test_error": (0.0, 1.0, True)},
    # A network analysed only for its gradients has no deletion errors: NaN.
    "depth": {"full_error": (0.0, 1.0, True), "single_mean": (0.0, 1.0, True)},
    "depth_k": {"error": _UNIT},
    "dynamics": {"full_error": (0.0, 1.0, True)},
}
#: A sweep's value column, by its metric: error rates are fractions, losses non-negative,
#: perplexities at least 1.
_METRIC_RANGES = {
    "error": _UNIT,
    "top5": _UNIT,
    "loss": _NONNEGATIVE,
    "kl": _NONNEGATIVE,
    "perplexity": (1.0, math.inf, False),
}


class BadValues(ValueError):
    """A table of a known kind whose measurements cannot be drawn: refused, never skipped."""


def _range_text(lo: float, hi: float) -> str:
    return f"from {lo:g} to {hi:g}" if math.isfinite(hi) else f"a finite number of at least {lo:g}"


def check_values(path: Path, kind: str, frame: pd.DataFrame, meta: Mapping[str, Any]) -> None:
    """Refuse a table whose plotted measurements are not numbers in their range (an infinite,
    negative or non-numeric error), naming the column and the CSV lines (the header is line 1).

    Raises:
        ValueError: one line naming the file, the column, the allowed range and the lines.
    """
    ranges = dict(_VALUE_RANGES.get(kind, {}))
    if kind == "sweep":
        metric = sweep_metric(frame.columns, meta)
        if metric in _METRIC_RANGES:
            ranges[metric] = _METRIC_RANGES[metric]
    for column, (lo, hi, nan_ok) in ranges.items():
        if column not in frame.columns:
            continue
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = ~values.between(lo, hi) & ~(values.isna() & raw.isna() & nan_ok)
        if not bad.any():
            continue
        lines = [int(i) + 2 for i in frame.index[bad.to_numpy()][:5]]
        shown = ", ".join(str(raw[bad].iloc[i])[:12] for i in range(min(3, int(bad.sum()))))
        more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        several = bad.sum() > 1
        raise BadValues(
            f"{path}: {column} must be {_range_text(lo, hi)}, but line{'s' if several else ''} "
            f"{', '.join(map(str, lines))}{more} hold{'' if several else 's'} {shown}; fix or "
            "remove those rows"
        )


def load_tables(paths: Sequence[str | Path]) -> list[LoadedTable]:
    """``load_table`` for every path, refusing the first bad one."""
    return [load_table(p) for p in paths]


def find_tables(places: Sequence[str | Path]) -> list[Path]:
    """The CSV files among ``places``: a file as given, a folder searched through (sorted,
    hidden files and folders left out)."""
    found: list[Path] = []
    for place in map(Path, places):
        if not place.is_dir():
            found.append(place)
            continue
        found += sorted(
            p
            for p in place.rglob("*.csv")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(place).parts)
        )
    return list(dict.fromkeys(found))


def _history_as_training(table: LoadedTable) -> pd.DataFrame:
    """A training run's history (``train``'s CKPT.history.csv) as a training table: its variant
    is the sidecar's, else the checkpoint's name."""
    name = table.path.name.removesuffix(".csv").removesuffix(".history")
    variant = str(table.meta.get("variant") or name)
    columns = [c for c in TABLES["training"].columns if c != "variant" and c in table.frame]
    return table.frame[columns].assign(variant=variant)[["variant", *columns]]


# ----------------------------------------------------------------------------------------------
# Style and figure plumbing


@contextlib.contextmanager
def _seeded_jitter(seed: int = 0) -> Iterator[None]:
    """Numpy's global generator seeded for the block and restored after it: the same table
    draws the same jittered points, so a re-rendered figure is the same file."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _styled(
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


def _palette(labels: Sequence[str], variants: Mapping[str, str]) -> dict[str, Any]:
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


def _lw(factor: float = 1.0) -> float:
    """A line width relative to the style's (the talk context draws thicker lines)."""
    return factor * mpl.rcParams["lines.linewidth"]


def _integer_ticks(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))


def _dot(colour: Any, size: float, *, edge: float | None = 0, **line: Any) -> Line2D:
    """A legend handle with round markers ``size`` times the style's (``edge`` None: the
    style's marker edge)."""
    return Line2D([], [], color=colour, marker="o", markersize=_ms(size), mew=edge, **line)


def _line(
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


def _shade(ax: Axes, lo: float, hi: float, gid: str | None = None) -> Patch:
    """Shade the cells lo..hi (blocks or lengths) behind the data; returns a legend handle."""
    ax.axvspan(lo - 0.5, hi + 0.5, color=_SHADE, lw=0, zorder=0).set_gid(gid)
    return Patch(facecolor=_SHADE, lw=0)


def _hline(ax: Axes, y: float, gid: str, colour: Any, ls: str, lw: float) -> Line2D:
    """A reference line across ``ax``, under the data; returns a legend handle."""
    ax.axhline(y, color=colour, ls=ls, lw=lw, zorder=1).set_gid(gid)
    return Line2D([], [], color=colour, ls=ls, lw=lw)


# ----------------------------------------------------------------------------------------------
# Sweeps: Fig. 3, 5a, 5b, 8


@dataclass(frozen=True)
class _Measure:
    """The metric a sweep figure draws: the table's column, the axis label, and whether its
    fractions are drawn as percentages."""

    column: str
    label: str
    percent: bool

    @classmethod
    def of(cls, df: pd.DataFrame, metric: str | None) -> _Measure:
        column = metric or sweep_metric(df.columns)
        if column is None or column not in df:
            raise ValueError(
                f"no metric column to plot in the sweep table (it has {list(df.columns)}): "
                "expected one named after the metric (error, top5, loss, ...)"
            )
        label, percent = _METRIC_AXES.get(column, (column, False))
        return cls(column, label, percent)

    def values(self, frame: pd.DataFrame) -> pd.Series:
        return _percent(frame[self.column]) if self.percent else _numbers(frame[self.column])

    def text(self, value: float) -> str:
        return f"{value:.3g}{'%' if self.percent else ''}"

    def chance(self, num_classes: int | None) -> float | None:
        """What guessing scores, in the figure's units (``results.chance_level``)."""
        level = chance_level(self.column, num_classes)
        return None if level is None else 100.0 * level if self.percent else level


def _prepare_sweep(
    df: pd.DataFrame, metric: str | None = None
) -> tuple[pd.DataFrame, dict[str, str], _Measure]:
    """Add ``series`` (the variant; with the model where one variant has several), numeric
    columns and ``value`` (the metric as drawn); return the frame, series -> variant and the
    metric."""
    measure = _Measure.of(df, metric)
    df = df.copy()
    variant = df["variant"].fillna("").astype(str) if "variant" in df else pd.Series("", df.index)
    model = df["model"].fillna("").astype(str) if "model" in df else pd.Series("", df.index)
    series = variant.where(variant != "", model).replace("", "network")
    for v in variant.unique():
        rows = variant == v
        if v and model[rows].nunique() > 1:
            series[rows] = v + " (" + model[rows] + ")"
    df["series"] = _on_dataset(series, df)
    df["value"] = measure.values(df)
    df["is_baseline"] = is_baseline(df)
    for col in ("k", "kendall_tau"):
        df[col] = _numbers(df[col])
    variants = dict(zip(df["series"], variant, strict=True))
    return df, variants, measure


def _series_order(labels: Sequence[str], variants: Mapping[str, str]) -> list[str]:
    def key(label: str) -> tuple[int, str]:
        v = variants.get(label, "")
        return (_VARIANT_ORDER.index(v) if v in _VARIANT_ORDER else len(_VARIANT_ORDER), label)

    return sorted(set(labels), key=key)


def _in_sweep(df: pd.DataFrame, sweep: SweepKind) -> pd.Series:
    return df["sweep"].astype(str) == sweep


def _baselines(df: pd.DataFrame, sweep: SweepKind) -> dict[str, float]:
    """Full-network value per series: the baseline row of this sweep, else of any sweep."""
    out: dict[str, float] = {}
    base = df[df["is_baseline"]]
    for label, rows in base.groupby("series", sort=False):
        own = rows[_in_sweep(rows, sweep)]
        pick = own if len(own) else rows
        value = pick["value"].dropna()
        if len(value):
            out[str(label)] = float(value.iloc[0])
    return out


def _lesioned_variants(df: pd.DataFrame, sweep: SweepKind) -> set[str]:
    rows = df[_in_sweep(df, sweep) & ~is_baseline(df)]
    return set(rows["variant"].fillna("").astype(str)) if "variant" in rows else set()


@dataclass
class _Lesions:
    """A sweep's lesioned rows, the same with each series' full network prepended, and the
    series' order and colours."""

    rows: pd.DataFrame
    points: pd.DataFrame
    order: list[str]
    colours: dict[str, Any]
    measure: _Measure

    @property
    def by_series(self) -> dict[str, Any]:
        """seaborn's arguments for a colour per series, in order."""
        return {"hue": "series", "hue_order": self.order, "palette": self.colours}


def _lesions(
    df: pd.DataFrame,
    sweep: SweepKind,
    x: str,
    baseline_at: Mapping[str, float],
    what: str,
    metric: str | None,
) -> _Lesions:
    """The rows of ``sweep`` with an ``x`` and a value, and the full network at
    ``baseline_at`` (k = 0; for a reorder also tau = 1)."""
    data, series_variant, measure = _prepare_sweep(df, metric)
    rows = data[_in_sweep(data, sweep) & ~data["is_baseline"]].dropna(subset=[x, "value"])
    if rows.empty:
        raise ValueError(f"no {what} to plot (sweep {sweep!r} rows)")
    baselines = _baselines(data[data["series"].isin(rows["series"])], sweep)
    zero = pd.DataFrame(
        {"series": list(baselines), **baseline_at, "value": list(baselines.values())}
    )
    points = pd.concat([zero, rows[list(zero.columns)]], ignore_index=True)
    order = _series_order(points["series"].unique(), series_variant)
    return _Lesions(rows, points, order, _palette(order, series_variant), measure)


def plot_single_block(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    variants: Sequence[str] | None = None,
    num_classes: int | None = None,
    metric: SweepMetric | None = None,
    title: str = TITLES["fig3_single_block"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 3: test error with each single block deleted, one series per variant.

    Args:
        df: sweep rows (``SWEEP_COLUMNS``); those with sweep "single" are drawn, the baseline
            row (config "baseline") as a dashed line in the series' colour.
        variants: only these variants (default: all present).
        num_classes: draws chance level (what guessing scores: for error 100 - 100 /
            num_classes %) as a dotted line, where some value reaches half of it (else it
            would squash small differences).
        metric: the column to draw (default: the table's metric column, ``error`` for top-1).
    Returns:
        The figure; downsampling blocks get a diamond marker and a shaded band.
    """
    data, series_variant, measure = _prepare_sweep(df, metric)
    data = data[_in_sweep(data, "single")]
    if variants is not None:
        data = data[data["variant"].astype(str).isin(list(variants))]
    lesions = data[~data["is_baseline"]].copy()
    lesions["block"] = _numbers(lesions["deleted"])
    lesions = lesions.dropna(subset=["block", "value"])
    if lesions.empty:
        raise ValueError("no single-block deletions to plot (sweep 'single' rows)")
    lesions["down"] = as_flags(lesions["downsampling"])
    order = _series_order(lesions["series"].unique(), series_variant)
    colours = _palette(order, series_variant)
    baselines = _baselines(data, "single")

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        for block in sorted(set(lesions.loc[lesions["down"], "block"])):
            _shade(ax, block, block)
        key = _Key()
        # Downsampling blocks: a diamond over the series' marker.
        diamonds = dict(marker="D", s=_ms(1.1) ** 2, edgecolor="black", linewidth=_lw(0.5))
        diamonds.update(zorder=4, legend=False)
        for label in order:
            rows = lesions[lesions["series"] == label].sort_values("block")
            c = colours[label]
            _line(ax, rows, "block", "value", c, dots=0.75, linewidth=_lw())
            down = rows[rows["down"]]
            if len(down):
                sns.scatterplot(data=down, x="block", y="value", ax=ax, color=c, **diamonds)
            key.add(_dot(c, 0.75), label)
            if label in baselines:
                _hline(ax, baselines[label], f"baseline:{label}", c, "--", _lw(0.85))
        if baselines:
            key.add(Line2D([], [], color="0.35", ls="--", lw=_lw(0.85)), "full network")
        if lesions["down"].any():
            diamond = Line2D([], [], ls="", marker="D", color="0.6", mec="black", mew=_lw(0.5))
            key.add((Patch(facecolor=_SHADE, lw=0), diamond), "downsampling block")
        chance = measure.chance(num_classes)
        # Chance level only where a value comes near it, lest it squash small differences.
        if chance is not None and lesions["value"].max() >= chance / 2:
            handle = _hline(ax, chance, "chance", "0.3", ":", _lw())
            key.add(handle, f"chance ({measure.text(chance)})")
        ax.set_ylim(bottom=0)
        ax.set_xlim(lesions["block"].min() - 0.7, lesions["block"].max() + 0.7)
        _integer_ticks(ax)
        ax.set(xlabel="deleted block (index)", ylabel=measure.label, title=title)
        _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)

    return _styled(draw, ax, style, width, extra_height=0.5)


def plot_stochastic_depth(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    num_classes: int | None = None,
    metric: SweepMetric | None = None,
    title: str = TITLES["fig8_stochastic_depth"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 8: single-block deletion, the residual network against stochastic depth.

    Args:
        df: sweep rows; those of variants "residual" and "stochastic depth" are drawn.
    """
    return plot_single_block(
        df,
        ax,
        variants=("residual", "stochastic depth"),
        num_classes=num_classes,
        metric=metric,
        title=title,
        style=style,
        width=width,
    )


def plot_delete_k(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    metric: SweepMetric | None = None,
    title: str = TITLES["fig5a_delete_k"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 5a: error (or the table's metric) against the number k of blocks deleted
    together.

    Args:
        df: sweep rows; those with sweep "multi" give the mean and a ± s.d. band over the
            samples at each k, and the baseline row gives k = 0.
    """
    multi = _lesions(df, "multi", "k", {"k": 0.0}, "multi-block deletions", metric)
    order, colours = multi.order, multi.colours
    samples = int(multi.rows.groupby(["series", "k"]).size().max())

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        band = {"errorbar": "sd", "err_kws": {"alpha": 0.2, "linewidth": 0}}
        _line(ax, multi.points, "k", "value", dots=0.85, linewidth=_lw(), **band, **multi.by_series)
        ax.set_ylim(bottom=0)
        _integer_ticks(ax)
        ax.set(xlabel="blocks deleted (k)", ylabel=multi.measure.label)
        ax.set_title(title)
        band = f"mean ± s.d. over {samples} samples" if samples > 1 else None
        handles = [_dot(colours[s], 0.85) for s in order]
        _legend(fig, ax, handles, order, owned=owned, loc="upper left", title=band)

    return _styled(draw, ax, style, width)


def plot_reorder(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    metric: SweepMetric | None = None,
    title: str = TITLES["fig5b_reorder"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 5b: error (or the table's metric) against the Kendall tau of the block order.

    Every configuration is a faint point; the line joins, per number of swaps, the mean tau and
    the mean error, with a ± s.d. band of the error; the dashed line with diamonds gives the
    median error in bins of tau (the authors report medians, which a few fatal draws do not
    pull up). The x axis runs from tau = 1 (the original order) on the left, down to the right,
    so error rises left to right as in Fig. 5a.

    Args:
        df: sweep rows; those with sweep "reorder", and the baseline row at tau = 1.
    """
    swaps = _lesions(
        df, "reorder", "kendall_tau", {"k": 0.0, "kendall_tau": 1.0}, "reordered networks", metric
    )
    points, order, colours = swaps.points, swaps.order, swaps.colours
    means = (
        points.groupby(["series", "k"])
        .agg(tau=("kendall_tau", "mean"), err=("value", "mean"), sd=("value", "std"))
        .reset_index()
        .fillna({"sd": 0.0})
    )

    medians = _medians_in_tau_bins(points)

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        faint = {"s": _ms(0.65) ** 2, "alpha": 0.45, "linewidth": 0, "legend": False}
        sns.scatterplot(data=points, x="kendall_tau", y="value", ax=ax, **faint, **swaps.by_series)
        for label in order:
            m = means[means["series"] == label].sort_values("tau")
            c = colours[label]
            ax.fill_between(
                m["tau"], m["err"] - m["sd"], m["err"] + m["sd"], color=c, alpha=0.2, lw=0
            )
            _line(ax, m, "tau", "err", c, dots=0.85, linewidth=_lw(), sort=True)
            b = medians[medians["series"] == label]
            ax.plot(b["tau"], b["median"], color=c, ls="--", lw=_lw(0.8), marker="D", ms=_ms(0.6))
        ax.invert_xaxis()
        ax.set_ylim(bottom=0)
        ax.set(xlabel="Kendall τ of the block order", ylabel=swaps.measure.label)
        ax.set_title(title)
        handles = [_dot(colours[s], 0.85) for s in order]
        handles.append(_dot(colours[order[0]], 0.65, edge=None, ls="", alpha=0.6))
        handles.append(Line2D([], [], color="0.3", ls="--", marker="D", ms=_ms(0.6)))
        labels = [*order, "one configuration", "median in bins of τ"]
        heading = "mean ± s.d. per swap count"
        _legend(fig, ax, handles, labels, owned=owned, loc="best", title=heading)

    return _styled(draw, ax, style, width)


def _medians_in_tau_bins(points: pd.DataFrame, bins: int = 8, least: int = 3) -> pd.DataFrame:
    """Per series, the median value in ``bins`` equal-width bins of Kendall tau (from the lowest
    tau drawn to 1), at the median tau of each bin; bins of fewer than ``least`` draws are left
    out. Columns: series, tau, median, count."""
    rows = points[points["k"] > 0]
    if rows.empty:
        return pd.DataFrame(columns=["series", "tau", "median", "count"])
    edges = np.linspace(float(rows["kendall_tau"].min()), 1.0, bins + 1)
    binned = rows.assign(bin=pd.cut(rows["kendall_tau"], edges, include_lowest=True))
    out = (
        binned.groupby(["series", "bin"], observed=True)
        .agg(tau=("kendall_tau", "median"), median=("value", "median"), count=("value", "size"))
        .reset_index()
    )
    return out[out["count"] >= least].drop(columns="bin").sort_values(["series", "tau"])


# ----------------------------------------------------------------------------------------------
# Paths and gradients: Fig. 6a, 6b, 6c


def plot_path_lengths(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    share: float = 0.95,
    lo: int | None = None,
    hi: int | None = None,
    title: str = TITLES["fig6a_path_lengths"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 6a: the share of the 2^n paths at each length, the central range shaded.

    Args:
        df: a paths table (``length``, ``fraction``; ``model`` optional).
        share, lo, hi: the shaded range (the paths sidecar's); without ``lo``/``hi`` it is the
            shortest range of lengths holding ``share`` of the paths.
    """
    data = df.copy()
    data["length"] = _numbers(data["length"])
    data["pct"] = _percent(data["fraction"])
    data = data.dropna(subset=["length", "pct"])
    if data.empty:
        raise ValueError("no path lengths to plot")
    models = data["model"].astype(str).unique() if "model" in data else np.array([""])
    several = len(models) > 1
    summary = summarize_paths(int(data["length"].max()), share) if not several else None
    if summary is not None and (lo is None or hi is None):
        lo, hi = summary.lo, summary.hi

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        colours = sns.color_palette("colorblind", 10)
        kw: dict[str, Any] = (
            {"hue": "model", "palette": "colorblind"} if several else {"color": colours[0]}
        )
        sns.barplot(
            data=data,
            x="length",
            y="pct",
            native_scale=True,
            ax=ax,
            width=0.85,
            linewidth=0,
            errorbar=None,
            legend=several,
            **kw,
        )
        if summary is not None:
            held = data.loc[data["length"].between(lo, hi), "pct"].sum()
            handle = _shade(ax, lo, hi, "path range")
            label = (
                f"{100 * share:.3g}% of paths: lengths {lo}–{hi} ({held:.1f}%);\n"
                f"as mean ± {NormalDist().inv_cdf(0.5 + share / 2):.2f} sd: "
                f"{summary.normal_lo}–{summary.normal_hi} ({100 * summary.normal_fraction:.1f}%)"
            )
            _legend(fig, ax, [handle], [label], owned=owned, below=True)
        ax.set_ylim(bottom=0)
        _integer_ticks(ax)
        ax.set(xlabel=LENGTH_LABEL, ylabel="share of paths (%)", title=title)

    return _styled(draw, ax, style, width, extra_height=0.25)


_GRADIENT_NUMBERS = (
    "length",
    "num_paths",
    "exact_norm",
    "exact_norm_sem",
    "sampled_mean",
    "sampled_std",
    "sampled_sem",
    "sampled_total",
    "rms_single_path",
)


def _gradient_frame(df: pd.DataFrame) -> pd.DataFrame:
    data = df.copy()
    for col in _GRADIENT_NUMBERS:
        data[col] = _numbers(data[col]) if col in data else np.nan
    data["model"] = data["model"].fillna("").astype(str) if "model" in data else ""
    data["model"] = _on_dataset(data["model"], data)
    return data.dropna(subset=["length"]).sort_values(["model", "length"])


def _positive(x: pd.Series, y: pd.Series) -> tuple[pd.Series, pd.Series]:
    keep = y.notna() & (y > 0) & np.isfinite(y)
    return x[keep], y[keep]


_AT_SHORT = {"image": "at the image", "blocks": "at the first block's input"}
_NORM_SHORT = {"batch": "batch norm", "per_image": "mean per-image norm"}


def gradient_axis_label(data: pd.DataFrame, what: str = "gradient norm") -> str:
    """``what``, and where and how it was measured (the table's ``measured_at`` and ``norm``
    columns; tables from before they existed measured at the image, with the batch norm)."""

    def one(col: str, default: str, names: Mapping[str, str]) -> str:
        values = data[col].dropna().astype(str).unique() if col in data else [default]
        return "/".join(names.get(v, v) for v in sorted(values)) if len(values) else default

    at = one("measured_at", "image", _AT_SHORT)
    norm = one("norm", "batch", _NORM_SHORT)
    return f"{what}\n({at}; {norm})"


def _per_model(data: pd.DataFrame, second: int) -> Iterator[tuple[pd.DataFrame, Any, Any, str]]:
    """Each model's rows, the colours of its two measures and its legend prefix. With several
    models each has a colour (its measures told apart by line style); with one, each measure
    has one (the first colour, and colour ``second``)."""
    models = list(data["model"].unique())
    several = len(models) > 1
    colours = sns.color_palette("colorblind", max(3, len(models)))
    for i, model in enumerate(models):
        first, other = (colours[i], colours[i]) if several else (colours[0], colours[second])
        prefix = f"{model}: " if several and model else ""
        yield data[data["model"] == model].copy(), first, other, prefix


def _by_length(fig: Figure, ax: Axes, key: _Key, owned: bool, ylabel: str, title: str) -> None:
    """A gradient figure's finish: path lengths along x, its title, the legend below."""
    _integer_ticks(ax)
    ax.set(xlabel=LENGTH_LABEL, ylabel=ylabel, title=title)
    _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)


def _banded(ax: Axes, band: tuple[Any, Any, Any], x: Any, y: Any, colour: Any) -> Line2D:
    """A measure's line with round markers over its error band (x, low, high); returns a
    legend handle for the line."""
    ax.fill_between(*band, color=colour, alpha=0.25, lw=0)
    _line(ax, None, x, y, colour, dots=0.65)
    return _dot(colour, 0.65, edge=None)


def plot_gradient_per_length(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str = TITLES["fig6b_gradient_per_length"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 6b: the gradient magnitude of a single path against its length, log scale.

    Draws the single-path measures the table holds: the paper's sampled mean (± s.e.m. band,
    else ± s.d.) and the sign estimator's root mean square. The exact decomposition's
    per-length norm divided by the number of paths is *not* a single path's magnitude (it is
    the norm of the mean path gradient, which cancellation makes far smaller) and is not drawn.

    Args:
        df: a gradients table (``length``, ``num_paths`` and ``sampled_mean`` with
            ``sampled_sem``/``sampled_std``, and/or ``rms_single_path``).
    """
    data = _gradient_frame(df)
    has = {c: bool(data[c].gt(0).any()) for c in ("sampled_mean", "rms_single_path")}
    if not any(has.values()):
        raise ValueError(
            "no single-path gradient magnitudes to plot (sampled_mean or rms_single_path)"
        )

    drawn = [data[c][data[c] > 0] for c in ("sampled_mean", "rms_single_path") if has[c]]
    # A band's lower edge where mean - error reaches 0 or nearly (log axis): a decade below
    # the smallest value drawn, not 1e-20.
    floor = float(pd.concat(drawn).min()) / 10

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        key = _Key()
        for rows, sampled_colour, rms_colour, prefix in _per_model(data, 2):
            x = rows["length"]
            if has["sampled_mean"] and rows["sampled_mean"].gt(0).any():
                spread = "sampled_sem" if rows["sampled_sem"].notna().any() else "sampled_std"
                mean, err = rows["sampled_mean"], rows[spread].fillna(0.0)
                low = (mean - err).clip(lower=floor)
                line = _banded(ax, (x, low, mean + err), *_positive(x, mean), sampled_colour)
                band = "s.e.m." if spread == "sampled_sem" else "s.d."
                patch = Patch(facecolor=sampled_colour, alpha=0.25, lw=0)
                key.add((patch, line), f"{prefix}sampled mean ± {band}")
            if has["rms_single_path"] and rows["rms_single_path"].gt(0).any():
                _line(ax, None, *_positive(x, rows["rms_single_path"]), rms_colour, ls="--")
                rms = Line2D([], [], color=rms_colour, ls="--")
                key.add(rms, f"{prefix}root mean square (sign estimator)")
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], floor))
        readable_log_axis(ax)
        ax.grid(True, which="major", axis="y")
        ylabel = gradient_axis_label(data, "single-path gradient norm")
        _by_length(fig, ax, key, owned, ylabel, title)

    return _styled(draw, ax, style, width, extra_height=0.4)


#: What the effective range of Fig. 6c holds a share of, by the measure it was taken from.
_RANGE_MEASURES = {"sampled": "the paper's sampled measure", "exact": "the exact norms"}


def _shaded_range(
    data: pd.DataFrame,
    lo: float | None,
    hi: float | None,
    share: float | None,
    measure_name: Literal["sampled", "exact"] | None = None,
) -> tuple[int, int, float | None, str] | None:
    """The effective range to shade, its share of the gradient and the measure it holds that
    share of ("sampled" or "exact"). Given (the sidecar's), as given; else, for one model, the
    shortest range of lengths holding 95% of the table's per-length gradient
    (``paths.shortest_range_holding`` over the sampled totals where sampled, else the exact
    norms: ``gradient_analysis``'s headline range)."""
    if measure_name is None:
        measure_name = "sampled" if data["total"].gt(0).any() else "exact"
    measure = data["total"] if measure_name == "sampled" else data["exact_norm"]
    if lo is None or hi is None:
        if data["model"].nunique() > 1 or not measure.gt(0).any():
            return None
        lengths = data["length"].astype(int).tolist()
        first, last, held = shortest_range_holding(measure.fillna(0.0).tolist(), _EFFECTIVE_SHARE)
        return lengths[first], lengths[last], held if share is None else share, measure_name
    if share is None and measure.gt(0).any():
        share = float(measure[data["length"].between(lo, hi)].sum() / measure.sum())
    return int(lo), int(hi), share, measure_name


def plot_total_gradient(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    effective_lo: float | None = None,
    effective_hi: float | None = None,
    effective_share: float | None = None,
    effective_measure: Literal["sampled", "exact"] | None = None,
    title: str = TITLES["fig6c_total_gradient"],
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """Paper Fig. 6c: how the total gradient magnitude is shared among path lengths.

    Both measures are drawn as a share of their own total, so that they sit on one scale: the
    paper's, sampled mean single-path norm × number of paths (± s.e.m. × paths), and the exact
    norm of the gradient that all paths of a length carry together (paths can cancel, so its
    shape differs). The effective range is shaded, and the legend says of which measure it
    holds the share.

    Args:
        df: a gradients table (``length``, ``num_paths``, ``sampled_mean`` or
            ``sampled_total``, ``exact_norm``).
        effective_lo, effective_hi, effective_share: the range to shade and its share of the
            gradient (the gradients sidecar's ``effective_*``); else, for one model, the
            shortest range of lengths holding 95% of the gradient.
        effective_measure: what the range holds a share of: "sampled" (the paper's measure)
            or "exact" (the exact norms); default: sampled where the table is.
    """
    data = _gradient_frame(df)
    data["total"] = data["sampled_total"].fillna(data["sampled_mean"] * data["num_paths"])
    data["total_err"] = data["sampled_sem"].fillna(data["sampled_std"]) * data["num_paths"]
    if not (data["total"].gt(0).any() or data["exact_norm"].gt(0).any()):
        raise ValueError("no total gradient magnitudes to plot")
    rng = _shaded_range(data, effective_lo, effective_hi, effective_share, effective_measure)

    def share_pct(rows: pd.DataFrame, col: str) -> pd.Series:
        total = rows[col].sum()
        return 100 * rows[col] / total if total > 0 else rows[col] * np.nan

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        key = _Key()
        if rng is not None:
            lo, hi, share, measure_name = rng
            of = _RANGE_MEASURES[measure_name]
            held = f"{100 * share:.0f}% of {of}" if share is not None else f"by {of}"
            label = f"shaded: effective range {lo}–{hi} ({held})"
            key.add(_shade(ax, lo, hi, "effective range"), label)
        for rows, sampled_colour, exact_colour, prefix in _per_model(data, 1):
            x = rows["length"]
            if rows["total"].gt(0).any():
                scale = 100 / rows["total"].sum()
                pct, err = rows["total"] * scale, rows["total_err"].fillna(0.0) * scale
                line = _banded(
                    ax, (x, (pct - err).clip(lower=0), pct + err), x, pct, sampled_colour
                )
                key.add(line, f"{prefix}sampled mean × paths (the paper's)")
            if rows["exact_norm"].gt(0).any():
                _line(ax, None, x, share_pct(rows, "exact_norm"), exact_colour, ls="--")
                exact = Line2D([], [], color=exact_colour, ls="--")
                key.add(exact, f"{prefix}exact, norm of the per-length sum")
        ax.set_ylim(bottom=0)
        ylabel = gradient_axis_label(data, "share of the total (%)")
        _by_length(fig, ax, key, owned, ylabel, title)

    return _styled(draw, ax, style, width, extra_height=0.4)


# ----------------------------------------------------------------------------------------------
# Sub-networks and effective-path training


def _parse_blocks(kept: Any) -> set[int]:
    """``"0-3,5"`` -> {0, 1, 2, 3, 5}; ``"none"``, empty or NaN (a CSV's empty cell) -> set()."""
    if kept is None or (isinstance(kept, float) and math.isnan(kept)):
        return set()
    return set(parse_blocks(str(kept)))


def plot_subnetworks(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    num_blocks: int | None = None,
    full_error: float | None = None,
    ensemble_error: float | None = None,
    style: Style = "paper",
    width: Width = "single",
) -> Figure:
    """The error of every evaluated sub-network against the number of blocks it keeps.

    Args:
        df: a subnetworks table (``kept``, ``num_kept``, ``error``): one jittered point per
            subset and a line through the mean at each size.
        num_blocks: n (default: one more than the highest block index kept); a subset keeping
            all n blocks is the full network, drawn as a dashed line.
        full_error, ensemble_error: fractions from the sidecar, drawn when given (the full
            network's error where no row keeps every block).
    """
    data = df.copy()
    data["num_kept"] = _numbers(data["num_kept"])
    data["value"] = _percent(data["error"])
    data = data.dropna(subset=["num_kept", "value"])
    if data.empty:
        raise ValueError("no sub-networks to plot")
    blocks = data["kept"].map(_parse_blocks)
    n = num_blocks if num_blocks is not None else max((max(b) + 1 for b in blocks if b), default=0)
    full_rows = data[blocks.map(len) == n] if n else data.iloc[:0]
    full = float(full_rows["value"].mean()) if len(full_rows) else None
    if full is None and full_error is not None:
        full = 100.0 * full_error
    colours = sns.color_palette("colorblind", 10)
    # Runs on several datasets: each its own points and mean, named (" on DATASET").
    data["on"] = _on_dataset(pd.Series("", index=data.index), data)
    pairs = [(0, 3), (1, 4), (2, 5), (8, 9), (6, 7)]

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        key = _Key()
        for i, (on, rows) in enumerate(data.groupby("on", sort=True)):
            dots, mean = (colours[c] for c in pairs[i % len(pairs)])
            with _seeded_jitter():  # seaborn jitters with numpy's global generator
                sns.stripplot(
                    data=rows,
                    x="num_kept",
                    y="value",
                    native_scale=True,
                    jitter=0.25,
                    size=_ms(0.5),
                    alpha=0.35,
                    linewidth=0,
                    color=dots,
                    ax=ax,
                )
            _line(ax, rows, "num_kept", "value", mean, dots=0.85, estimator="mean")
            key.add(_dot(dots, 0.65, edge=None, ls="", alpha=0.5), f"one sub-network{on}")
            key.add(_dot(mean, 0.85), f"mean per size{on}")
        if full is not None:
            handle = _hline(ax, full, "full network", "0.3", "--", _lw(0.85))
            key.add(handle, f"full network ({full:.3g}%)")
        if ensemble_error is not None:
            ens = 100.0 * ensemble_error
            handle = _hline(ax, ens, "ensemble", colours[2], ":", _lw())
            key.add(handle, f"ensemble of all ({ens:.3g}%)")
        ax.set_ylim(bottom=0)
        _integer_ticks(ax)
        xlabel = f"blocks kept (of {n})" if n else "blocks kept"
        ax.set(xlabel=xlabel, ylabel=ERROR_LABEL, title=TITLES["subnetworks"])
        _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)

    return _styled(draw, ax, style, width, extra_height=0.4)


def plot_training(
    df: pd.DataFrame, ax: Axes | None = None, *, style: Style = "paper", width: Width = "single"
) -> Figure:
    """Training on effective paths only against normal training (paper section 5).

    On a new figure: the final test error of each variant as bars (left) and the test error
    (solid) and training error (dashed, where present) over epochs (right). Given ``ax``, the
    bars alone.

    Args:
        df: a training table (``variant``, ``epoch``, ``test_error``; ``train_error``
            optional), errors as fractions.
    """
    data = df.copy()
    data["variant"] = _on_dataset(data["variant"].fillna("").astype(str), data)
    data["epoch"] = _numbers(data["epoch"])
    data["test_pct"] = _percent(data["test_error"])
    data["train_pct"] = _percent(data["train_error"]) if "train_error" in data else np.nan
    data = data.dropna(subset=["epoch", "test_pct"])
    if data.empty:
        raise ValueError("no training history to plot")
    variants = {v: v for v in data["variant"].unique()}
    order = _series_order(list(variants), variants)
    colours = _palette(order, variants)
    final = data.sort_values("epoch").groupby("variant").tail(1).set_index("variant")
    final = final.loc[order].reset_index()

    def bars(ax: Axes, owned_bars: bool) -> None:
        sns.barplot(
            data=final,
            x="variant",
            y="test_pct",
            hue="variant",
            order=order,
            hue_order=order,
            palette=colours,
            legend=False,
            width=0.6,
            ax=ax,
        )
        # More than two bars (several datasets, say) are too narrow for level labels: the
        # values stand upright, and the legend names the colours instead of the ticks.
        crowded = len(order) > 2
        for container in ax.containers:
            ax.bar_label(container, fmt="%.2f", padding=2, fontsize="small", rotation=90 * crowded)
        ax.set_ylim(0, final["test_pct"].max() * (1.45 if crowded else 1.2))
        ax.margins(y=0.15)
        ax.set(xlabel="", ylabel=f"final {ERROR_LABEL}")
        if crowded and owned_bars:
            ax.set_xticks(ax.get_xticks(), [""] * len(ax.get_xticks()))
        else:
            ax.tick_params(axis="x", labelrotation=20)

    def draw(fig: Figure, ax: Any, owned: bool) -> None:
        if not owned:
            bars(ax, False)
            ax.set_title(TITLES["effective_paths_training"])
            return
        bar_ax, curve_ax = ax
        bars(bar_ax, True)
        key = _Key([Line2D([], [], color=colours[v], lw=_lw()) for v in order], list(order))
        trained = bool(data["train_pct"].notna().any())
        for y, lw in [("test_pct", 1.0), ("train_pct", 0.75)][: 1 + trained]:
            hue = {"hue": "variant", "hue_order": order, "palette": colours}
            _line(curve_ax, data, "epoch", y, linewidth=_lw(lw), **hue)
        if trained:  # the training error, dashed
            for line in curve_ax.get_lines()[len(order) :]:
                line.set_linestyle("--")
            key.add(Line2D([], [], color="0.3", lw=_lw()), "test")
            key.add(Line2D([], [], color="0.3", ls="--", lw=_lw(0.75)), "train")
        curve_ax.set_ylim(bottom=0)
        _integer_ticks(curve_ax)
        curve_ax.set(xlabel="epoch", ylabel="error (%)")
        fig.suptitle(TITLES["effective_paths_training"], fontsize=mpl.rcParams["axes.titlesize"])
        _legend(fig, curve_ax, key.handles, key.labels, owned=True, below=True)

    return _styled(draw, ax, style, width, extra_height=0.4, ncols=2, width_ratios=[1, 1.6])


# ----------------------------------------------------------------------------------------------
# Saving and the whole set


def render_figure(
    fig: Figure, name: str, formats: Sequence[Format] = ("png", "pdf")
) -> list[tuple[str, bytes]]:
    """``fig`` as the bytes of ``name.{format}`` for each format (PNG at 150 dpi, PDF as
    vectors), rendered in memory: nothing is written."""
    rendered = []
    for fmt in formats:
        buf = io.BytesIO()
        meta = {"CreationDate": None} if fmt == "pdf" else None  # same table, same bytes
        with mpl.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": name}):
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
        rendered.append((f"{name}.{fmt}", buf.getvalue()))
    return rendered


def save_figure(
    fig: Figure, out_dir: str | Path, name: str, formats: Sequence[Format] = ("png", "pdf")
) -> list[Path]:
    """Write ``out_dir/name.{format}`` for each format (PNG at 150 dpi, PDF as vectors), each
    rendered in memory first and then written atomically; returns the paths written."""
    return _write_rendered(Path(out_dir), render_figure(fig, name, formats))


def _write_rendered(out_dir: Path, rendered: Sequence[tuple[str, bytes]]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, data in rendered:
        path = out_dir / filename
        atomic_write_bytes(path, data)
        written.append(path)
    return written


def _check_out_dir(out_dir: str | Path) -> Path:
    """Refuse, before drawing, a folder that is a file, lies under one, or cannot be written."""
    out_dir = Path(out_dir)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "it" if existing == out_dir else str(existing)
        raise ValueError(f"cannot write figures to {out_dir}: {what} is a file, not a folder")
    check_writable(out_dir / f"{FIGURES[0]}.png")
    return out_dir


def _num_classes(tables: Sequence[LoadedTable]) -> int | None:
    """The sweeps' number of classes, where they agree on one: the ``num_classes`` that each
    sidecar records (every sweep writes it; plotting never imports the data layer or torch)."""
    found = set()
    for t in tables:
        classes = t.meta.get("num_classes")
        if classes:
            found.add(int(classes))
    return found.pop() if len(found) == 1 else None


def _only_meta(tables: Sequence[LoadedTable]) -> dict[str, Any]:
    """The sidecar of a kind's one table; with several, none (their ranges may differ)."""
    return tables[0].meta if len(tables) == 1 else {}


def _dataset_of(table: LoadedTable) -> str:
    """The dataset a table's run used, as its sidecar names it ("" where it does not)."""
    return str(table.meta.get("dataset") or "")


def _concat(tables: Sequence[LoadedTable]) -> pd.DataFrame:
    """The tables' rows together; where they come from runs on different datasets, each row
    gets its table's in a ``dataset`` column, so that the figures name them."""
    if not tables:
        return pd.DataFrame()
    frames = [t.frame for t in tables]
    if len({_dataset_of(t) for t in tables}) > 1:
        frames = [
            t.frame.assign(dataset=_dataset_of(t) or "unnamed data")
            if "dataset" not in t.frame
            else t.frame
            for t in tables
        ]
    return pd.concat(frames, ignore_index=True)


def _on_dataset(labels: pd.Series, frame: pd.DataFrame) -> pd.Series:
    """``labels`` (one per row of ``frame``), each with " on DATASET" added where ``frame``
    holds runs on several datasets (its ``dataset`` column), so that runs on different data
    are never drawn as one; a label that already says so is kept."""
    labels = labels.astype(str)
    if "dataset" not in frame:
        return labels
    names = frame["dataset"].fillna("").astype(str).replace("", "unnamed data")
    if names.nunique() < 2:
        return labels
    on = " on " + names
    return labels.where([o in label for label, o in zip(labels, on, strict=True)], labels + on)


_Job = tuple[str, Callable[..., Figure]]


def _sweep_jobs(tables: Sequence[LoadedTable]) -> list[_Job]:
    """The sweep figures, one set per metric: named after the paper figure, with the metric
    added for any but error (``fig3_single_block_top5``)."""
    by_metric: dict[str, list[LoadedTable]] = {}
    for t in tables:
        metric = sweep_metric(t.frame.columns, t.meta)
        if metric is not None:
            by_metric.setdefault(metric, []).append(t)
    jobs: list[_Job] = []
    for metric, group in by_metric.items():
        sweeps, classes = _concat(group), _num_classes(group)
        name = "{}" if metric == "error" else f"{{}}_{metric}"
        kw: dict[str, Any] = {"metric": metric}
        single = _lesioned_variants(sweeps, "single")
        if single - {"stochastic depth"}:
            variants = sorted(single - {"stochastic depth"})
            fig3 = partial(plot_single_block, sweeps, variants=variants, num_classes=classes, **kw)
            jobs.append((name.format("fig3_single_block"), fig3))
        if _lesioned_variants(sweeps, "multi"):
            jobs.append((name.format("fig5a_delete_k"), partial(plot_delete_k, sweeps, **kw)))
        if _lesioned_variants(sweeps, "reorder"):
            jobs.append((name.format("fig5b_reorder"), partial(plot_reorder, sweeps, **kw)))
        if "stochastic depth" in single:
            fig8 = partial(plot_stochastic_depth, sweeps, num_classes=classes, **kw)
            jobs.append((name.format("fig8_stochastic_depth"), fig8))
    return jobs


def _effective_measure(meta: Mapping[str, Any]) -> Literal["sampled", "exact"] | None:
    """The measure a gradients sidecar's ``effective_*`` range was taken from: the one of its
    ``ranges`` (``gradient_analysis``: sampled_95 where sampled, else exact_95) that it is."""
    ranges = meta.get("ranges") if isinstance(meta.get("ranges"), dict) else {}
    lo_hi = (meta.get("effective_lo"), meta.get("effective_hi"))
    for name in ("sampled", "exact"):
        found = ranges.get(f"{name}_95")
        if isinstance(found, dict) and (found.get("lo"), found.get("hi")) == lo_hi:
            return name  # type: ignore[return-value]
    return None


def _gradient_jobs(tables: Sequence[LoadedTable]) -> list[_Job]:
    """Fig. 6b and 6c, each where the gradients tables hold what it draws."""
    if not tables:
        return []
    grads, meta = _gradient_frame(_concat(tables)), _only_meta(tables)
    jobs: list[_Job] = []
    if grads[["sampled_mean", "rms_single_path"]].gt(0).any().any():
        jobs.append(("fig6b_gradient_per_length", partial(plot_gradient_per_length, grads)))
    if grads[["sampled_mean", "sampled_total", "exact_norm"]].gt(0).any().any():
        effective = {k: meta.get(k) for k in ("effective_lo", "effective_hi", "effective_share")}
        effective["effective_measure"] = _effective_measure(meta)
        fig6c = partial(plot_total_gradient, grads, **effective)
        jobs.append(("fig6c_total_gradient", fig6c))
    return jobs


def _figure_jobs(tables: Sequence[LoadedTable]) -> list[_Job]:
    """The figures the tables allow, each as (name, draw) with ``draw(style=, width=)``."""
    by_kind: dict[str, list[LoadedTable]] = {k: [] for k in TABLES}
    for t in tables:
        by_kind[t.kind].append(t)
    jobs = [*_sweep_jobs(by_kind["sweep"]), *_gradient_jobs(by_kind["gradients"])]
    paths = _concat(by_kind["paths"])
    if not paths.empty:
        meta = _only_meta(by_kind["paths"])
        fig6a = partial(
            plot_path_lengths,
            paths,
            share=float(meta.get("share", 0.95)),
            lo=meta.get("range_lo", meta.get("normal_lo")),
            hi=meta.get("range_hi", meta.get("normal_hi")),
        )
        jobs.append(("fig6a_path_lengths", fig6a))
    training = _concat(by_kind["training"])
    if not by_kind["training"] and by_kind["history"]:  # the histories `train` writes
        parts = [_history_as_training(t) for t in by_kind["history"]]
        training = pd.concat(parts, ignore_index=True)
    if not training.empty:
        jobs.append(("effective_paths_training", partial(plot_training, training)))
    subnetworks = _concat(by_kind["subnetworks"])
    if not subnetworks.empty:
        meta = _only_meta(by_kind["subnetworks"])
        view = meta.get("ensemble") if isinstance(meta.get("ensemble"), dict) else {}
        fig = partial(
            plot_subnetworks,
            subnetworks,
            num_blocks=meta.get("num_blocks"),
            full_error=view.get("full_error"),
            ensemble_error=view.get("ensemble_error"),
        )
        jobs.append(("subnetworks", fig))
    jobs += _depth_jobs(by_kind)
    dynamics = _concat(by_kind["dynamics"])
    if not dynamics.empty:
        from . import dynamics as dynamics_plots  # it builds on this module's plumbing

        draw = dynamics_plots.plot_training_dynamics
        jobs.append(("training_dynamics", partial(_page_wide, draw, dynamics)))

    def order(job: _Job) -> tuple[int, str]:  # in FIGURES' order; another metric's after error's
        name = job[0]
        return next(i for i, f in enumerate(FIGURES) if name.startswith(f)), name

    return sorted(jobs, key=order)


def _page_wide(draw: Callable[..., Figure], frame: pd.DataFrame, **style: Any) -> Figure:
    """A depth-series figure: always two panels, a page wide, whatever the width asked."""
    return draw(frame, style=style["style"])


def _depth_jobs(by_kind: Mapping[str, Sequence[LoadedTable]]) -> list[_Job]:
    """The depth-series figures: one row per network (depth), and k-deletion curves (depth_k)."""
    if not (by_kind["depth"] or by_kind["depth_k"]):
        return []
    from . import depth as depth_plots  # it builds on this module's plumbing

    depth, curves = _concat(by_kind["depth"]), _concat(by_kind["depth_k"])
    jobs: list[_Job] = []
    if not depth.empty:
        jobs.append(
            ("depth_single_block", partial(_page_wide, depth_plots.plot_depth_single_block, depth))
        )
        if "effective_lo" in depth and _numbers(depth["effective_lo"]).notna().any():
            jobs.append(
                ("depth_gradients", partial(_page_wide, depth_plots.plot_depth_gradients, depth))
            )
    if not curves.empty:
        jobs.append(
            ("depth_delete_k", partial(_page_wide, depth_plots.plot_depth_delete_k, curves))
        )
    return jobs


_EXPECTED = (
    "sweep tables with 'single' rows (fig3, and fig8 with a stochastic-depth model), 'multi' "
    "rows (fig5a) or 'reorder' rows (fig5b), a paths table (fig6a), a gradients table (fig6b, "
    "fig6c), a training table or training histories (effective_paths_training), a subnetworks "
    "table (subnetworks) "
    "the depth series' depth and depth_k tables (depth_*) or a dynamics table "
    "(training_dynamics)"
)


def plot_all(
    tables: Sequence[str | Path],
    out_dir: str | Path,
    style: Style = "paper",
    width: Width = "single",
    formats: Sequence[Format] = ("png", "pdf"),
    *,
    fig_numbers: bool = True,
    on_skip: Callable[[str], None] | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Draw every figure the tables allow into ``out_dir`` and return the files written.

    ``fig_numbers``: a figure that reproduces one of the paper's has its number in the title
    ("Fig. 3 — deleting single blocks"); False leaves it out ("Deleting single blocks"), for
    figures of one's own models in one's own paper. Other figures never have one.

    The figure files are claimed before any is drawn (``outputs.claim_outputs``): a symlink or
    anything but a regular file in their place is refused, and so, with ``overwrite`` False
    (``ensemble-lesion plot`` without ``--overwrite``), is a figure that exists.

    ``tables`` are CSV files or folders to search (``find_tables``). Checks, before drawing,
    that ``out_dir`` can be written. A file that is not a table the plots know is skipped, and
    ``on_skip`` is told why in one line; with ``on_skip`` None, it is refused.

    Raises:
        ValueError: an unwritable ``out_dir``, a table lacking columns (without ``on_skip``),
            an unknown style, width or format, tables from which no figure can be drawn, or
            figures that exist without ``overwrite``.

    Example:
        >>> plot_all(sorted(Path("results/tables").glob("*.csv")), "results/figures")
    """
    if style not in ("paper", "talk"):
        raise ValueError(f"unknown style {style!r}: choose paper or talk")
    if width not in _WIDTH_IN:
        raise ValueError(f"unknown width {width!r}: choose single or double")
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ValueError(f"unknown figure formats {bad}: choose png, pdf or svg")
    if not tables:
        raise ValueError(f"no results tables given: expected {_EXPECTED}")
    files = find_tables(tables)
    if not files:
        places = ", ".join(map(str, tables))
        raise ValueError(f"no results tables (CSV files) in {places}: expected {_EXPECTED}")
    out = _check_out_dir(out_dir)
    loaded: list[LoadedTable] = []
    skipped: list[str] = []
    for path in files:
        if on_skip is None:
            loaded.append(load_table(path))
            continue
        try:
            loaded.append(load_table(path))
        except BadValues:  # a table meant for plotting, with values that cannot be drawn
            raise
        except ValueError as err:
            skipped.append(str(err))
    if skipped and not loaded:  # nothing readable: the reasons, not the list of kinds
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise ValueError(f"no figure can be drawn: {skipped[0]}{more}")
    jobs = _figure_jobs(loaded)
    if not jobs:  # the error says why; no separate notes
        names = ", ".join(str(t.path) for t in loaded) or "the tables given"
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise ValueError(f"no figure can be drawn from {names}{why}: expected {_EXPECTED}")
    formats = list(dict.fromkeys(formats))
    targets = [out / f"{name}.{fmt}" for name, _ in jobs for fmt in formats]
    with claim_outputs(targets, overwrite=overwrite):
        for reason in skipped if on_skip is not None else ():
            on_skip(f"skipped {reason}")
        # Every figure is drawn and rendered in memory before the first file is written: a
        # figure that fails to draw leaves nothing behind.
        rendered: list[tuple[str, bytes]] = []
        for name, draw in jobs:
            base = next((f for f in FIGURES if name.startswith(f)), name)
            numbered = TITLES.get(base, "").startswith("Fig. ")
            title = {} if fig_numbers or not numbered else {"title": figure_title(base, False)}
            fig = draw(style=style, width=width, **title)
            rendered += render_figure(fig, name, formats)
        return _write_rendered(out, rendered)
