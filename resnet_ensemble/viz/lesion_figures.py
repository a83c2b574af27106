"""The lesion figures: deleting single blocks (paper Fig. 3, and Fig. 8 for stochastic depth),
deleting k blocks (Fig. 5a) and reordering blocks (Fig. 5b)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..results import (
    SweepKind,
    SweepMetric,
    as_flags,
    chance_level,
    is_baseline,
    sweep_metric,
)
from .kit import (
    METRIC_AXES,
    SHADE,
    TITLES,
    dot_handle,
    hline,
    integer_ticks,
    line_handle,
    line_width,
    series_palette,
    shade_span,
    styled,
)
from .style import VARIANT_ORDER as _VARIANT_ORDER
from .style import Key as _Key
from .style import (
    Style,
    Width,
)
from .style import legend as _legend
from .style import ms as _ms
from .style import numbers as _numbers
from .style import percent as _percent
from .tables import on_dataset

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
        label, percent = METRIC_AXES.get(column, (column, False))
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
    df["series"] = on_dataset(series, df)
    df["value"] = measure.values(df)
    df["is_baseline"] = is_baseline(df)
    for col in ("k", "kendall_tau"):
        df[col] = _numbers(df[col])
    variants = dict(zip(df["series"], variant, strict=True))
    return df, variants, measure


def series_order(labels: Sequence[str], variants: Mapping[str, str]) -> list[str]:
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


def lesioned_variants(df: pd.DataFrame, sweep: SweepKind) -> set[str]:
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
    order = series_order(points["series"].unique(), series_variant)
    return _Lesions(rows, points, order, series_palette(order, series_variant), measure)


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
    order = series_order(lesions["series"].unique(), series_variant)
    colours = series_palette(order, series_variant)
    baselines = _baselines(data, "single")

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        for block in sorted(set(lesions.loc[lesions["down"], "block"])):
            shade_span(ax, block, block)
        key = _Key()
        # Downsampling blocks: a diamond over the series' marker.
        diamonds = dict(marker="D", s=_ms(1.1) ** 2, edgecolor="black", linewidth=line_width(0.5))
        diamonds.update(zorder=4, legend=False)
        for label in order:
            rows = lesions[lesions["series"] == label].sort_values("block")
            c = colours[label]
            line_handle(ax, rows, "block", "value", c, dots=0.75, linewidth=line_width())
            down = rows[rows["down"]]
            if len(down):
                sns.scatterplot(data=down, x="block", y="value", ax=ax, color=c, **diamonds)
            key.add(dot_handle(c, 0.75), label)
            if label in baselines:
                hline(ax, baselines[label], f"baseline:{label}", c, "--", line_width(0.85))
        if baselines:
            key.add(Line2D([], [], color="0.35", ls="--", lw=line_width(0.85)), "full network")
        if lesions["down"].any():
            diamond = Line2D(
                [], [], ls="", marker="D", color="0.6", mec="black", mew=line_width(0.5)
            )
            key.add((Patch(facecolor=SHADE, lw=0), diamond), "downsampling block")
        chance = measure.chance(num_classes)
        # Chance level only where a value comes near it, lest it squash small differences.
        if chance is not None and lesions["value"].max() >= chance / 2:
            handle = hline(ax, chance, "chance", "0.3", ":", line_width())
            key.add(handle, f"chance ({measure.text(chance)})")
        ax.set_ylim(bottom=0)
        ax.set_xlim(lesions["block"].min() - 0.7, lesions["block"].max() + 0.7)
        integer_ticks(ax)
        ax.set(xlabel="deleted block (index)", ylabel=measure.label, title=title)
        _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)

    return styled(draw, ax, style, width, extra_height=0.5)


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
        line_handle(
            ax,
            multi.points,
            "k",
            "value",
            dots=0.85,
            linewidth=line_width(),
            **band,
            **multi.by_series,
        )
        ax.set_ylim(bottom=0)
        integer_ticks(ax)
        ax.set(xlabel="blocks deleted (k)", ylabel=multi.measure.label)
        ax.set_title(title)
        spread = f"mean ± s.d. over {samples} samples" if samples > 1 else None
        handles = [dot_handle(colours[s], 0.85) for s in order]
        _legend(fig, ax, handles, order, owned=owned, loc="upper left", title=spread)

    return styled(draw, ax, style, width)


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

    medians = medians_in_tau_bins(points)

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        faint = {"s": _ms(0.65) ** 2, "alpha": 0.45, "linewidth": 0, "legend": False}
        sns.scatterplot(data=points, x="kendall_tau", y="value", ax=ax, **faint, **swaps.by_series)
        for label in order:
            m = means[means["series"] == label].sort_values("tau")
            c = colours[label]
            ax.fill_between(
                m["tau"], m["err"] - m["sd"], m["err"] + m["sd"], color=c, alpha=0.2, lw=0
            )
            line_handle(ax, m, "tau", "err", c, dots=0.85, linewidth=line_width(), sort=True)
            b = medians[medians["series"] == label]
            ax.plot(
                b["tau"], b["median"], color=c, ls="--", lw=line_width(0.8), marker="D", ms=_ms(0.6)
            )
        ax.invert_xaxis()
        ax.set_ylim(bottom=0)
        ax.set(xlabel="Kendall τ of the block order", ylabel=swaps.measure.label)
        ax.set_title(title)
        handles = [dot_handle(colours[s], 0.85) for s in order]
        handles.append(dot_handle(colours[order[0]], 0.65, edge=None, ls="", alpha=0.6))
        handles.append(Line2D([], [], color="0.3", ls="--", marker="D", ms=_ms(0.6)))
        labels = [*order, "one configuration", "median in bins of τ"]
        heading = "mean ± s.d. per swap count"
        _legend(fig, ax, handles, labels, owned=owned, loc="best", title=heading)

    return styled(draw, ax, style, width)


def medians_in_tau_bins(points: pd.DataFrame, bins: int = 8, least: int = 3) -> pd.DataFrame:
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
