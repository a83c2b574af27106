"""Figures from results tables: the paper's plots, drawn with seaborn, saved as PNG and PDF.

Plotting only reads tables; it never computes an experiment. The kinds of table and their columns
are ``results.TABLES``'. A sweep is drawn in its own metric (the column named after it: error,
top5, loss, ...); errors in the tables are fractions and are drawn as percentages.

The figures live by concern in ``viz/``; this module is their dispatch and still exposes the
names callers use:
- ``tables``: ``load_table`` / ``load_tables`` / ``find_tables`` read results CSVs and tell their
  kind from the sidecar's ``table`` key or the columns; ``check_values`` refuses a table whose
  plotted measurements leave their ranges, naming the lines
- ``kit``: the figures' names and titles (``FIGURES``, ``TITLES``, ``figure_title``), axis labels
  and the shared drawing helpers; ``style``: the one paper style (``figure_style``) and fitting
- ``lesion_figures``: ``plot_single_block`` (paper Fig. 3), ``plot_delete_k`` (Fig. 5a),
  ``plot_reorder`` (Fig. 5b), ``plot_stochastic_depth`` (Fig. 8)
- ``path_figures``: ``plot_path_lengths`` (Fig. 6a), ``plot_gradient_per_length`` (Fig. 6b),
  ``plot_total_gradient`` (Fig. 6c), ``plot_subnetworks`` (error by blocks kept) and
  ``plot_training`` (training on effective paths only)
- here: ``render_figure`` / ``save_figure`` (PNG at 150 dpi and vector PDF, rendered in memory,
  then each written atomically) and ``plot_all``, every figure the given tables allow, rendered
  before any is written and named after the paper figure (a sweep in another metric than error
  adds the metric to the name: ``fig3_single_block_top5``)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from ..outputs import claim_outputs
from ..results import (
    TABLES,
    atomic_write_bytes,
    check_writable,
    sweep_metric,
)
from .kit import FIGURES, TITLES, figure_title
from .lesion_figures import (
    lesioned_variants,
    plot_delete_k,
    plot_reorder,
    plot_single_block,
    plot_stochastic_depth,
)
from .path_figures import (
    gradient_frame,
    plot_gradient_per_length,
    plot_path_lengths,
    plot_subnetworks,
    plot_total_gradient,
    plot_training,
)
from .style import (
    DPI,
    Style,
    Width,
    figure_style,
    fit_texts,
    readable_log_axis,
)
from .style import WIDTH_IN as _WIDTH_IN
from .style import numbers as _numbers
from .tables import (
    TABLE_COLUMNS,
    BadValues,
    Format,
    LoadedTable,
    check_values,
    find_tables,
    history_as_training,
    load_table,
    load_tables,
)

__all__ = [
    "FIGURES",
    "BadValues",
    "TABLE_COLUMNS",
    "TITLES",
    "LoadedTable",
    "check_values",
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

# ----------------------------------------------------------------------------------------------
# Saving and the whole set


#: Metadata that would make the same figure's bytes differ from one run to the next.
_UNDATED: dict[str, dict[str, None]] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def render_figure(
    fig: Figure, name: str, formats: Sequence[Format] = ("png", "pdf")
) -> list[tuple[str, bytes]]:
    """``fig`` as the bytes of ``name.{format}`` for each format (PNG at 150 dpi, PDF as
    vectors), rendered in memory: nothing is written.

    The same figure gives the same bytes on any day (``experiments/rerender_figures.py`` checks
    the committed figures so): no date in a PDF or SVG, and SVG ids salted with the name. The
    matplotlib version stays in the metadata, since another version may draw other pixels."""
    rendered = []
    for fmt in formats:
        buf = io.BytesIO()
        meta = _UNDATED.get(fmt)
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
        single = lesioned_variants(sweeps, "single")
        if single - {"stochastic depth"}:
            variants = sorted(single - {"stochastic depth"})
            fig3 = partial(plot_single_block, sweeps, variants=variants, num_classes=classes, **kw)
            jobs.append((name.format("fig3_single_block"), fig3))
        if lesioned_variants(sweeps, "multi"):
            jobs.append((name.format("fig5a_delete_k"), partial(plot_delete_k, sweeps, **kw)))
        if lesioned_variants(sweeps, "reorder"):
            jobs.append((name.format("fig5b_reorder"), partial(plot_reorder, sweeps, **kw)))
        if "stochastic depth" in single:
            fig8 = partial(plot_stochastic_depth, sweeps, num_classes=classes, **kw)
            jobs.append((name.format("fig8_stochastic_depth"), fig8))
    return jobs


def _effective_measure(meta: Mapping[str, Any]) -> Literal["sampled", "exact"] | None:
    """The measure a gradients sidecar's ``effective_*`` range was taken from: the one of its
    ``ranges`` (``gradient_analysis``: sampled_95 where sampled, else exact_95) that it is."""
    ranges = _sub_dict(meta, "ranges")
    lo_hi = (meta.get("effective_lo"), meta.get("effective_hi"))
    names: tuple[Literal["sampled", "exact"], ...] = ("sampled", "exact")
    for name in names:
        found = ranges.get(f"{name}_95")
        if isinstance(found, dict) and (found.get("lo"), found.get("hi")) == lo_hi:
            return name
    return None


def _sub_dict(meta: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``meta[key]`` where it is a dict, else an empty one (a sidecar that lacks it)."""
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def _gradient_jobs(tables: Sequence[LoadedTable]) -> list[_Job]:
    """Fig. 6b and 6c, each where the gradients tables hold what it draws."""
    if not tables:
        return []
    grads, meta = gradient_frame(_concat(tables)), _only_meta(tables)
    jobs: list[_Job] = []
    if grads[["sampled_mean", "rms_single_path"]].gt(0).any().any():
        jobs.append(("fig6b_gradient_per_length", partial(plot_gradient_per_length, grads)))
    if grads[["sampled_mean", "sampled_total", "exact_norm"]].gt(0).any().any():
        fig6c = partial(
            plot_total_gradient,
            grads,
            effective_lo=meta.get("effective_lo"),
            effective_hi=meta.get("effective_hi"),
            effective_share=meta.get("effective_share"),
            effective_measure=_effective_measure(meta),
        )
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
        parts = [history_as_training(t) for t in by_kind["history"]]
        training = pd.concat(parts, ignore_index=True)
    if not training.empty:
        jobs.append(("effective_paths_training", partial(plot_training, training)))
    subnetworks = _concat(by_kind["subnetworks"])
    if not subnetworks.empty:
        meta = _only_meta(by_kind["subnetworks"])
        view = _sub_dict(meta, "ensemble")
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
        if on_skip is not None:
            for reason in skipped:
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
