"""``ensemble-lesion paths``: path counts against math.comb, every sub-network's error against a
hand-written forward with those blocks deleted, the ensemble view against an explicit average
of softmax outputs, the tables ``plot`` reads, and the refusals."""

from __future__ import annotations

import hashlib
import json
import math
import re
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import Result
from torch import nn

from resnet_ensemble.data.datasets import load_dataset

from .cli_helpers import invoke as _invoke
from .cli_helpers import one_error_line as _one_error_line
from .conftest import save_tiny_checkpoint
from .reference import _cifar_block, _cifar_shortcut, cifar_blocks, cifar_forward, reference_model

KWARGS = {"num_classes": 10, "in_channels": 1}
IMAGES = 48


def _kept(text: str) -> set[int]:
    """ "0-2,5" -> {0, 1, 2, 5}; "none" -> set()."""
    out: set[int] = set()
    if text == "none":
        return out
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _printed_counts(stdout: str) -> dict[int, int]:
    """The per-length rows of the printed table: length -> paths."""
    rows = re.findall(r"^\s*(\d+)\s+([\d,]+)\s+\S+%\s+\S+%$", stdout, flags=re.M)
    return {int(k): int(c.replace(",", "")) for k, c in rows}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-14 (6 blocks, two of them downsampling) on 1-channel 28x28 images; BatchNorm
    randomized so that deleting blocks changes answers."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet14.pt", 14, 3)


@pytest.fixture(scope="module")
def exhaustive(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("paths") / "tables" / "paths.csv"
    result = _invoke(
        "paths", "--model", str(checkpoint), "--exhaustive", "--limit", str(IMAGES),
        "--batch-size", "20", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result, out


# ----------------------------------------------------------------------------------------------
# Counting


def test_the_papers_54_blocks_print_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("paths", "--blocks", "54")
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []  # printing only: no results/ folder appears
    assert _printed_counts(result.stdout) == {k: math.comb(54, k) for k in range(55)}
    assert "mean 27" in result.stdout
    assert "lengths 19-35" in result.stdout  # the paper's 95% of paths


def test_the_table_and_sidecar_hold_exact_counts(tmp_path: Path) -> None:
    out = tmp_path / "paths54.csv"
    result = _invoke("paths", "--blocks", "54", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype={"paths": str})
    assert table["length"].tolist() == list(range(55))
    assert [int(c) for c in table["paths"]] == [math.comb(54, k) for k in range(55)]
    exact = [math.comb(54, k) / 2**54 for k in range(55)]
    assert table["fraction"].tolist() == pytest.approx(exact, rel=1e-12, abs=0)
    assert table["cumulative"].iloc[-1] == pytest.approx(1.0)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["table"] == "paths" and meta["n"] == 54 and meta["mean"] == 27
    assert (meta["range_lo"], meta["range_hi"]) == (19, 35)
    # The shortest range holding 95%, by brute force over every range.
    need = 0.95 * 2**54
    lo, hi = min(
        ((a, b) for a in range(55) for b in range(a, 55)
         if sum(math.comb(54, k) for k in range(a, b + 1)) >= need),
        key=lambda r: (r[1] - r[0], -sum(math.comb(54, k) for k in range(r[0], r[1] + 1))),
    )  # fmt: skip
    assert (meta["shortest_lo"], meta["shortest_hi"]) == (lo, hi) == (20, 34)
    held = sum(math.comb(54, k) for k in range(lo, hi + 1)) / 2**54
    assert meta["shortest_fraction"] == pytest.approx(held)


def test_a_models_paths_come_from_its_blocks(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    result = _invoke("paths", "--model", str(checkpoint), "--share", "0.5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "resnet14: 6 residual blocks, 2^6 = 64 paths" in result.stdout
    assert _printed_counts(result.stdout) == {k: math.comb(6, k) for k in range(7)}
    table = pd.read_csv(out)
    assert table["paths"].tolist() == [math.comb(6, k) for k in range(7)]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["num_blocks"] == 6 and meta["share"] == 0.5
    # Half of 64 is 32: no single length holds it; 2-3 and 3-4 both hold 35, the lower wins.
    assert (meta["shortest_lo"], meta["shortest_hi"]) == (2, 3)
    assert not (out.parent / "p.subnetworks.csv").exists()


# ----------------------------------------------------------------------------------------------
# Every sub-network


def _reference(model: nn.Module, subsets: list[set[int]]) -> tuple[list[float], float, int]:
    """Per subset the error of the hand-written forward with the other blocks deleted, the
    error of the average of those subsets' softmax outputs, and the number of images.

    Subsets sharing their first blocks' keep/delete choices share that part of the forward (a
    depth-first walk), which keeps the 64 forwards cheap on two CPU cores."""
    data = load_dataset("embedded", "test", limit=IMAGES)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    blocks = cifar_blocks(model)
    logits_of: dict[frozenset[int], torch.Tensor] = {}

    def walk(i: int, h: torch.Tensor, kept: frozenset[int]) -> None:
        if i == len(blocks):
            logits_of[kept] = model.fc(h.mean(dim=(2, 3)))
            return
        # Deleted: the shortcut and the final ReLU only (the reference computes the residual
        # branch either way, which would double the cost here).
        walk(i + 1, torch.relu(_cifar_shortcut(blocks[i], h)), kept)
        walk(i + 1, _cifar_block(blocks[i], h, True), kept | {i})

    assert not model.preact
    with torch.no_grad():
        walk(0, torch.relu(model.bn1(model.conv1(x))), frozenset())
        # The walk against the reference's own whole-route forward, for one deep subset.
        route = [(b, i != 2) for i, b in enumerate(blocks)]
        torch.testing.assert_close(
            logits_of[frozenset({0, 1, 3, 4, 5})], cifar_forward(model, x, route)
        )
    wrong, mean_softmax = [], torch.zeros(len(y), 10, dtype=torch.float64)
    for kept in subsets:
        logits = logits_of[frozenset(kept)]
        wrong.append(int((logits.argmax(1) != y).sum()))
        mean_softmax += torch.softmax(logits.double(), dim=1) / len(subsets)
    ensemble_wrong = int((mean_softmax.argmax(1) != y).sum())
    return [w / len(y) for w in wrong], ensemble_wrong / len(y), len(y)


def test_every_subnetworks_error_is_the_hand_written_one(
    exhaustive: tuple[Result, Path], checkpoint: Path
) -> None:
    result, out = exhaustive
    table = pd.read_csv(out.with_name("paths.subnetworks.csv"), keep_default_na=False)
    subsets = [_kept(k) for k in table["kept"]]
    everything = {frozenset(c) for k in range(7) for c in combinations(range(6), k)}
    assert len(subsets) == 64 and {frozenset(s) for s in subsets} == everything
    assert table["num_kept"].tolist() == [len(s) for s in subsets]
    errors, ensemble_error, images = _reference(reference_model(checkpoint), subsets)
    assert (table["images"] == images).all() and images == IMAGES
    assert table["error"].tolist() == pytest.approx(errors, abs=1e-12)
    assert len(set(errors)) > 5  # deleting blocks matters, so the comparison means something

    meta = json.loads(out.with_name("paths.subnetworks.json").read_text())
    assert meta["table"] == "subnetworks" and meta["exhaustive"] is True
    assert meta["num_blocks"] == 6 and meta["max_exhaustive"] == 12  # the CPU default
    view = meta["ensemble"]
    assert view["ensemble_error"] == pytest.approx(ensemble_error, abs=1e-12)
    assert view["full_error"] == pytest.approx(errors[subsets.index(set(range(6)))], abs=1e-12)
    assert view["mean_subnetwork_error"] == pytest.approx(sum(errors) / 64)
    assert view["subnetworks"] == 64 and view["images"] == IMAGES

    # Printed: error against the number of kept blocks, and the ensemble view.
    for k in range(7):
        mean = sum(e for e, s in zip(errors, subsets, strict=True) if len(s) == k)
        mean /= math.comb(6, k)
        assert re.search(rf"^\s*{k}\s+{math.comb(6, k)}\s+{100 * mean:.2f}%", result.stdout, re.M)
    assert f"softmax outputs has {100 * ensemble_error:.2f}% error" in result.stdout


def test_the_tables_draw_fig6a_and_the_subnetwork_figure(
    exhaustive: tuple[Result, Path], tmp_path: Path
) -> None:
    _, out = exhaustive
    figs = tmp_path / "figs"
    result = _invoke(
        "plot", str(out), str(out.with_name("paths.subnetworks.csv")), "--out", str(figs)
    )
    assert result.exit_code == 0, result.output
    assert (figs / "fig6a_path_lengths.png").is_file()
    assert (figs / "subnetworks.png").is_file()


def test_above_the_cpu_limit_it_samples(tmp_path: Path) -> None:
    """ResNet-32 has 15 blocks, above the CPU default of 12: a seeded sample of subsets."""
    out = tmp_path / "p.csv"
    args = ["paths", "--model", "resnet32", "--dataset", "embedded", "--exhaustive"]
    result = _invoke(*args, "--limit", "16", "--samples", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out.with_name("p.subnetworks.csv"), keep_default_na=False)
    assert 1 <= len(table) <= 3 and table["kept"].is_unique
    assert all(_kept(k) <= set(range(15)) for k in table["kept"])
    meta = json.loads(out.with_name("p.subnetworks.json").read_text())
    assert meta["exhaustive"] is False and meta["max_exhaustive"] == 12 and meta["samples"] == 3
    assert meta["ensemble"]["subnetworks"] == len(table)
    again = _invoke(*args, "--limit", "16", "--samples", "3")  # same seed, same subsets
    assert again.exit_code == 0 and "3 sampled sub-networks" in again.stdout
    assert "give --out" in again.stdout


# ----------------------------------------------------------------------------------------------
# Refusals


def test_an_unwritable_out_is_refused_before_the_model_is_read(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "paths.csv"
    result = _invoke("paths", "--model", str(tmp_path / "missing.pt"), "--out", str(bad))
    line = _one_error_line(result)
    assert str(blocker) in line and "missing.pt" not in line


def test_a_plain_network_has_no_paths() -> None:
    line = _one_error_line(_invoke("paths", "--model", "plain8"))
    assert "no shortcut" in line


@pytest.mark.parametrize(
    "args",
    [
        ["--blocks", "6", "--exhaustive"],
        ["--blocks", "-1"],
        ["--share", "0"],
        ["--share", "1.5"],
        ["--samples", "0"],
        ["--max-exhaustive", "25"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    result = _invoke("paths", *args, "--out", str(tmp_path / "p.csv"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
