"""``ensemble-lesion gradients``: the per-length table against every single path's gradient
taken by hand with autograd, the effective ranges against a brute-force search, the report and
its figures, and the refusals."""

from __future__ import annotations

import json
import math
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_ensemble.data.datasets import load_dataset

from .cli_helpers import invoke as _invoke
from .cli_helpers import one_error_line as _one_error_line
from .conftest import save_tiny_checkpoint
from .reference import _cifar_shortcut, cifar_blocks, cifar_forward, reference_model

KWARGS = {"num_classes": 10, "in_channels": 1}
N = 3  # ResNet-8: one block per stage, the last two downsampling (option A)
IMAGES = 6
SAMPLES = 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet8.pt", 8, 5)


def _batch(images: int) -> tuple[Tensor, Tensor]:
    data = load_dataset("embedded", "test", limit=images)
    x = torch.stack([data[i][0] for i in range(len(data))])
    return x, torch.tensor([data[i][1] for i in range(len(data))])


def _single_path_gradients(model: nn.Module, x: Tensor, y: Tensor) -> dict[frozenset, Tensor]:
    """The input gradient of the mean cross entropy along each of the 2^n paths, by hand: at
    the full network's activations, back through the fc head, then per block through the ReLU
    after the addition and into either the residual branch (blocks in the path) or the
    shortcut (all others), then through the stem."""
    blocks = cifar_blocks(model)
    x0 = x.clone().requires_grad_()
    stem = torch.relu(model.bn1(model.conv1(x0)))
    h, pieces = stem.detach(), []
    for blk in blocks:
        a, b = h.clone().requires_grad_(), h.clone().requires_grad_()
        short = _cifar_shortcut(blk, a)
        res = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(b))))) * blk.drop_path.survival
        pre = short + res
        pieces.append((a, b, short, res, pre.detach()))
        h = torch.relu(pre).detach()
    top = h.requires_grad_()
    (g_top,) = torch.autograd.grad(F.cross_entropy(model.fc(top.mean(dim=(2, 3))), y), top)
    out = {}
    for k in range(len(blocks) + 1):
        for path in combinations(range(len(blocks)), k):
            g = g_top
            for i in reversed(range(len(blocks))):
                a, b, short, res, pre = pieces[i]
                g = g * (pre > 0)
                branch, leaf = (res, b) if i in path else (short, a)
                g = g if branch is leaf else torch.autograd.grad(branch, leaf, g, True)[0]
            out[frozenset(path)] = torch.autograd.grad(stem, x0, g, retain_graph=True)[0]
    return out


def _shortest_range(weights: list[float], share: float) -> tuple[int, int]:
    """Brute force: the fewest lengths holding ``share``, then the most held, then lowest."""
    total = sum(weights)
    ranges = [(a, b) for a in range(len(weights)) for b in range(a, len(weights))]
    fits = [r for r in ranges if sum(weights[r[0] : r[1] + 1]) >= share * total]
    return min(fits, key=lambda r: (r[1] - r[0], -sum(weights[r[0] : r[1] + 1]), r[0]))


# ----------------------------------------------------------------------------------------------
# Numbers


def test_the_table_against_every_paths_gradient_by_hand(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    result = _invoke(
        "gradients", "--model", str(checkpoint), "--images", str(IMAGES), "--limit",
        str(IMAGES), "--batches", "1", "--samples-per-length", str(SAMPLES), "--sign-draws", "4",
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    # One random batch of all 6 images (the embedded data have only a test split): the same
    # images as the first 6 in some order, which the mean-loss gradient's norms do not see.
    assert meta["images"] == IMAGES and meta["n"] == N and meta["table"] == "gradients"
    assert meta["batches"] == 1 and meta["batch_size"] == IMAGES and meta["split"] == "test"
    assert meta["measured_at"] == "image" and meta["norm"] == "batch"
    assert set(table["measured_at"]) == {"image"} and set(table["norm"]) == {"batch"}

    model = reference_model(checkpoint)
    x, y = _batch(IMAGES)
    paths = _single_path_gradients(model, x, y)
    xg = x.clone().requires_grad_()
    route = [(b, True) for b in cifar_blocks(model)]
    (full,) = torch.autograd.grad(F.cross_entropy(cifar_forward(model, xg, route), y), xg)
    torch.testing.assert_close(sum(paths.values()), full)  # the reference splits the gradient

    assert table["length"].tolist() == list(range(N + 1))
    assert table["num_paths"].tolist() == [math.comb(N, k) for k in range(N + 1)]
    by_length = [sum(g for p, g in paths.items() if len(p) == k) for k in range(N + 1)]
    exact = [float(g.norm()) for g in by_length]
    assert table["exact_norm"].tolist() == pytest.approx(exact, rel=1e-4)
    assert table["exact_share"].sum() == pytest.approx(1.0)

    # The paper's estimator: the mean norm of single random paths of each length.
    norms = {k: [float(g.norm()) for p, g in paths.items() if len(p) == k] for k in range(N + 1)}
    assert (table["samples"] == SAMPLES).all()
    for k in (0, N):  # one path only: every sample is that path
        assert table["sampled_mean"][k] == pytest.approx(norms[k][0], rel=1e-4)
        assert table["sampled_std"][k] == pytest.approx(0.0, abs=1e-6 * norms[k][0])
        assert table["rms_single_path"][k] == pytest.approx(norms[k][0], rel=1e-4)
    for k in range(1, N):
        assert min(norms[k]) * (1 - 1e-4) <= table["sampled_mean"][k] <= max(norms[k]) * (1 + 1e-4)
    assert len({round(v, 6) for k in range(1, N) for v in norms[k]}) > 2  # paths do differ
    totals = (table["sampled_mean"] * table["num_paths"]).tolist()
    assert table["sampled_total"].tolist() == pytest.approx(totals)

    # Effective paths: shortest ranges of lengths holding 90% / 95%, by brute force.
    for share in (0.9, 0.95):
        for key, weights in (("sampled", totals), ("exact", exact)):
            r = meta["ranges"][f"{key}_{int(100 * share)}"]
            lo, hi = _shortest_range(weights, share)
            assert (r["lo"], r["hi"]) == (lo, hi), key
            held = sum(weights[lo : hi + 1]) / sum(weights)
            assert r["gradient_share"] == pytest.approx(held, rel=1e-6)
            in_range = sum(math.comb(N, k) for k in range(lo, hi + 1)) / 2**N
            assert r["path_share"] == pytest.approx(in_range)
    headline = meta["ranges"]["sampled_95"]
    assert (meta["effective_lo"], meta["effective_hi"]) == (headline["lo"], headline["hi"])
    in_eff = [headline["lo"] <= k <= headline["hi"] for k in range(N + 1)]
    assert table["in_effective_range"].tolist() == in_eff
    assert f"lengths {headline['lo']}-{headline['hi']}" in result.stdout

    # The single-path norm's fall per block: a least-squares line on a log axis.
    slope = np.polyfit(np.arange(N + 1), np.log(table["sampled_mean"]), 1)[0]
    decay = meta["single_path_decay"]
    assert decay["measure"] == "sampled_mean"
    assert decay["factor_per_block"] == pytest.approx(math.exp(slope), rel=1e-9)


def test_printing_only_writes_nothing(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(
        "gradients", "--model", str(checkpoint), "--images", "2",
        "--samples-per-length", "0", "--sign-draws", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []  # no results/ folder appears
    header = next(ln for ln in result.stdout.splitlines() if ln.split()[:1] == ["length"])
    assert "exact norm" in header and "sampled" not in header and "rms" not in header
    rows = [ln.split() for ln in result.stdout.splitlines() if re.match(r"^\s+\d+\s+\d+\s", ln)]
    assert [int(r[0]) for r in rows] == list(range(N + 1))
    assert "95% of the exact per-length gradient norm: lengths" in result.stdout


# ----------------------------------------------------------------------------------------------
# The report


def test_the_report_holds_table_range_paper_and_figures(checkpoint: Path, tmp_path: Path) -> None:
    report = tmp_path / "rep" / "grad.md"
    result = _invoke(
        "gradients", "--model", str(checkpoint), "--images", "4",
        "--samples-per-length", "6", "--sign-draws", "2", "--report", str(report),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = report.read_text()
    table_path = report.with_suffix(".csv")  # no --out: the table goes beside the report
    meta = json.loads(table_path.with_suffix(".json").read_text())
    table = pd.read_csv(table_path)

    assert "resnet8" in text and str(checkpoint) in text and meta["checkpoint_sha256"] in text
    assert "embedded test split" in text and "4 images" in text
    # The per-length table: one Markdown row per length, with the stored exact norms.
    section = text.split("## Per length", 1)[1].split("##", 1)[0]
    rows = [ln for ln in section.splitlines() if re.match(r"^\|\s*\d+\s*\|", ln)]
    assert [int(r.split("|")[1]) for r in rows] == list(range(N + 1))
    for row, norm in zip(rows, table["exact_norm"], strict=True):
        assert float(row.split("|")[3]) == pytest.approx(norm, rel=1e-3)
    # The effective range, and the comparison with the paper's numbers.
    lo, hi = meta["effective_lo"], meta["effective_hi"]
    assert f"| effective range | 5–17 (0.45% of paths) | {lo}–{hi} " in text
    assert "| 95% of paths (mean ± 1.96 sd) | 19–35 |" in text
    assert f"| blocks | 54 | {N} |" in text
    # Figures: linked relative to the report, and there.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {Path(link).name for link in links} == {
        "fig6b_gradient_per_length.png",
        "fig6c_total_gradient.png",
    }
    for link in links:
        assert (report.parent / link).is_file(), link
        assert (report.parent / link).with_suffix(".pdf").is_file()


# ----------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("flag", ["--out", "--report"])
def test_an_unwritable_output_is_refused_before_the_model_is_read(
    flag: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _invoke(
        "gradients", "--model", str(tmp_path / "missing.pt"), flag, str(blocker / "g.md")
    )
    line = _one_error_line(result)
    assert str(blocker) in line and "missing.pt" not in line


@pytest.mark.parametrize(
    "args",
    [
        ["--sign-draws", "1"],
        ["--sign-draws", "-1"],
        ["--samples-per-length", "-1"],
        ["--images", "0"],
        ["--report", "g.csv"],
        ["--out", "g.md", "--report", "g.md"],
    ],
)
def test_bad_options_are_usage_errors(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("gradients", "--model", "missing.pt", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# The paper's protocol: random batches of the training split, by seed


def test_batches_come_from_the_training_split_and_follow_the_seed(checkpoint: Path) -> None:
    from resnet_ensemble.data.datasets import dataset_info, open_fashion_mnist
    from resnet_ensemble.studies.experiment import open_experiment

    exp = open_experiment(str(checkpoint), dataset="fashion-mnist", limit=8, device="cpu")
    assert exp.gradient_split("auto") == "train"
    first = exp.random_batches(16, 3, seed=0)
    again = exp.random_batches(16, 3, seed=0)
    other = exp.random_batches(16, 3, seed=1)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    assert not torch.equal(first[0][0], first[1][0])  # each batch is a fresh draw
    # Every image is a training image (with its label), normalised as for testing.
    raw = open_fashion_mnist("train")
    info = dataset_info("fashion-mnist")
    train = (raw.data.float() / 255 - info.mean[0]) / info.std[0]  # (60000, 28, 28)
    flat = train.flatten(1)
    for x, y in first:
        for image, label in zip(x, y, strict=True):
            hits = (flat == image.flatten()).all(1).nonzero().flatten().tolist()
            assert hits and any(int(raw.targets[i]) == int(label) for i in hits)


def test_the_table_follows_the_seed(checkpoint: Path, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> pd.DataFrame:
        out = tmp_path / name
        result = _invoke(
            "gradients", "--model", str(checkpoint), "--dataset", "fashion-mnist", "--images",
            "4", "--batches", "2", "--samples-per-length", "3", "--sign-draws", "0", "--seed",
            str(seed), "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["split"] == "train" and meta["batches"] == 2 and meta["batch_size"] == 4
        assert "2 random batches of 4 train images" in result.stdout
        return pd.read_csv(out)

    a, b, c = run(0, "a.csv"), run(0, "b.csv"), run(1, "c.csv")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["exact_norm"], c["exact_norm"])
    assert a["exact_norm_sem"].notna().all()  # two batches: a spread across them


def test_at_and_norm_are_recorded_and_labelled(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    result = _invoke(
        "gradients", "--model", str(checkpoint), "--images", "4", "--batches", "1",
        "--samples-per-length", "2", "--sign-draws", "0", "--at", "blocks", "--norm",
        "per_image", "--report", str(tmp_path / "g.md"), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["measured_at"] == "blocks" and meta["norm"] == "per_image"
    report = (tmp_path / "g.md").read_text()
    assert "at the input of the first residual block" in report
    assert "mean per-image norm" in report
