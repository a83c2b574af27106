"""The depth series: two tiny networks analysed by ``reproduce --model``, then ``depth``; every
number of its table against the sweep and gradient tables it came from, computed here by hand,
and its figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .cli_helpers import invoke as _invoke
from .conftest import save_tiny_checkpoint

TINY = [
    "--dataset", "embedded", "--test-images", "40", "--samples", "2", "--max-k", "2",
    "--max-swaps", "2", "--gradient-images", "4", "--gradient-batches", "2",
    "--samples-per-length", "2", "--sign-draws", "0", "--subnetwork-images", "20",
    "--subnetwork-samples", "0", "--max-exhaustive", "3",
]  # fmt: skip


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("depth")
    for depth, seed in ((8, 1), (14, 2)):
        ckpt = save_tiny_checkpoint(root.parent / f"resnet{depth}.pt", depth, seed)
        result = _invoke("reproduce", "--model", str(ckpt), *TINY, "--out", str(root / f"r{depth}"))
        assert result.exit_code == 0, result.output
    result = _invoke("depth", str(root))
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow
def test_one_row_per_network_from_its_own_tables(series: Path) -> None:
    table = pd.read_csv(series / "depth.csv")
    assert table["network"].tolist() == ["r8", "r14"] and table["blocks"].tolist() == [3, 6]
    for row in table.itertuples():
        single = pd.read_csv(series / row.network / "tables" / "single_resnet.csv")
        full = single.loc[single["config"] == "baseline", "error"].iloc[0]
        errors = single.loc[single["config"] != "baseline", "error"]
        assert len(errors) == row.blocks  # every block deleted once
        assert row.full_error == pytest.approx(full)
        assert row.single_mean == pytest.approx(errors.mean())
        assert row.single_median == pytest.approx(errors.median())
        assert row.single_worst == pytest.approx(errors.max())
        assert row.single_mean_over_full == pytest.approx(errors.mean() / full)
        grads = json.loads((series / row.network / "tables" / "gradients.json").read_text())
        assert (row.effective_lo, row.effective_hi) == (
            grads["effective_lo"],
            grads["effective_hi"],
        )
        assert grads["batches"] == 2 and grads["split"] == "test"  # embedded: no train split
        # The shortest range of lengths holding 95% of the C(n, k) paths, by brute force.
        n = row.blocks
        counts = [math.comb(n, k) for k in range(n + 1)]
        fits = [
            (a, b)
            for a in range(n + 1)
            for b in range(a, n + 1)
            if sum(counts[a : b + 1]) >= 0.95 * 2**n
        ]
        lo, hi = min(fits, key=lambda r: (r[1] - r[0], -sum(counts[r[0] : r[1] + 1])))
        assert (row.paths95_lo, row.paths95_hi) == (lo, hi)


@pytest.mark.slow
def test_k_curves_are_the_mean_error_per_k(series: Path) -> None:
    curves = pd.read_csv(series / "depth_k.csv")
    for network, rows in curves.groupby("network"):
        multi = pd.read_csv(series / str(network) / "tables" / "multi_resnet.csv")
        expected = multi.groupby("k")["error"].mean()
        assert rows.set_index("k")["error"].to_dict() == pytest.approx(expected.to_dict())
        n = int(rows["blocks"].iloc[0])
        assert (rows["k_over_n"] == rows["k"] / n).all()


@pytest.mark.slow
def test_figures_and_summary(series: Path) -> None:
    for name in ("depth_single_block", "depth_delete_k", "depth_gradients"):
        for ext in ("png", "pdf"):
            assert (series / "figures" / f"{name}.{ext}").stat().st_size > 0
    summary = (series / "summary.md").read_text()
    assert summary.startswith("# The depth series\n")
    assert "No 54-block ResNet is analysed yet" in summary
    assert "| r14 | residual | 6 |" in summary


@pytest.mark.slow
def test_a_network_analysed_only_for_its_gradients_joins_the_series(
    series: Path, tmp_path: Path
) -> None:
    """``reproduce --only gradients`` (a deep network's gradients first): its row has the
    gradient columns, NaN for the deletions, and no k-curve."""
    import shutil

    root = tmp_path / "series"
    shutil.copytree(series / "r8", root / "r8")
    (root / "r14" / "tables").mkdir(parents=True)
    for name in ("gradients.csv", "gradients.json"):
        shutil.copy(series / "r14" / "tables" / name, root / "r14" / "tables" / name)
    result = _invoke("depth", str(root))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / "depth.csv").set_index("network")
    grads = json.loads((series / "r14" / "tables" / "gradients.json").read_text())
    partial = table.loc["r14"]
    assert partial["blocks"] == 6 and partial["effective_lo"] == grads["effective_lo"]
    assert partial[["full_error", "single_mean", "single_mean_over_full"]].isna().all()
    assert not math.isnan(table.loc["r8", "full_error"])
    assert set(pd.read_csv(root / "depth_k.csv")["network"]) == {"r8"}
    summary = (root / "summary.md").read_text()
    assert "| r14 | residual | 6 | n/a | n/a / n/a / n/a | n/a |" in summary


def test_a_folder_without_analyses_is_refused_in_one_line(tmp_path: Path) -> None:
    result = _invoke("depth", str(tmp_path))
    assert result.exit_code == 1
    assert "no analysed networks under" in result.stderr


def _export(train_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run ``experiments/depth_series_export.py`` as a user does; it must succeed."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "depth_series_export.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--train", str(train_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_export_stores_float16_weights_that_load_as_the_rounded_network(tmp_path: Path) -> None:
    import torch

    from resnet_ensemble.models.checkpoints import load_checkpoint
    from resnet_ensemble.models.specs import load_model
    from resnet_ensemble.studies.training import TrainConfig, train

    train_dir, out = tmp_path / "train", tmp_path / "checkpoints"
    train_dir.mkdir()
    config = TrainConfig(
        arch="resnet8", dataset="fashion-mnist", out=train_dir / "r8.pt", epochs=1, limit=64,
        test_limit=64, batch_size=32, device="cpu", num_workers=0, active_blocks=2,
    )  # fmt: skip
    result = train(config)
    unfinished = TrainConfig(**{**config.__dict__, "out": train_dir / "late.pt", "epochs": 2})
    with pytest.raises(KeyboardInterrupt):  # a run stopped after its first epoch
        train(
            TrainConfig(**{**unfinished.__dict__, "log": _interrupt_after_epoch_1}),
        )
    proc = _export(train_dir, out)
    assert "skip" in proc.stdout and not (out / "late.pt").exists()  # unfinished: left alone
    raw = load_checkpoint(out / "r8.pt")
    assert raw["optimizer_state"] is None and "extra" not in raw
    floats = [v for v in raw["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    exported = load_model(str(out / "r8.pt"), device="cpu").model.state_dict()
    for key, value in result.model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(exported[key].float() if value.is_floating_point() else exported[key],
                           expected), key  # fmt: skip
    meta = raw["metadata"]
    assert meta["weights_dtype"] == "float16" and meta["trained_sha256"]
    assert 0 <= meta["test_error_float16"] <= 1 and 0 <= meta["test_error_float16_unscaled"] <= 1


@pytest.mark.slow
def test_export_keeps_a_tensor_beyond_float16s_range_in_float32(tmp_path: Path) -> None:
    """A BatchNorm running variance above 65,504 would become infinite in float16 (stochastic
    depth at 110 has one): it stays in float32, and the file loads as the trained network."""
    import torch

    from resnet_ensemble.models.checkpoints import load_checkpoint
    from resnet_ensemble.models.specs import load_model
    from resnet_ensemble.studies.training import TrainConfig, train

    train_dir, out = tmp_path / "train", tmp_path / "checkpoints"
    train_dir.mkdir()
    config = TrainConfig(
        arch="resnet8", dataset="fashion-mnist", out=train_dir / "r8.pt", epochs=1, limit=32,
        test_limit=32, batch_size=32, device="cpu", num_workers=0,
    )  # fmt: skip
    train(config)
    raw = torch.load(config.out, weights_only=True)
    big = "layer1.0.bn1.running_var"
    raw["state_dict"][big] = raw["state_dict"][big] * 0 + 1e5
    torch.save(raw, config.out)
    _export(train_dir, out)
    exported = load_checkpoint(out / "r8.pt")
    assert exported["metadata"]["float32_tensors"] == [big]
    assert exported["state_dict"][big].dtype == torch.float32
    assert exported["state_dict"]["layer1.0.bn1.weight"].dtype == torch.float16
    model = load_model(str(out / "r8.pt"), device="cpu").model  # refuses non-finite weights
    assert torch.equal(model.state_dict()[big], torch.full_like(model.state_dict()[big], 1e5))


def _interrupt_after_epoch_1(line: str) -> None:
    if line.startswith("epoch 1/2"):
        raise KeyboardInterrupt


def _depth_table() -> pd.DataFrame:
    """A depth table by hand: ResNets of 9, 15 and 27 blocks, stochastic depth, the plain net."""
    rows = []
    for network, variant, blocks, full in (
        ("resnet20", "residual", 9, 0.064),
        ("resnet32", "residual", 15, 0.060),
        ("resnet56", "residual", 27, 0.058),
        ("sd20", "stochastic depth", 9, 0.088),
        ("plain20", "plain", 9, 0.068),
    ):
        mean = full + 0.5 / blocks
        rows.append({"network": network, "variant": variant, "blocks": blocks,
                     "full_error": full, "single_mean": mean, "single_median": mean - 0.01,
                     "single_worst": mean + 0.3, "single_mean_over_full": mean / full,
                     "chance_error": 0.9, "effective_lo": 2, "effective_hi": blocks // 2,
                     "paths95_lo": 2, "paths95_hi": blocks - 2,
                     "decay_per_block": 0.6})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ["plot_depth_single_block", "plot_depth_gradients"])
def test_the_right_axis_label_keeps_clear_of_the_title(name: str) -> None:
    """The right panel's y label fits beside its panel, below the figure's title (it ran up
    into the title when it was one long line)."""
    from resnet_ensemble.viz import depth as depth_plots

    fig = getattr(depth_plots, name)(_depth_table())
    fig.canvas.draw()  # the constrained layout is done when drawn
    renderer = fig.canvas.get_renderer()
    right = fig.axes[1]
    label = right.yaxis.label.get_window_extent(renderer)
    assert label.y1 <= right.get_window_extent(renderer).y1
    (title,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
    assert label.y1 < title.get_window_extent(renderer).y0


def test_every_trained_variant_is_drawn_including_a_single_network() -> None:
    """Effective-path training exists at one depth (110): its single-deletion mean is drawn as a
    point at its block count, in a colour of its own, not dropped for having no series."""
    import matplotlib.colors as mcolors
    import seaborn as sns

    from resnet_ensemble.viz import depth as depth_plots

    table = _depth_table()
    ep = {**table.iloc[2].to_dict(), "network": "ep110", "variant": "effective paths",
          "blocks": 54, "single_mean": 0.123, "single_mean_over_full": 1.7}  # fmt: skip
    table = pd.concat([table, pd.DataFrame([ep])], ignore_index=True)
    fig = depth_plots.plot_depth_single_block(table)
    left, right = fig.axes[:2]
    colours = {v: mcolors.to_hex(c) for v, c in zip(
        ("residual", "stochastic depth", "effective paths"),
        [sns.color_palette("colorblind", 10)[i] for i in (0, 2, 4)], strict=True)}  # fmt: skip
    drawn = [
        (mcolors.to_hex(line.get_color()), list(line.get_xdata()), list(line.get_ydata()))
        for line in left.lines
    ]
    assert (colours["effective paths"], [54], [pytest.approx(12.3)]) in drawn
    assert any(c == colours["effective paths"] and y == [pytest.approx(1.7)]
               for c, _, y in ((mcolors.to_hex(ln.get_color()), 0, list(ln.get_ydata()))
                               for ln in right.lines))  # fmt: skip
    assert len({c for c, _, _ in drawn} & set(colours.values())) == 3  # one colour per variant


@pytest.mark.slow
def test_summary_sets_training_variants_at_the_deepest_depth_beside_the_paper(
    series: Path, tmp_path: Path
) -> None:
    """A stochastic-depth and an effective-path network as deep as the deepest ResNet get the
    paper's rows on them (more robust; 5.96% against 6.10%), with their own numbers."""
    import shutil

    root = tmp_path / "series"
    for name in ("r8", "r14"):
        shutil.copytree(series / name, root / name)
    for name, variant in (("sd14", "stochastic depth"), ("ep14", "effective paths")):
        shutil.copytree(series / "r14", root / name)
        sidecar = root / name / "tables" / "single_resnet.json"
        sidecar.write_text(sidecar.read_text().replace('"residual"', json.dumps(variant)))
    result = _invoke("depth", str(root))
    assert result.exit_code == 0, result.output
    single = pd.read_csv(series / "r14" / "tables" / "single_resnet.csv")
    full = single.loc[single["config"] == "baseline", "error"].iloc[0]
    deleted = single.loc[single["config"] != "baseline", "error"]
    ratio = f"{deleted.mean() / full:.2f}"
    summary = (root / "summary.md").read_text()
    assert (
        f"| stochastic depth, one block deleted | more robust than the ResNet | sd14: mean "
        f"{100 * deleted.mean():.2f}% (× {ratio} of its full {100 * full:.2f}%; r14: × {ratio}), "
        f"worst {100 * deleted.max():.2f}% |"
    ) in summary
    assert (
        "| effective-path training, full error | 5.96% (23 of 54 blocks per mini-batch), against "
        f"6.10% | ep14: {100 * full:.2f}%, against {100 * full:.2f}% for r14 |"
    ) in summary


@pytest.mark.slow
def test_networks_of_one_depth_are_summarised_as_a_comparison_not_a_series(
    series: Path, tmp_path: Path
) -> None:
    """Networks that all have the same number of blocks (the converged networks) are not a
    series over depth, and the summary's heading says so, with their common depth."""
    import shutil

    root = tmp_path / "same_depth"
    for name in ("r14", "r14_again"):
        shutil.copytree(series / "r14", root / name)
    result = _invoke("depth", str(root))
    assert result.exit_code == 0, result.output
    summary = (root / "summary.md").read_text()
    assert summary.startswith("# The networks side by side\n")
    blocks = json.loads((series / "r14" / "tables" / "single_resnet.json").read_text())
    assert f"every one with {blocks['num_blocks']} blocks." in summary


def test_the_papers_effective_range_is_drawn_at_its_own_depth_only() -> None:
    """The paper's 5-17 is drawn beside the measured ranges when the series reaches 54 blocks,
    and not at all for a series that stops short of it."""
    from resnet_ensemble.viz import depth as depth_plots

    def ranges_drawn(table: pd.DataFrame) -> list[tuple[float, float]]:
        left = depth_plots.plot_depth_gradients(table).axes[0]
        return [
            (float(seg[0][1]), float(seg[1][1]))
            for coll in left.collections
            for seg in coll.get_segments()
        ]

    shallow = _depth_table()
    assert (5.0, 17.0) not in ranges_drawn(shallow)
    deep = {**shallow.iloc[2].to_dict(), "network": "resnet110", "blocks": 54,
            "effective_lo": 11, "effective_hi": 25, "paths95_lo": 20, "paths95_hi": 34}  # fmt: skip
    assert (5.0, 17.0) in ranges_drawn(pd.concat([shallow, pd.DataFrame([deep])]))


def _one_depth_table() -> pd.DataFrame:
    """Four networks, all of 54 blocks (the converged networks): a comparison, not a series."""
    rows = []
    for network, variant, full in (
        ("resnet110", "residual", 0.063),
        ("fbpreresnet110", "residual", 0.056),
        ("sd110", "stochastic depth", 0.083),
        ("resnet110_swa", "residual", 0.061),
    ):
        rows.append({"network": network, "variant": variant, "blocks": 54, "full_error": full,
                     "single_mean": full + 0.03, "single_median": full + 0.005,
                     "single_worst": full + 0.4, "single_mean_over_full": (full + 0.03) / full,
                     "chance_error": 0.9, "effective_lo": 6, "effective_hi": 18,
                     "paths95_lo": 20, "paths95_hi": 34, "decay_per_block": 0.3})  # fmt: skip
    return pd.DataFrame(rows)


def test_networks_of_one_depth_stand_side_by_side_named_and_unjoined() -> None:
    """With every network at 54 blocks there is no depth axis: each network gets a place named
    on the x axis (ResNets first, then stochastic depth, by name), its marks sit there, and no
    line joins two networks; the gradients figure adds the paper's 5–17 as a column of its own."""
    from resnet_ensemble.viz import depth as depth_plots

    table = _one_depth_table()
    order = ["fbpreresnet110", "resnet110", "resnet110_swa", "sd110"]
    fig = depth_plots.plot_depth_single_block(table)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_xticklabels()] == order
    assert "network by network" in fig.get_suptitle()
    means = {}
    for line in right.lines:
        xs, ys = list(line.get_xdata()), list(line.get_ydata())
        if ys == [1.0, 1.0]:  # the reference line: mean = full
            continue
        assert line.get_linestyle() == "None"
        means.update(zip(xs, ys, strict=True))
    for place, name in enumerate(order):
        full = float(table.set_index("network").loc[name, "full_error"])
        assert means[place] == pytest.approx((full + 0.03) / full)
    fig = depth_plots.plot_depth_gradients(table)
    left = fig.axes[0]
    assert [t.get_text() for t in left.get_xticklabels()] == [*order, "paper"]
    spans = [seg for coll in left.collections for seg in coll.get_segments()]
    assert any(seg[0][0] == pytest.approx(4) and sorted(seg[:, 1]) == [5, 17] for seg in spans)
