"""``reproduce``'s stages run the commands' own study entries: a table made by a stage and the
same table made by its command (same model, data and settings) have the same sidecar, apart
from what must differ (the command line, the time, the stage's own record)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import save_checkpoint
from resnet_ensemble.studies.reproduce import Reproduction, Scale

from .cli_helpers import invoke
from .conftest import randomize_batchnorm

KWARGS = {"num_classes": 10, "in_channels": 1}
SCALE = Scale(
    test_images=24,
    max_k=2,
    max_swaps=2,
    samples=1,
    gradient_images=4,
    gradient_batches=2,
    samples_per_length=2,
    sign_draws=2,
    subnetwork_images=16,
    subnetwork_samples=4,
    max_exhaustive=3,
)
#: What must differ: who ran it and when (``command``, ``created``, ``seconds``), and the
#: stage's own record (``reproduce``: its name, command line and settings).
DIFFERS = {"command", "created", "seconds", "reproduce"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A ResNet-14 checkpoint, ``reproduce`` on it (sweeps, paths, gradients), and a folder for
    the commands' tables."""
    root = tmp_path_factory.mktemp("sidecars")
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(14, **KWARGS), seed=3).eval()
    ckpt = root / "resnet14.pt"
    save_checkpoint(
        ckpt, model, arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    out = root / "run"
    Reproduction(
        out,
        dataset="embedded",
        model=str(ckpt),
        scale=SCALE,
        device="cpu",
        only=("sweeps", "paths", "gradients"),
        log=lambda m: None,
    ).run()
    cli = root / "cli"
    cli.mkdir()
    return ckpt, out / "tables", cli


def _same_sidecars(made: Path, by_cli: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(made), pd.read_csv(by_cli))
    ours = json.loads(made.with_suffix(".json").read_text())
    theirs = json.loads(by_cli.with_suffix(".json").read_text())
    assert ours["reproduce"]["stage"] and "reproduce" not in theirs
    assert {k: v for k, v in ours.items() if k not in DIFFERS} == {
        k: v for k, v in theirs.items() if k not in DIFFERS
    }


def _run(*args: str) -> None:
    result = invoke(*args, "--dataset", "embedded", "--device", "cpu")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", ["single", "multi", "reorder"])
def test_a_sweep_stage_and_the_sweep_command_write_the_same_sidecar(
    runs: tuple[Path, Path, Path], kind: str
) -> None:
    ckpt, tables, cli = runs
    out = cli / f"{kind}.csv"
    sizes = {"multi": ["--max-k", "2", "--samples", "1"],
             "reorder": ["--max-swaps", "2", "--samples", "1"]}.get(kind, [])  # fmt: skip
    _run("sweep", kind, "--model", str(ckpt), "--limit", "24", *sizes, "--out", str(out))
    _same_sidecars(tables / f"{kind}_resnet.csv", out)


def test_the_paths_stage_and_the_paths_command_write_the_same_sidecars(
    runs: tuple[Path, Path, Path],
) -> None:
    ckpt, tables, cli = runs
    out = cli / "paths.csv"
    _run("paths", "--model", str(ckpt), "--limit", "16", "--exhaustive", "--max-exhaustive",
         "3", "--samples", "4", "--out", str(out))  # fmt: skip
    _same_sidecars(tables / "paths.csv", out)
    _same_sidecars(tables / "paths.subnetworks.csv", cli / "paths.subnetworks.csv")


def test_the_gradients_stage_and_the_gradients_command_write_the_same_sidecars(
    runs: tuple[Path, Path, Path],
) -> None:
    ckpt, tables, cli = runs
    out = cli / "gradients.csv"
    _run("gradients", "--model", str(ckpt), "--limit", "4", "--images", "4", "--batches", "2",
         "--samples-per-length", "2", "--sign-draws", "2", "--out", str(out))  # fmt: skip
    _same_sidecars(tables / "gradients.csv", out)
    _same_sidecars(tables / "gradients_samples.csv", cli / "gradients_samples.csv")
