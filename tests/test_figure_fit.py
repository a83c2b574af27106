"""Every figure fits its canvas: drawn from real gradient analyses taken at the first block
(the longest axis labels), from tables of runs on two datasets drawn together, and from the
committed depth, dynamics and language-model tables, no text, tick label or legend reaches past
the canvas's edges (their tight bounding boxes lie inside it), in both styles.

Also: a log axis has at least three labelled ticks and no error band far below its data,
Fig. 6c says which measure its shaded range holds, runs on different datasets are named, the
paper's figure numbers are an option, and the language-model figure calls the exact norm ÷
paths the norm of the mean path gradient.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from resnet_ensemble.cli import cli
from resnet_ensemble.studies.gradient_analysis import study_gradients
from resnet_ensemble.studies.proxies import draw_proxies, single_deletion_damage
from resnet_ensemble.viz import plots
from resnet_ensemble.viz.lm import MEAN_PATH_LABEL, plot_lm_lesions, plot_lm_painters_gradients
from resnet_ensemble.viz.plots import (
    FIGURES,
    TITLES,
    figure_title,
    load_tables,
    plot_all,
    plot_gradient_per_length,
    plot_total_gradient,
)
from tests.test_plots import gradient_table, legend_texts, make_tables

mpl.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# The check


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """The tight bounding box of every drawn text of ``fig`` (titles, axis labels, annotations),
    of each axis with its tick labels, and of every legend, after the layout has run."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    found: list[tuple[str, Bbox]] = []
    for ax in fig.axes:
        texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for text in [*texts, *ax.texts]:
            if text.get_visible() and text.get_text():
                found.append((f"text {text.get_text()!r}", text.get_window_extent(renderer)))
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            box = axis.get_tightbbox(renderer)  # the tick labels drawn, and the axis label
            if box is not None:
                found.append((f"{name} axis (tick labels) of {ax.get_title()!r}", box))
        if ax.get_legend() is not None:
            found.append(("legend in the axes", ax.get_legend().get_window_extent(renderer)))
    for legend in fig.legends:
        found.append(("figure legend", legend.get_window_extent(renderer)))
    for text in [fig._suptitle, *fig.texts]:
        if text is not None and text.get_text():
            found.append((f"text {text.get_text()!r}", text.get_window_extent(renderer)))
    return found


def clipped(fig: Figure) -> list[str]:
    """What reaches past the canvas (by more than half a pixel)."""
    width, height = fig.bbox.width, fig.bbox.height
    return [
        f"{what}: {np.round(box.extents, 1).tolist()} on a {width:.0f}x{height:.0f} canvas"
        for what, box in text_boxes(fig)
        if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5
    ]


def test_the_check_sees_a_clipped_label():
    """The check itself: a y label longer than the figure is reported."""
    fig = Figure(figsize=(2, 1.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_ylabel("a label much longer than the figure is high, by far")
    assert any("a label much longer" in c for c in clipped(fig))


# ----------------------------------------------------------------------------------------------
# Tables: real analyses at the first block, runs on two datasets


@pytest.fixture(scope="module")
def first_block(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real gradient analyses taken at the first block's input: the embedded ResNet on its
    test images, and a random ResNet-8 on synthetic images (another dataset)."""
    folder = tmp_path_factory.mktemp("first_block")
    small = {"images": 8, "batches": 2, "samples_per_length": 3, "sign_draws": 2, "at": "blocks"}
    out = {"embedded": folder / "embedded.csv", "synthetic": folder / "synthetic.csv"}
    study_gradients(
        {"model_spec": None, "dataset": "embedded", "limit": 32, "device": "cpu"},
        out=out["embedded"],
        **small,
    )
    study_gradients(
        {"model_spec": "resnet8", "dataset": "synthetic", "limit": 32, "device": "cpu"},
        out=out["synthetic"],
        **small,
    )
    return out


def two_datasets(folder: Path) -> list[Path]:
    """One table of each kind, twice, by the results contract: the runs of ``a/`` on
    fashion-mnist and those of ``b/`` on cifar10, as their sidecars say."""
    tables = []
    for sub, dataset in (("a", "fashion-mnist"), ("b", "cifar10")):
        for path in make_tables(folder / sub, sidecars=False):
            kind = plots.load_table(path).kind
            meta = {"table": kind, "dataset": dataset, "num_classes": 10}
            path.with_suffix(".json").write_text(json.dumps(meta))
            tables.append(path)
    return tables


def committed(*paths: str) -> list[Path]:
    found = [ROOT / p for p in paths]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        pytest.skip(f"committed tables not in this checkout: {missing}")
    return found


def every_figure(tables: list[Path], **options: object) -> dict[str, Figure]:
    """Each figure ``plot_all`` would draw from ``tables``, by name, as a Figure."""
    return {name: draw(**options) for name, draw in plots._figure_jobs(load_tables(tables))}


STYLES = [{"style": "paper", "width": "single"}, {"style": "talk", "width": "double"}]


# ----------------------------------------------------------------------------------------------
# Nothing is clipped


@pytest.mark.parametrize("options", STYLES, ids=["paper-single", "talk-double"])
def test_gradient_figures_at_the_first_block_fit(first_block, options):
    for tables in ([first_block["embedded"]], list(first_block.values())):
        figures = every_figure(tables, **options)
        assert set(figures) == {"fig6b_gradient_per_length", "fig6c_total_gradient"}
        for name, fig in figures.items():
            assert "first block" in fig.axes[0].get_ylabel()
            assert clipped(fig) == [], name


@pytest.mark.parametrize("options", STYLES, ids=["paper-single", "talk-double"])
def test_every_figure_of_two_datasets_fits_and_names_them(tmp_path, options):
    figures = every_figure(two_datasets(tmp_path), **options)
    wanted = {f for f in FIGURES if not f.startswith(("depth", "training_dynamics"))}
    assert set(figures) == wanted
    for name, fig in figures.items():
        assert clipped(fig) == [], name
        if name != "fig6a_path_lengths":  # path counts are the same on any data
            texts = " ".join(legend_texts(fig))
            assert "on fashion-mnist" in texts and "on cifar10" in texts, name


def test_depth_and_dynamics_figures_fit():
    tables = committed(
        "results/depth/depth.csv",
        "results/depth/depth_k.csv",
        "results/converged/dynamics/dynamics.csv",
    )
    figures = every_figure(tables, style="paper", width="single")
    assert set(figures) == {f for f in FIGURES if f.startswith(("depth", "training_dynamics"))}
    for name, fig in figures.items():
        assert clipped(fig) == [], name


@pytest.fixture(scope="module")
def lm_tables() -> dict[str, pd.DataFrame]:
    names = ("single", "delete_k", "swaps", "painters", "gradients", "proxies")
    paths = committed(*(f"results/lm/tables/{n}.csv" for n in names))
    return {n: pd.read_csv(p) for n, p in zip(names, paths, strict=True)}


def test_language_model_figures_fit_in_the_house_style(lm_tables):
    t = lm_tables
    lesions = plot_lm_lesions(t["single"], t["delete_k"], t["swaps"])
    painters = plot_lm_painters_gradients(t["painters"], t["gradients"], full=100.0)
    for fig in (lesions, painters):
        assert clipped(fig) == []
        assert not fig.axes[0].spines["top"].get_visible()  # figure_style's, not the default
    # The exact norm ÷ paths is the norm of the mean path gradient, never "per path".
    texts = legend_texts(painters)
    assert " ".join(MEAN_PATH_LABEL.split()) in texts
    assert not any("per path" in text for text in texts)
    grads = t["gradients"]
    (line,) = [ln for ln in painters.axes[1].get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(line.get_ydata(), grads["norm"] / grads["paths"])


def test_proxy_figure_fits_in_the_house_style(lm_tables):
    single, proxies = lm_tables["single"], lm_tables["proxies"]
    panels = {
        "LM, perplexity": (proxies, single_deletion_damage(single, "perplexity")),
        "LM, KL": (proxies, single_deletion_damage(single, "kl")),
    }
    for log in (False, True):
        fig = draw_proxies(panels, damage_label="rise when the unit is deleted", log=log)
        assert clipped(fig) == []
        assert not fig.axes[0].spines["right"].get_visible()


# ----------------------------------------------------------------------------------------------
# The defects, one by one


def drawn_tick_labels(ax, axis: str = "y") -> list[str]:
    ax.figure.draw_without_rendering()
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    which = ax.yaxis if axis == "y" else ax.xaxis
    ticks = [t for t in which.get_major_ticks() if lo * (1 - 1e-9) <= t.get_loc() <= hi * 1.000001]
    return [t.label1.get_text() for t in ticks if t.label1.get_text()]


@pytest.mark.parametrize("decay", [0.97, 0.9, 0.5, 0.1])
def test_a_log_axis_has_three_labels_whatever_it_spans(decay):
    """Single-path norms over less than a decade (decay 0.97 over 6 lengths) up to six decades:
    at least three labelled ticks, and none on the minor ticks."""
    fig = plot_gradient_per_length(gradient_table(6, decay=decay))
    ax = fig.axes[0]
    labels = drawn_tick_labels(ax)
    assert len(labels) >= 3
    assert not any("e+" in label for label in labels)  # 1000, not 1e+03
    assert all(t.label1.get_text() == "" for t in ax.yaxis.get_minor_ticks())


def test_an_error_band_stops_a_decade_below_the_data():
    """Where mean - s.e.m. is 0 or nearly (1e-20 once), the band and the axis stop a decade
    below the smallest value drawn, not at 1e-20."""
    table = gradient_table(6, decay=0.5)
    table["sampled_sem"] = table["sampled_mean"] * (1 - 1e-18)  # mean - sem ~ 1e-20
    table.loc[2, "sampled_sem"] = 2 * table.loc[2, "sampled_mean"]  # below zero
    ax = plot_gradient_per_length(table).axes[0]
    smallest = min(table["sampled_mean"].min(), table["rms_single_path"].min())
    assert ax.get_ylim()[0] >= smallest / 10 * (1 - 1e-9)
    (band,) = ax.collections[:1]
    low = band.get_paths()[0].vertices[:, 1]
    assert low.min() == pytest.approx(smallest / 10)


def test_the_shaded_range_says_which_measure_it_holds():
    table = gradient_table(6)
    sampled = legend_texts(plot_total_gradient(table))[0]
    assert sampled.startswith("shaded: effective range") and "sampled measure" in sampled
    exact_only = table.assign(sampled_mean=np.nan, sampled_total=np.nan)
    assert "of the exact norms" in legend_texts(plot_total_gradient(exact_only))[0]


def test_plot_all_names_the_sidecars_measure_for_the_shaded_range(first_block, tmp_path):
    """The real sidecar's effective range is its sampled 95% range: the legend says so, and
    shades exactly the sidecar's lengths."""
    meta = json.loads(first_block["embedded"].with_suffix(".json").read_text())
    fig = every_figure([first_block["embedded"]])["fig6c_total_gradient"]
    lo, hi = meta["ranges"]["sampled_95"]["lo"], meta["ranges"]["sampled_95"]["hi"]
    share = meta["ranges"]["sampled_95"]["gradient_share"]
    expected = f"shaded: effective range {lo}–{hi} ({100 * share:.0f}% of the paper's sampled"
    assert legend_texts(fig)[0] == f"{expected} measure)"


def test_one_dataset_is_not_named_in_the_legends(tmp_path):
    tables = [p for p in two_datasets(tmp_path) if p.parent.name == "a"]
    for name, fig in every_figure(tables).items():
        assert not any(" on fashion-mnist" in t for t in legend_texts(fig)), name


def test_figure_numbers_are_an_option(tmp_path):
    tables = make_tables(tmp_path / "tables")
    assert figure_title("fig3_single_block") == "Fig. 3 — deleting single blocks"
    assert figure_title("fig3_single_block", numbered=False) == "Deleting single blocks"
    assert figure_title("subnetworks", numbered=False) == TITLES["subnetworks"]
    numbered = every_figure(tables)
    plain = {
        name: draw(title=figure_title(name, False)) if TITLES[name].startswith("Fig.") else None
        for name, draw in plots._figure_jobs(load_tables(tables))
    }
    for name, fig in numbered.items():
        title = fig.axes[0].get_title()
        if TITLES[name].startswith("Fig."):
            assert title.startswith("Fig. "), name
            assert plain[name].axes[0].get_title() == figure_title(name, False), name
    # Through plot_all and the command line.
    runner = CliRunner()
    result = runner.invoke(
        cli, ["plot", str(tables[0]), "--out", str(tmp_path / "f"), "--no-fig-numbers"]
    )
    assert result.exit_code == 0, result.output
    written = plot_all([tables[0]], tmp_path / "g", formats=["png"], fig_numbers=False)
    assert [p.name for p in written] == ["fig3_single_block.png"]
    assert "--no-fig-numbers" in runner.invoke(cli, ["plot", "--help"]).output


def test_a_legend_too_wide_for_one_column_is_wrapped_not_cut():
    """Long series names (two models on two datasets) in a one-column legend: wrapped inside
    the canvas, every word kept."""
    long = "a model with a rather long descriptive name"
    table = pd.concat(
        [
            gradient_table(6).assign(model=long, dataset="fashion-mnist"),
            gradient_table(6, decay=0.5).assign(model=long, dataset="cifar10"),
        ]
    )
    fig = plot_gradient_per_length(table)
    assert clipped(fig) == []
    assert f"{long} on cifar10: root mean square (sign estimator)" in legend_texts(fig)
    assert math.isfinite(fig.legends[0].get_window_extent().width)


def test_the_lm_script_redraws_its_figures_in_the_house_style(tmp_path):
    """``experiments/lm_analyse.py --redraw`` draws both LM figures from its tables (copies of
    the committed ones) through ``lm_plots``, as PNG and PDF."""
    source = committed("results/lm/tables")[0]
    shutil.copytree(source, tmp_path / "tables")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = ROOT / "experiments" / "lm_analyse.py"
    done = subprocess.run(
        [sys.executable, str(script), "--redraw", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == [
        f"{stem}.{ext}"
        for stem in ("lesions", "painters_gradients", "proxies_vs_damage")
        for ext in ("pdf", "png")
    ]
