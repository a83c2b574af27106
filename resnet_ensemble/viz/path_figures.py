"""The path and gradient figures: path lengths (paper Fig. 6a), the single-path gradient per
length (Fig. 6b), the total gradient per length (Fig. 6c), error by sub-network, and training on
effective paths only."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from statistics import NormalDist
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..paths import parse_blocks, shortest_range_holding, summarize_paths
from .kit import (
    EFFECTIVE_SHARE,
    LENGTH_LABEL,
    TITLES,
    dot_handle,
    hline,
    integer_ticks,
    line_handle,
    line_width,
    seeded_jitter,
    series_palette,
    shade_span,
    styled,
)
from .lesion_figures import series_order
from .style import (
    ERROR_LABEL,
    Style,
    Width,
    readable_log_axis,
)
from .style import Key as _Key
from .style import legend as _legend
from .style import ms as _ms
from .style import numbers as _numbers
from .style import percent as _percent
from .tables import on_dataset

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
        if summary is not None and lo is not None and hi is not None:
            held = data.loc[data["length"].between(lo, hi), "pct"].sum()
            handle = shade_span(ax, lo, hi, "path range")
            label = (
                f"{100 * share:.3g}% of paths: lengths {lo}–{hi} ({held:.1f}%);\n"
                f"as mean ± {NormalDist().inv_cdf(0.5 + share / 2):.2f} sd: "
                f"{summary.normal_lo}–{summary.normal_hi} ({100 * summary.normal_fraction:.1f}%)"
            )
            _legend(fig, ax, [handle], [label], owned=owned, below=True)
        ax.set_ylim(bottom=0)
        integer_ticks(ax)
        ax.set(xlabel=LENGTH_LABEL, ylabel="share of paths (%)", title=title)

    return styled(draw, ax, style, width, extra_height=0.25)


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


def gradient_frame(df: pd.DataFrame) -> pd.DataFrame:
    data = df.copy()
    for col in _GRADIENT_NUMBERS:
        data[col] = _numbers(data[col]) if col in data else np.nan
    data["model"] = data["model"].fillna("").astype(str) if "model" in data else ""
    data["model"] = on_dataset(data["model"], data)
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
    integer_ticks(ax)
    ax.set(xlabel=LENGTH_LABEL, ylabel=ylabel, title=title)
    _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)


def _banded(ax: Axes, band: tuple[Any, Any, Any], x: Any, y: Any, colour: Any) -> Line2D:
    """A measure's line with round markers over its error band (x, low, high); returns a
    legend handle for the line."""
    ax.fill_between(*band, color=colour, alpha=0.25, lw=0)
    line_handle(ax, None, x, y, colour, dots=0.65)
    return dot_handle(colour, 0.65, edge=None)


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
    data = gradient_frame(df)
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
                line_handle(ax, None, *_positive(x, rows["rms_single_path"]), rms_colour, ls="--")
                rms = Line2D([], [], color=rms_colour, ls="--")
                key.add(rms, f"{prefix}root mean square (sign estimator)")
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], floor))
        readable_log_axis(ax)
        ax.grid(True, which="major", axis="y")
        ylabel = gradient_axis_label(data, "single-path gradient norm")
        _by_length(fig, ax, key, owned, ylabel, title)

    return styled(draw, ax, style, width, extra_height=0.4)


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
        first, last, held = shortest_range_holding(measure.fillna(0.0).tolist(), EFFECTIVE_SHARE)
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
    data = gradient_frame(df)
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
            key.add(shade_span(ax, lo, hi, "effective range"), label)
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
                line_handle(ax, None, x, share_pct(rows, "exact_norm"), exact_colour, ls="--")
                exact = Line2D([], [], color=exact_colour, ls="--")
                key.add(exact, f"{prefix}exact, norm of the per-length sum")
        ax.set_ylim(bottom=0)
        ylabel = gradient_axis_label(data, "share of the total (%)")
        _by_length(fig, ax, key, owned, ylabel, title)

    return styled(draw, ax, style, width, extra_height=0.4)


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
    data["on"] = on_dataset(pd.Series("", index=data.index), data)
    pairs = [(0, 3), (1, 4), (2, 5), (8, 9), (6, 7)]

    def draw(fig: Figure, ax: Axes, owned: bool) -> None:
        key = _Key()
        for i, (on, rows) in enumerate(data.groupby("on", sort=True)):
            dots, mean = (colours[c] for c in pairs[i % len(pairs)])
            with seeded_jitter():  # seaborn jitters with numpy's global generator
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
            line_handle(ax, rows, "num_kept", "value", mean, dots=0.85, estimator="mean")
            key.add(dot_handle(dots, 0.65, edge=None, ls="", alpha=0.5), f"one sub-network{on}")
            key.add(dot_handle(mean, 0.85), f"mean per size{on}")
        if full is not None:
            handle = hline(ax, full, "full network", "0.3", "--", line_width(0.85))
            key.add(handle, f"full network ({full:.3g}%)")
        if ensemble_error is not None:
            ens = 100.0 * ensemble_error
            handle = hline(ax, ens, "ensemble", colours[2], ":", line_width())
            key.add(handle, f"ensemble of all ({ens:.3g}%)")
        ax.set_ylim(bottom=0)
        integer_ticks(ax)
        xlabel = f"blocks kept (of {n})" if n else "blocks kept"
        ax.set(xlabel=xlabel, ylabel=ERROR_LABEL, title=TITLES["subnetworks"])
        _legend(fig, ax, key.handles, key.labels, owned=owned, below=True)

    return styled(draw, ax, style, width, extra_height=0.4)


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
    data["variant"] = on_dataset(data["variant"].fillna("").astype(str), data)
    data["epoch"] = _numbers(data["epoch"])
    data["test_pct"] = _percent(data["test_error"])
    data["train_pct"] = _percent(data["train_error"]) if "train_error" in data else np.nan
    data = data.dropna(subset=["epoch", "test_pct"])
    if data.empty:
        raise ValueError("no training history to plot")
    variants = {v: v for v in data["variant"].unique()}
    order = series_order(list(variants), variants)
    colours = series_palette(order, variants)
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
            if not isinstance(container, BarContainer):
                continue
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
        key = _Key([Line2D([], [], color=colours[v], lw=line_width()) for v in order], list(order))
        trained = bool(data["train_pct"].notna().any())
        for y, lw in [("test_pct", 1.0), ("train_pct", 0.75)][: 1 + trained]:
            hue: dict[str, Any] = {"hue": "variant", "hue_order": order, "palette": colours}
            line_handle(curve_ax, data, "epoch", y, linewidth=line_width(lw), **hue)
        if trained:  # the training error, dashed
            for line in curve_ax.get_lines()[len(order) :]:
                line.set_linestyle("--")
            key.add(Line2D([], [], color="0.3", lw=line_width()), "test")
            key.add(Line2D([], [], color="0.3", ls="--", lw=line_width(0.75)), "train")
        curve_ax.set_ylim(bottom=0)
        integer_ticks(curve_ax)
        curve_ax.set(xlabel="epoch", ylabel="error (%)")
        fig.suptitle(TITLES["effective_paths_training"], fontsize=mpl.rcParams["axes.titlesize"])
        _legend(fig, curve_ax, key.handles, key.labels, owned=True, below=True)

    return styled(draw, ax, style, width, extra_height=0.4, ncols=2, width_ratios=[1, 1.6])
