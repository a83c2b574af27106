"""The ``ensemble-lesion`` command line: numbers against a hand-written loop, the exit-status and
one-line error contract, ``blocks``, ``sweep`` output files, and ``python -m resnet_ensemble``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV
from resnet_ensemble.data.datasets import load_dataset
from resnet_ensemble.models.specs import EMBEDDED_CHECKPOINT

from .cli_helpers import invoke as _invoke
from .cli_helpers import one_error_line as _one_error_line
from .cli_helpers import subprocess_env as _env
from .conftest import save_tiny_checkpoint
from .reference import cifar_blocks, cifar_forward, reference_model

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"num_classes": 10, "in_channels": 1}
IMAGES = 300


def _python_m(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd,
        env={**_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-14 on 1-channel 28x28 images (the embedded Fashion-MNIST subset); BatchNorm
    randomized so that deleting a block changes some answers."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet14.pt", 14, 3)


def _reference_wrong(
    model: nn.Module, drop: set[int], images: int | None, order: list[int] | None = None
) -> tuple[int, int]:
    """Mistakes and images of the hand-written forward with the ``drop`` blocks deleted, or
    with the blocks run in ``order``."""
    blocks = cifar_blocks(model)
    plan = [(blk, i not in drop) for i, blk in enumerate(blocks)]
    if order is not None:
        plan = [(blocks[i], True) for i in order]
    data = load_dataset("embedded", "test", limit=images)
    wrong = total = 0
    with torch.no_grad():
        for start in range(0, len(data), 100):
            items = [data[i] for i in range(start, min(start + 100, len(data)))]
            x = torch.stack([im for im, _ in items])
            y = torch.tensor([label for _, label in items])
            wrong += int((cifar_forward(model, x, plan).argmax(1) != y).sum())
            total += len(items)
    return wrong, total


# ----------------------------------------------------------------------------------------------
# The main command


def test_drop_block_reports_the_hand_written_error(checkpoint: Path) -> None:
    result = _invoke("--drop-block", "3", "--model", str(checkpoint), "--limit", str(IMAGES))
    assert result.exit_code == 0, result.output
    model = reference_model(checkpoint)
    full_wrong, total = _reference_wrong(model, set(), IMAGES)
    lesioned_wrong, _ = _reference_wrong(model, {3}, IMAGES)
    assert total == IMAGES and full_wrong != lesioned_wrong  # the lesion matters here
    out = result.stdout
    assert re.search(rf"images:\s+{IMAGES}\b", out)
    full = re.search(r"error, full network:\s+([\d.]+)%", out)
    lesioned = re.search(r"error, without 3 \(layer2\.1\):\s+([\d.]+)%", out)
    assert full and lesioned, out
    assert full.group(1) == f"{100 * full_wrong / total:.2f}"
    assert lesioned.group(1) == f"{100 * lesioned_wrong / total:.2f}"


def test_json_prints_one_object_with_the_same_numbers(checkpoint: Path) -> None:
    args = ["--model", str(checkpoint), "--limit", str(IMAGES), "--json"]
    result = _invoke("--drop-block", "3", "--drop-block", "1", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    model = reference_model(checkpoint)
    full_wrong, total = _reference_wrong(model, set(), IMAGES)
    lesioned_wrong, _ = _reference_wrong(model, {1, 3}, IMAGES)
    assert record["images"] == IMAGES and record["model"] == "resnet14"
    assert record["dataset"] == "embedded"
    assert record["dropped_blocks"] == [3, 1]
    assert record["dropped_names"] == ["layer2.1", "layer1.1"]
    assert record["error_full_pct"] == pytest.approx(100 * full_wrong / total, abs=1e-9)
    assert record["error_lesioned_pct"] == pytest.approx(100 * lesioned_wrong / total, abs=1e-9)
    assert record["difference_pct"] == pytest.approx(
        100 * (lesioned_wrong - full_wrong) / total, abs=1e-9
    )


@pytest.mark.parametrize("index", ["6", "-7", "100"])
def test_a_block_out_of_range_is_a_usage_error_naming_the_range(
    checkpoint: Path, index: str
) -> None:
    result = _invoke("--drop-block", index, "--model", str(checkpoint), "--limit", "10")
    assert result.exit_code == 2
    line = _one_error_line(result.stderr, prefix="Error: ")
    assert f"block {index} is out of range" in line and "6 blocks, 0..5" in line


def test_a_block_given_twice_is_a_usage_error(checkpoint: Path) -> None:
    result = _invoke("--drop-block", "2", "--drop-block", "2", "--model", str(checkpoint))
    assert result.exit_code == 2
    assert "given twice" in _one_error_line(result.stderr, prefix="Error: ")


def test_a_block_that_cannot_be_deleted_is_one_line(tmp_path: Path) -> None:
    # A plain network's downsampling layer has no shortcut to fall back on.
    args = ["--model", "plain14", "--dataset", "synthetic", "--limit", "4", "--drop-block", "2"]
    result = _invoke(*args)
    assert result.exit_code == 1
    assert "cannot be deleted" in _one_error_line(result.stderr)


def test_a_missing_checkpoint_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = _python_m("--drop-block", "3", "--model", "missing.pt", cwd=tmp_path)  # a real process
    assert proc.returncode == 1
    assert _one_error_line(proc.stderr) == "error: no such checkpoint: missing.pt"
    assert proc.stdout == ""


def test_a_random_bytes_checkpoint_is_one_line_and_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    result = _invoke("--drop-block", "3", "--model", str(junk))
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert str(junk) in line and "not a readable checkpoint" in line


def test_debug_shows_the_traceback_for_that_call_only(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pt")
    result = _invoke("--debug", "--drop-block", "3", "--model", missing)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "error: no such checkpoint" in result.stderr
    # --debug does not stick to the process: the next in-process call is quiet again.
    result = CliRunner().invoke(cli, ["--model", missing])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert DEBUG_ENV not in os.environ


def test_python_m_is_ensemble_lesion(tmp_path: Path) -> None:
    proc = _python_m("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: ensemble-lesion")
    # What the console script runs: the ``ensemble-lesion = resnet_ensemble.cli:main`` entry.
    script = "import sys; from resnet_ensemble.cli import main; sys.exit(main())"
    console = subprocess.run(
        [sys.executable, "-c", script, "--help"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert console.returncode == 0, console.stderr
    assert proc.stdout == console.stdout
    for command in ("blocks", "sweep", "--drop-block", "--model", "--json", "--debug"):
        assert command in proc.stdout


# ----------------------------------------------------------------------------------------------
# blocks


def test_blocks_of_resnet20() -> None:
    result = _invoke("blocks", "--model", "resnet20", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(9))
    assert [r["name"] for r in rows] == [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]
    assert [r["name"] for r in rows if r["downsamples"]] == ["layer2.0", "layer3.0"]
    assert [r["stage"] for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2] or [
        r["stage"] for r in rows
    ] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # Conv weights + BN (weight, bias) of two 3x3 convs; option-A shortcuts have no parameters.
    assert rows[0]["parameters"] == 2 * (16 * 16 * 9 + 2 * 16)
    assert all(r["random_init"] is True for r in rows)  # a bare arch name: random weights
    table = _invoke("blocks", "--model", "resnet20")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert "9 residual blocks" in lines[0] and "2^9 paths" in lines[0]
    flagged = [ln.split()[1] for ln in lines[2:] if ln.split()[3] == "yes"]
    assert flagged == ["layer2.0", "layer3.0"] and len(lines) == 2 + 9


def test_blocks_of_torchvision_resnet50() -> None:
    result = _invoke("blocks", "--model", "torchvision:resnet50", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 + 4 + 6 + 3
    # Every stage's first bottleneck has a projection shortcut (layer1.0 too: 64 -> 256).
    assert [r["name"] for r in rows if r["downsamples"]] == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]


# ----------------------------------------------------------------------------------------------
# sweep: output files and refusals

SWEEP_COLUMNS = [
    "model",
    "variant",
    "sweep",
    "config",
    "route",
    "deleted",
    "k",
    "sample",
    "seed",
    "kendall_tau",
    "deleted_name",
    "downsampling",
    "error",
    "wrong",
    "images",
]


def test_sweep_single_writes_a_table_and_its_sidecar(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "single.csv"
    proc = _python_m(
        "sweep", "single", "--model", str(checkpoint), "--limit", "64", "--device", "cpu",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == SWEEP_COLUMNS
    assert table["config"].tolist() == ["baseline"] + [f"drop={i}" for i in range(6)]
    assert (table["images"] == 64).all() and (table["sweep"] == "single").all()
    assert table["downsampling"].tolist()[1:] == [False, False, True, False, True, False]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "resnet14" and meta["dataset"] == "embedded"
    assert meta["images"] == 64 and meta["complete"] is True and meta["rows"] == 7
    assert meta["command"].startswith("python -m resnet_ensemble sweep single")
    assert {"torch", "torchvision", "numpy", "pandas", "resnet_ensemble"} <= set(meta["versions"])
    assert meta["checkpoint_sha256"] and meta["sweep"] == "single" and meta["table"] == "sweep"
    assert meta["num_classes"] == 10  # what the figures need to draw chance level
    model = reference_model(checkpoint)
    assert table["wrong"].tolist()[:2] == [
        _reference_wrong(model, set(), 64)[0],
        _reference_wrong(model, {0}, 64)[0],
    ]


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sweep started work")

    monkeypatch.setattr("resnet_ensemble.studies.sweeps.open_experiment", refuse)


def test_sweep_refuses_an_unwritable_out_before_any_work(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_work(monkeypatch)
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "single.csv"
    result = _invoke("sweep", "single", "--model", str(checkpoint), "--out", str(out))
    assert result.exit_code == 1
    assert "is a file, not a folder" in _one_error_line(result.stderr)
    (tmp_path / "dir.csv").mkdir()
    result = _invoke(
        "sweep", "single", "--model", str(checkpoint), "--out", str(tmp_path / "dir.csv")
    )
    assert result.exit_code == 2  # click's own check: --out must name a file


def test_sweep_refuses_an_existing_table_without_resume_or_overwrite(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "single.csv"
    out.write_text("precious,results\n1,2\n")
    base = ["sweep", "single", "--model", str(checkpoint), "--limit", "16", "--out", str(out)]
    with monkeypatch.context() as m:
        _no_work(m)
        result = _invoke(*base)
        assert result.exit_code == 1
        line = _one_error_line(result.stderr)
        assert "already exists" in line and "--resume" in line and "--overwrite" in line
        result = _invoke(*base, "--resume", "--overwrite")
        assert result.exit_code == 2
    assert out.read_text() == "precious,results\n1,2\n"
    # --resume on a table that is not a sweep table: refused, and still untouched.
    result = _invoke(*base, "--device", "cpu", "--resume")
    assert result.exit_code == 1 and "lacks the columns" in _one_error_line(result.stderr)
    assert out.read_text() == "precious,results\n1,2\n"
    result = _invoke(*base, "--device", "cpu", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 7


# ----------------------------------------------------------------------------------------------
# The embedded default (no --model, no --dataset)


def test_embedded_default_drop_block_matches_the_hand_written_loop() -> None:
    result = _invoke("--drop-block", "3", "--limit", "200", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    model = reference_model(EMBEDDED_CHECKPOINT)
    full_wrong, total = _reference_wrong(model, set(), 200)
    lesioned_wrong, _ = _reference_wrong(model, {3}, 200)
    assert record["images"] == total == 200 and record["dataset"] == "embedded"
    assert record["error_full_pct"] == pytest.approx(100 * full_wrong / total, abs=1e-9)
    assert record["error_lesioned_pct"] == pytest.approx(100 * lesioned_wrong / total, abs=1e-9)


def test_route_runs_the_blocks_in_the_order_given_as_the_hand_written_loop() -> None:
    model = reference_model(EMBEDDED_CHECKPOINT)
    n = len(cifar_blocks(model))
    order = [0, 2, 1, 1, *range(3, n)]  # blocks 1 and 2 swapped, block 1 run twice
    result = _invoke("--route", f"0,2,1x2,3-{n - 1}", "--limit", "200", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    wrong, total = _reference_wrong(model, set(), 200, order=order)
    assert record["route"] == ",".join(map(str, order))
    assert record["error_lesioned_pct"] == pytest.approx(100 * wrong / total, abs=1e-9)
    text = _invoke("--route", f"0,2,1x2,3-{n - 1}", "--limit", "200")
    assert f"error, route {record['route']}:" in text.stdout
    # A route whose shapes do not fit, unreadable text, and both ways at once: one line each.
    for args, code in (
        (["--route", f"{n - 1},0"], 1),
        (["--route", "1-x"], 2),
        (["--route", "0", "--drop-block", "1"], 2),
    ):
        bad = _invoke(*args, "--limit", "8")
        assert bad.exit_code == code, bad.output
        errors = [ln for ln in bad.stderr.splitlines() if ln.lower().startswith("error")]
        assert len(errors) == 1 and "Traceback" not in bad.output


def test_route_by_block_names_and_negative_indices_equals_the_route_by_indices() -> None:
    # resnet32's blocks are layerS.B (three stages of five); the same route spelled two ways.
    by_index = _invoke("--route", "0,2,1x2,3-6,[7|8],9,10-14", "--limit", "64", "--json")
    by_name = _invoke(
        "--route",
        "layer1.0,layer1.2,layer1.1x2,layer1.3-layer2.1,[layer2.2|-7],layer2.4,layer3.0--1",
        "--limit",
        "64",
        "--json",
    )
    assert by_index.exit_code == 0 and by_name.exit_code == 0, by_index.output + by_name.output
    a, b = json.loads(by_index.stdout), json.loads(by_name.stdout)
    assert a["route"] == b["route"] == "0,2,1,1,3,4,5,6,[7|8],9,10,11,12,13,14"
    assert a["error_lesioned_pct"] == b["error_lesioned_pct"]


def test_embedded_default_runs_offline_as_a_real_process(tmp_path: Path) -> None:
    proc = _python_m("--drop-block", "0", "--limit", "50", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "error, full network:" in proc.stdout and "error, without 0" in proc.stdout


def test_embedded_default_blocks() -> None:
    result = _invoke("blocks", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    model = reference_model(EMBEDDED_CHECKPOINT)
    assert len(rows) == len(cifar_blocks(model))
    assert not any(r["random_init"] for r in rows)  # trained weights


def test_the_version_is_written_once() -> None:
    """pyproject.toml takes the version from ``_version.py``; what is installed agrees."""
    from importlib.metadata import PackageNotFoundError, version

    from resnet_ensemble import __version__

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r'^version = "', pyproject, re.M)
    assert 'version = { attr = "resnet_ensemble._version.__version__" }' in pyproject
    try:
        installed = version("resnet-ensemble")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        installed = __version__
    assert installed == __version__


def test_kl_and_losses_are_printed_to_four_significant_digits() -> None:
    result = CliRunner().invoke(cli, ["--drop-block", "3", "--metric", "kl", "--limit", "50"])
    assert result.exit_code == 0, result.output
    lesioned = next(line for line in result.output.splitlines() if "without 3" in line)
    value = lesioned.rsplit(":", 1)[1].strip()
    digits = value.replace("0.", "").lstrip("0").replace(".", "").split("e")[0]
    assert float(value) > 0 and len(digits) == 4, value  # e.g. 0.07535, not 0.08
