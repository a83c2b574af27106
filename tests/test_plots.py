"""Figures from hand-built results tables: what each draws (titles, labels, lines, legend),
what ``plot_all`` writes, and the ``plot`` command's exit codes.

Checks go through matplotlib objects, not pixels. ``make_tables`` builds one small table of each
kind (and, with ``n=54``, paper-sized ones for looking at the figures).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

from resnet_ensemble.cli import cli
from resnet_ensemble.results import sweep_columns
from resnet_ensemble.viz import plots
from resnet_ensemble.viz.plots import (
    TITLES,
    load_table,
    plot_all,
    plot_delete_k,
    plot_gradient_per_length,
    plot_path_lengths,
    plot_reorder,
    plot_single_block,
    plot_stochastic_depth,
    plot_subnetworks,
    plot_total_gradient,
    plot_training,
)

SWEEP = [
    "model", "variant", "sweep", "config", "route", "deleted", "k", "sample", "seed",
    "kendall_tau", "deleted_name", "downsampling", "error", "wrong", "images",
]  # fmt: skip
BASE_ERROR = {"residual": 0.07, "plain": 0.12, "stochastic depth": 0.065}


def _row(variant: str, sweep: str, config: str, error: float, **fields: object) -> dict:
    model = "plain" if variant == "plain" else "resnet"
    return {"model": model, "variant": variant, "sweep": sweep, "config": config, "error": error,
            "images": 1000, "wrong": round(1000 * error), **fields}  # fmt: skip


def single_sweep(variant: str, n: int = 6, down: tuple[int, ...] = (2, 4)) -> pd.DataFrame:
    """Baseline, then each block deleted; downsampling blocks hurt (plain: all at chance)."""
    rng = np.random.default_rng(len(variant))
    base = BASE_ERROR[variant]
    rows = [_row(variant, "single", "baseline", base, k=0, deleted="")]
    for b in range(n):
        if variant == "plain" and b in down:
            continue  # a plain network's downsampling layers cannot be deleted
        hit = {"residual": 0.12, "stochastic depth": 0.04}.get(variant, 0.0) * (b in down)
        err = 0.9 if variant == "plain" else base + 0.01 * rng.random() + hit
        rows.append(_row(variant, "single", f"drop={b}", err, k=1, deleted=str(b),
                         deleted_name=f"layer{b}", downsampling=b in down))  # fmt: skip
    return pd.DataFrame(rows, columns=SWEEP)


def multi_sweep(max_k: int = 4, samples: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [_row("residual", "multi", "baseline", 0.07, k=0, deleted="")]
    for k in range(1, max_k + 1):
        for s in range(samples):
            err = 0.07 + 0.02 * k**1.4 + 0.01 * rng.standard_normal()
            rows.append(_row("residual", "multi", f"k={k},sample={s}", err, k=k, sample=s,
                             seed=0, deleted=",".join(map(str, range(k)))))  # fmt: skip
    return pd.DataFrame(rows, columns=SWEEP)


def reorder_sweep(max_swaps: int = 4, samples: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = [_row("residual", "reorder", "baseline", 0.07, k=0, deleted="", kendall_tau=1.0)]
    for k in range(1, max_swaps + 1):
        for s in range(samples):
            tau = 1 - 0.05 * k - 0.02 * rng.random()
            err = 0.07 + 0.9 * (1 - tau) ** 1.5 + 0.01 * rng.random()
            rows.append(_row("residual", "reorder", f"swaps={k},sample={s}", err, k=k,
                             sample=s, seed=0, kendall_tau=tau))  # fmt: skip
    return pd.DataFrame(rows, columns=SWEEP)


def path_table(n: int = 6) -> pd.DataFrame:
    counts = [math.comb(n, k) for k in range(n + 1)]
    frame = pd.DataFrame({"model": "resnet", "length": range(n + 1), "paths": counts})
    frame["fraction"] = frame["paths"] / 2**n
    frame["cumulative"] = frame["fraction"].cumsum()
    return frame


def gradient_table(n: int = 6, decay: float = 0.25) -> pd.DataFrame:
    """Single-path norms falling exponentially with length, as in the paper."""
    k = np.arange(n + 1)
    paths = np.array([math.comb(n, int(i)) for i in k], dtype=float)
    mean = 0.05 * decay**k
    total = mean * paths
    frame = pd.DataFrame({"model": "resnet", "length": k, "num_paths": paths})
    frame["exact_norm"] = 0.4 * total
    frame["exact_share"] = frame["exact_norm"] / frame["exact_norm"].sum()
    frame["sampled_mean"] = mean
    frame["sampled_std"] = 0.5 * mean
    frame["sampled_sem"] = 0.5 * mean / math.sqrt(100)
    frame["samples"] = 100
    frame["sampled_total"] = total
    frame["sampled_share"] = total / total.sum()
    frame["rms_single_path"] = 1.3 * mean
    order = np.argsort(-total)
    keep = order[: max(1, int(np.searchsorted(np.cumsum(total[order]) / total.sum(), 0.95)) + 1)]
    frame["in_effective_range"] = frame["length"].between(k[keep].min(), k[keep].max())
    return frame


def subnetwork_table(n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for mask in range(2**n):
        kept = [b for b in range(n) if mask >> b & 1]
        err = 0.9 - 0.83 * len(kept) / n + 0.03 * rng.random() * (len(kept) < n)
        rows.append({"model": "resnet", "kept": ",".join(map(str, kept)),
                     "num_kept": len(kept), "error": err, "images": 500})  # fmt: skip
    return pd.DataFrame(rows)


def training_table(epochs: int = 5) -> pd.DataFrame:
    rows = []
    for variant, final in (("residual", 0.061), ("effective paths", 0.0596)):
        for e in range(1, epochs + 1):
            test = final + 0.5 * math.exp(-0.8 * (e - 1))
            rows.append({"variant": variant, "epoch": e, "train_error": test - 0.03,
                         "test_error": final if e == epochs else test})  # fmt: skip
    return pd.DataFrame(rows)


def make_tables(folder: Path, n: int = 6, sidecars: bool = True) -> list[Path]:
    """One CSV per table kind (three single sweeps) in ``folder``; the first with a sidecar
    holding ``num_classes`` where ``sidecars``."""
    down = (2, 4) if n < 12 else (n // 3, 2 * n // 3)
    frames = {
        "single_resnet": single_sweep("residual", n, down),
        "single_plain": single_sweep("plain", n, down),
        "single_stochastic_depth": single_sweep("stochastic depth", n, down),
        "multi_resnet": multi_sweep(max_k=4 if n < 12 else 10, samples=3 if n < 12 else 5),
        "reorder_resnet": reorder_sweep(max_swaps=4 if n < 12 else 10, samples=3),
        "paths": path_table(n),
        "gradients": gradient_table(n),
        "subnetworks": subnetwork_table(4 if n < 12 else 10),
        "training": training_table(5 if n < 12 else 60),
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in frames.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    if sidecars:
        (folder / "single_resnet.json").write_text(
            json.dumps({"table": "sweep", "num_classes": 10})
        )
        (folder / "gradients.json").write_text(json.dumps({"table": "gradients"}))
    return written


def legend_texts(fig: Figure) -> list[str]:
    """The legends' labels, with the line breaks of labels wrapped to fit read as spaces."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    texts = [t.get_text() for leg in legends if leg is not None for t in leg.get_texts()]
    return [" ".join(text.split()) for text in texts]


def lines_by_gid(fig: Figure, gid: str) -> list:
    return [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == gid]


@pytest.fixture
def sweeps() -> pd.DataFrame:
    return pd.concat(
        [single_sweep(v) for v in ("residual", "plain", "stochastic depth")], ignore_index=True
    )


# ----------------------------------------------------------------------------------------------
# One figure each


def test_single_block_draws_both_variants_baselines_downsampling_and_chance(sweeps):
    fig = plot_single_block(sweeps, variants=["residual", "plain"], num_classes=10)
    ax = fig.axes[0]
    assert ax.get_title() == TITLES["fig3_single_block"] == "Fig. 3 — deleting single blocks"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("deleted block (index)", "test error (%)")
    texts = legend_texts(fig)
    assert {"residual", "plain", "full network", "downsampling block"} <= set(texts)
    assert "chance (90%)" in texts and "stochastic depth" not in texts
    for variant in ("residual", "plain"):
        (line,) = lines_by_gid(fig, f"baseline:{variant}")
        assert line.get_ydata() == pytest.approx([100 * BASE_ERROR[variant]] * 2)
    (chance,) = lines_by_gid(fig, "chance")
    assert chance.get_ydata()[0] == pytest.approx(90.0)
    # the residual series: one point per block, in %, at the deleted block's index
    res = single_sweep("residual")
    series = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 6]
    assert any(np.allclose(ln.get_ydata(), 100 * res["error"].iloc[1:]) for ln in series)
    assert len(ax.patches) == 2  # one shaded band per downsampling block (2 and 4)


def test_single_block_without_num_classes_draws_no_chance_line(sweeps):
    fig = plot_single_block(sweeps)
    assert not lines_by_gid(fig, "chance")
    assert {"residual", "plain", "stochastic depth"} <= set(legend_texts(fig))


def test_stochastic_depth_figure_compares_with_residual_only(sweeps):
    fig = plot_stochastic_depth(sweeps, num_classes=10)
    assert not lines_by_gid(fig, "chance")  # errors far below chance: not drawn
    assert fig.axes[0].get_title() == TITLES["fig8_stochastic_depth"]
    texts = legend_texts(fig)
    assert "residual" in texts and "stochastic depth" in texts and "plain" not in texts


def test_single_block_refuses_a_table_without_single_deletions():
    with pytest.raises(ValueError, match="single"):
        plot_single_block(multi_sweep())


def test_delete_k_starts_at_the_baseline_with_a_band():
    fig = plot_delete_k(multi_sweep(max_k=4, samples=3))
    ax = fig.axes[0]
    assert ax.get_title() == "Fig. 5a — deleting k blocks"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("blocks deleted (k)", "test error (%)")
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 2, 3, 4]
    assert line.get_ydata()[0] == pytest.approx(7.0)
    assert len(ax.collections) == 1  # the s.d. band
    assert ax.get_legend().get_title().get_text() == "mean ± s.d. over 3 samples"


def test_reorder_reverses_tau_and_joins_means_per_swap_count():
    table = reorder_sweep(max_swaps=4, samples=3)
    fig = plot_reorder(table)
    ax = fig.axes[0]
    assert ax.get_title() == "Fig. 5b — reordering blocks"
    assert ax.xaxis_inverted()
    line, medians = ax.get_lines()
    assert len(line.get_xdata()) == 5  # the original order and 1..4 swaps
    assert max(line.get_xdata()) == pytest.approx(1.0)
    assert medians.get_linestyle() == "--" and len(medians.get_xdata()) >= 1
    assert set(legend_texts(fig)) == {"residual", "one configuration", "median in bins of τ"}


def test_reorder_medians_in_bins_of_tau_by_hand():
    from resnet_ensemble.viz.lesion_figures import medians_in_tau_bins

    points = pd.DataFrame(
        {
            "series": "residual",
            "k": [0, 1, 1, 1, 2, 2, 2, 2],
            "kendall_tau": [1.0, 0.95, 0.9, 0.92, 0.1, 0.12, 0.15, 0.2],
            "value": [0.05, 0.2, 0.9, 0.3, 0.5, 0.9, 0.6, 0.7],
        }
    )
    # Two bins over [0.1, 1]: 0.1-0.55 holds the four k = 2 draws (median 0.65 at tau 0.135),
    # 0.55-1 the three k = 1 draws (median 0.3 at tau 0.92); the baseline is not a draw.
    binned = medians_in_tau_bins(points, bins=2, least=3)
    assert binned["median"].tolist() == pytest.approx([0.65, 0.3])
    assert binned["tau"].tolist() == pytest.approx([0.135, 0.92])
    assert binned["count"].tolist() == [4, 3]
    assert medians_in_tau_bins(points, bins=2, least=4)["count"].tolist() == [4]


def test_path_lengths_bars_and_shortest_central_range():
    fig = plot_path_lengths(path_table(6))
    ax = fig.axes[0]
    assert ax.get_title() == "Fig. 6a — path lengths"
    assert ax.get_xlabel() == "path length (blocks)"
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    assert heights[-1] == pytest.approx(100 * 20 / 64, abs=1e-5)  # C(6, 3) / 2^6
    # 1..5 holds 62/64 = 96.9% of paths, the shortest range with 95%; mean ± 1.96 sd is
    # 3 ± 2.4 -> 0..6 rounded outward, all 64 paths.
    assert legend_texts(fig) == [
        "95% of paths: lengths 1–5 (96.9%); as mean ± 1.96 sd: 0–6 (100.0%)"
    ]


@pytest.mark.parametrize("n", [3, 9, 20, 54])
def test_path_lengths_shades_the_shortest_range_of_binomial_counts(n):
    lo, hi = brute_force_shortest_range([math.comb(n, k) for k in range(n + 1)], 0.95)
    assert shaded_cells(plot_path_lengths(path_table(n)), "path range") == pytest.approx((lo, hi))


def test_path_lengths_uses_a_given_range():
    fig = plot_path_lengths(path_table(54), lo=19, hi=35)
    # 54 blocks: the paper's 19–35 (27 ± 7.2 rounded outward) holds 98.0%; the shortest range
    # with 95% is 20–34 (96.0%), both counted from C(54, k) / 2^54.
    held = sum(math.comb(54, k) for k in range(19, 36)) / 2**54
    assert legend_texts(fig)[0] == (
        f"95% of paths: lengths 19–35 ({100 * held:.1f}%); as mean ± 1.96 sd: 19–35 (98.0%)"
    )


def test_gradient_per_length_is_log_scaled_and_draws_every_estimate():
    fig = plot_gradient_per_length(gradient_table(6))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "Fig. 6b — single-path gradient"
    assert ax.get_ylabel() == "single-path gradient norm\n(at the image; batch norm)"
    # Single-path measures only: the exact norm ÷ paths is the mean path's, never drawn here.
    assert len(ax.get_lines()) == 2
    assert legend_texts(fig) == ["sampled mean ± s.e.m.", "root mean square (sign estimator)"]


def test_gradient_per_length_draws_only_what_is_present():
    table = gradient_table(6).drop(columns=["sampled_mean", "sampled_std", "sampled_sem"])
    fig = plot_gradient_per_length(table)
    assert legend_texts(fig) == ["root mean square (sign estimator)"]
    with pytest.raises(ValueError, match="no single-path"):  # the exact norm alone is not one
        plot_gradient_per_length(table.assign(rms_single_path=np.nan))


def test_gradient_figures_name_where_and_how_they_measured():
    table = gradient_table(6).assign(measured_at="blocks", norm="per_image")
    ax = plot_gradient_per_length(table).axes[0]
    # Wrapped to the axes' height (test_figure_fit checks that it fits), words kept.
    assert " ".join(ax.get_ylabel().split()) == (
        "single-path gradient norm (at the first block's input; mean per-image norm)"
    )


def test_several_models_get_a_colour_each():
    table = pd.concat([gradient_table(6), gradient_table(8, decay=0.5).assign(model="deep")])
    for fig in (plot_gradient_per_length(table), plot_total_gradient(table)):
        lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata())]
        by_model = {}
        for ln in lines:
            by_model.setdefault(len(ln.get_xdata()), set()).add(mpl.colors.to_hex(ln.get_color()))
        assert len(by_model[7]) == 1 and len(by_model[9]) == 1  # one colour within a model
        assert by_model[7] != by_model[9]  # a different one between models


def test_total_gradient_shades_the_effective_range():
    fig = plot_total_gradient(
        gradient_table(6), effective_lo=0, effective_hi=2, effective_share=0.9
    )
    ax = fig.axes[0]
    assert ax.get_title() == "Fig. 6c — total gradient per length"
    texts = legend_texts(fig)
    assert texts[0] == "shaded: effective range 0–2 (90% of the paper's sampled measure)"
    assert texts[1:] == ["sampled mean × paths (the paper's)", "exact, norm of the per-length sum"]
    # Both as shares of their own total, on one scale.
    table = gradient_table(6)
    total = table["sampled_total"].to_numpy()
    assert np.allclose(ax.get_lines()[0].get_ydata(), 100 * total / total.sum())
    exact = table["exact_norm"].to_numpy()
    assert np.allclose(ax.get_lines()[1].get_ydata(), 100 * exact / exact.sum())
    assert ax.get_ylabel().startswith("share of the total (%)")


def brute_force_shortest_range(weights: list[float], share: float) -> tuple[int, int]:
    """Every range [lo, hi] tried: the shortest holding ``share`` of the weights, then the one
    holding most, then the lowest."""
    total = sum(weights)
    fits = [
        (hi - lo, -sum(weights[lo : hi + 1]), lo, hi)
        for lo in range(len(weights))
        for hi in range(lo, len(weights))
        if sum(weights[lo : hi + 1]) >= share * total
    ]
    _, _, lo, hi = min(fits)
    return lo, hi


def shaded_cells(fig: Figure, gid: str) -> tuple[float, float]:
    (span,) = [p for p in fig.axes[0].patches if p.get_gid() == gid]
    xs = [x for x, _ in span.get_path().transformed(span.get_patch_transform()).vertices]
    return min(xs) + 0.5, max(xs) - 0.5  # the span covers whole cells, lo - 0.5 .. hi + 0.5


@pytest.mark.parametrize("n", [6, 9, 15, 54])
@pytest.mark.parametrize("decay", [1.0, 0.25])
def test_total_gradient_without_a_range_shades_the_shortest_one_holding_95_percent(n, decay):
    """Without the sidecar's range the figure shades the shortest range of lengths holding 95%
    of the gradient. With every single path alike (decay 1) the total per length is the
    number of paths, Binomial(n, 1/2) counts: the effective range is then the 95% of paths."""
    table = gradient_table(n, decay=decay)
    fig = plot_total_gradient(table)
    totals = [math.comb(n, k) * 0.05 * decay**k for k in range(n + 1)]
    lo, hi = brute_force_shortest_range(totals, 0.95)
    assert shaded_cells(fig, "effective range") == pytest.approx((lo, hi))
    held = sum(totals[lo : hi + 1]) / sum(totals)
    of = f"{100 * held:.0f}% of the paper's sampled measure"
    assert legend_texts(fig)[0] == f"shaded: effective range {lo}–{hi} ({of})"


def test_total_gradient_of_several_models_shades_no_range():
    table = pd.concat([gradient_table(6), gradient_table(8).assign(model="deep")])
    assert not [p for p in plot_total_gradient(table).axes[0].patches if p.get_gid()]


def test_subnetworks_points_mean_and_full_network():
    table = subnetwork_table(4)
    fig = plot_subnetworks(table)
    ax = fig.axes[0]
    assert ax.get_title() == "Sub-networks — error by blocks kept"
    assert ax.get_xlabel() == "blocks kept (of 4)"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 16  # one point per subset
    (full,) = lines_by_gid(fig, "full network")
    assert full.get_ydata()[0] == pytest.approx(100 * table["error"].iloc[-1])


def test_training_bars_and_curves():
    fig = plot_training(training_table(5))
    bar_ax, curve_ax = fig.axes
    assert fig.get_suptitle() == "Training on effective paths only"
    labels = [t.get_text() for t in bar_ax.texts]  # the value on each bar
    assert labels == ["6.10", "5.96"]
    assert len(curve_ax.get_lines()) == 4  # test and train error per variant
    assert legend_texts(fig) == ["residual", "effective paths", "test", "train"]


def test_plot_functions_draw_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_delete_k(multi_sweep(), ax=ax) is fig
    assert ax.get_legend() is not None and not fig.legends


def test_talk_style_uses_larger_fonts(sweeps):
    paper = plot_single_block(sweeps, style="paper").axes[0].title.get_fontsize()
    talk = plot_single_block(sweeps, style="talk").axes[0].title.get_fontsize()
    assert talk > paper


# ----------------------------------------------------------------------------------------------
# Sweeps in other metrics than error


def in_metric(frame: pd.DataFrame, metric: str, scale: float = 1.0) -> pd.DataFrame:
    """A sweep table as ``sweep --metric METRIC`` writes it: the value column named after the
    metric, ``wrong`` as ``sum``."""
    renamed = frame.rename(columns={"error": metric, "wrong": "sum"})
    renamed[metric] = scale * frame["error"]
    return renamed[sweep_columns(metric)]


def test_a_top5_sweep_is_drawn_in_top5_as_percent(sweeps):
    table = in_metric(sweeps, "top5", 0.5)
    fig = plot_single_block(table, variants=["residual"])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "top-5 test error (%)"
    res = single_sweep("residual")
    series = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 6]
    assert any(np.allclose(ln.get_ydata(), 50 * res["error"].iloc[1:]) for ln in series)
    (base,) = lines_by_gid(fig, "baseline:residual")
    assert base.get_ydata()[0] == pytest.approx(50 * BASE_ERROR["residual"])


def test_a_loss_sweep_is_drawn_as_it_is_with_the_loss_of_a_guess():
    """Loss is no fraction: drawn unscaled; a uniform guess over 10 classes scores ln 10."""
    table = in_metric(single_sweep("plain"), "loss", 3.0)  # 0.9 -> 2.7 nats, above ln(10) / 2
    fig = plot_single_block(table, num_classes=10)
    assert fig.axes[0].get_ylabel() == "test loss (cross-entropy, nats)"
    (chance,) = lines_by_gid(fig, "chance")
    assert chance.get_ydata()[0] == pytest.approx(math.log(10))
    assert f"chance ({math.log(10):.3g})" in legend_texts(fig)
    fig = plot_delete_k(in_metric(multi_sweep(), "loss", 3.0))
    (line,) = fig.axes[0].get_lines()
    assert line.get_ydata()[0] == pytest.approx(3.0 * 0.07)  # the baseline at k = 0


def test_reorder_in_another_metric():
    fig = plot_reorder(in_metric(reorder_sweep(), "kl"))
    assert fig.axes[0].get_ylabel() == "KL from the full network (nats)"


@pytest.mark.parametrize("sidecar", [True, False])
def test_plot_all_draws_sweeps_of_any_metric_named_after_it(tmp_path, sidecar):
    tables = tmp_path / "tables"
    tables.mkdir()
    frames = {
        "single_top5": in_metric(single_sweep("residual"), "top5"),
        "multi_loss": in_metric(multi_sweep(), "loss"),
        "single_error": single_sweep("residual"),
    }
    for name, frame in frames.items():
        frame.to_csv(tables / f"{name}.csv", index=False)
        if sidecar:
            meta = {"table": "sweep", "metric": name.split("_")[1], "num_classes": 10}
            (tables / f"{name}.json").write_text(json.dumps(meta))
    written = plot_all([tables], tmp_path / "figs", formats=["png"])
    assert [p.name for p in written] == [
        "fig3_single_block.png",
        "fig3_single_block_top5.png",
        "fig5a_delete_k_loss.png",
    ]


def test_cli_plot_draws_a_top5_sweep(tmp_path):
    path = tmp_path / "single_top5.csv"
    in_metric(single_sweep("residual"), "top5").to_csv(path, index=False)
    out = tmp_path / "figs"
    result = CliRunner().invoke(cli, ["plot", str(path), "--out", str(out), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(out / "fig3_single_block_top5.png")]


# ----------------------------------------------------------------------------------------------
# Tables and plot_all


def test_tables_are_recognised_with_and_without_sidecars(tmp_path):
    kinds = [load_table(p).kind for p in make_tables(tmp_path, sidecars=False)]
    assert kinds == ["sweep"] * 5 + ["paths", "gradients", "subnetworks", "training"]


def test_a_table_lacking_columns_is_refused_in_one_line(tmp_path):
    path = tmp_path / "odd.csv"
    subnetwork_table().drop(columns=["error"]).to_csv(path, index=False)
    with pytest.raises(ValueError) as info:
        load_table(path)
    message = str(info.value)
    assert "odd.csv" in message and "'error'" in message and "subnetworks" in message
    assert "\n" not in message
    path.with_suffix(".json").write_text(json.dumps({"table": "sweep"}))
    with pytest.raises(ValueError, match=r"a sweep table \(per its sidecar\)"):
        load_table(path)


def test_plot_all_writes_png_and_pdf_for_every_figure(tmp_path):
    written = plot_all(make_tables(tmp_path / "tables"), tmp_path / "figs")
    # No depth or dynamics tables among them: their figures have tests of their own.
    paper = [n for n in plots.FIGURES if not n.startswith("depth_") and n != "training_dynamics"]
    assert sorted(p.name for p in written) == sorted(
        f"{name}.{fmt}" for name in paper for fmt in ("png", "pdf")
    )
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".pdf":
            assert data.startswith(b"%PDF")
            continue
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # stored per metre
            assert image.size[0] == round(3.5 * 150)  # a journal column
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary files left behind


def test_plot_all_draws_only_what_the_tables_allow(tmp_path):
    tables = make_tables(tmp_path / "tables")
    written = plot_all([tables[0], tables[5]], tmp_path / "figs", width="double", formats=["png"])
    assert [p.name for p in written] == ["fig3_single_block.png", "fig6a_path_lengths.png"]
    with Image.open(written[0]) as image:
        assert image.size[0] == round(7.1 * 150)


def test_plot_all_refuses_tables_with_nothing_to_draw(tmp_path):
    path = tmp_path / "baseline_effective_paths.csv"
    single_sweep("residual").iloc[:1].to_csv(path, index=False)
    with pytest.raises(ValueError, match="no figure can be drawn .* expected sweep tables"):
        plot_all([path], tmp_path / "figs")


# ----------------------------------------------------------------------------------------------
# The plot command


def test_cli_plot_writes_the_figures(tmp_path):
    tables = make_tables(tmp_path / "tables")[:2]
    out = tmp_path / "figs"
    result = CliRunner().invoke(cli, ["plot", *map(str, tables), "--out", str(out),
                                      "--format", "png"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(out / "fig3_single_block.png")]
    assert (out / "fig3_single_block.png").is_file()


def test_cli_plot_wrong_columns_exit_1_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["plot", str(path), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.csv" in lines[0]


def test_cli_plot_missing_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "nope.csv"), "--out", "figs"])
    assert result.exit_code == 2


def test_cli_plot_out_that_is_a_file_exit_1_before_drawing(tmp_path):
    tables = make_tables(tmp_path / "tables")[:1]
    out = tmp_path / "taken"
    out.write_text("not a folder")
    result = CliRunner().invoke(cli, ["plot", str(tables[0]), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        result.output.strip() == f"error: cannot write figures to {out}: it is a file, not a folder"
    )


def test_cli_plot_out_under_a_file_exit_1(tmp_path):
    tables = make_tables(tmp_path / "tables")[:1]
    result = CliRunner().invoke(cli, ["plot", str(tables[0]), "--out", str(tables[0] / "figs")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: cannot write figures to {tables[0] / 'figs'}: {tables[0]} is a file, not a folder"
    )


def test_cli_plot_takes_folders_and_skips_what_it_does_not_know(tmp_path):
    tables = make_tables(tmp_path / "results" / "tables")
    (tmp_path / "results" / "notes.csv").write_text("a,b\n1,2\n")  # no kind the plots know
    out = tmp_path / "figs"
    result = CliRunner().invoke(
        cli, ["plot", str(tmp_path / "results"), "--out", str(out), "--format", "png"]
    )
    assert result.exit_code == 0, result.output
    assert "note: skipped" in result.stderr and "notes.csv" in result.stderr
    direct = plot_all(tables, tmp_path / "direct", formats=["png"])
    assert sorted(result.stdout.split()) == sorted(str(out / p.name) for p in direct)


def test_a_training_history_as_train_writes_it_is_plotted(tmp_path):
    """``train`` writes CKPT.history.csv beside the checkpoint, without a variant column."""
    from resnet_ensemble.results import HISTORY_COLUMNS

    path = tmp_path / "r20.history.csv"
    rows = [dict.fromkeys(HISTORY_COLUMNS, 0.5) | {"epoch": e} for e in (1, 2, 3)]
    pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(path, index=False)
    assert load_table(path).kind == "history"
    written = plot_all([path], tmp_path / "figs", formats=["png"])
    assert [p.name for p in written] == ["effective_paths_training.png"]


def test_the_jittered_subnetworks_figure_is_the_same_file_every_time(tmp_path):
    tables = make_tables(tmp_path / "tables")
    subnetworks = [t for t in tables if t.stem == "subnetworks"]
    first = plot_all(subnetworks, tmp_path / "a", formats=["png"])
    second = plot_all(subnetworks, tmp_path / "b", formats=["png"])
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_histories_give_way_to_a_training_table(tmp_path):
    """A reproduce folder holds training.csv and the histories it was made from: the figure is
    the training table's, drawn once."""
    from resnet_ensemble.results import HISTORY_COLUMNS

    tables = make_tables(tmp_path / "tables")
    training = [t for t in tables if t.stem == "training"]
    history = tmp_path / "tables" / "resnet.history.csv"
    rows = [dict.fromkeys(HISTORY_COLUMNS, 0.5) | {"epoch": e} for e in (1, 2)]
    pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(history, index=False)
    alone = plot_all(training, tmp_path / "a", formats=["png"])
    both = plot_all([*training, history], tmp_path / "b", formats=["png"])
    assert [p.read_bytes() for p in alone] == [p.read_bytes() for p in both]
