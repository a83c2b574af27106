"""The committed depth series re-runs from its committed checkpoints (issue 11's "Done when").

Every table under ``results/depth`` names the checkpoint it came from and that file's sha256: the
file must be committed and unchanged. ResNet-20's deterministic tables (one block deleted at a
time, and the exact gradient decomposition on the same seeded training batches) are recomputed here
from its checkpoint with the public CLI and must match the committed numbers; the sampled tables
only match within noise, and cost more than a test should.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV

from .conftest import needs_fashion

ROOT = Path(__file__).resolve().parents[1]
DEPTH = ROOT / "results" / "depth"
RESNET20 = DEPTH / "checkpoints" / "resnet20.pt"
TABLES = DEPTH / "resnet20" / "tables"


def _sidecars_with_checkpoints() -> list[Path]:
    return sorted(
        p for p in DEPTH.glob("*/tables/*.json") if "checkpoint_sha256" in json.loads(p.read_text())
    )


def test_the_series_has_tables_that_name_their_checkpoints() -> None:
    networks = {p.parent.parent.name for p in _sidecars_with_checkpoints()}
    assert {"resnet20", "resnet56", "resnet110"} <= networks


@pytest.mark.parametrize(
    "sidecar", _sidecars_with_checkpoints(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}"
)
def test_every_table_names_a_committed_unchanged_checkpoint(sidecar: Path) -> None:
    meta = json.loads(sidecar.read_text())
    checkpoint = ROOT / meta["model_spec"]
    assert checkpoint.is_file(), f"{sidecar} was made from {checkpoint}, which is not committed"
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == meta["checkpoint_sha256"]


def _run(tmp_path: Path, *args: str) -> pd.DataFrame:
    out = tmp_path / "table.csv"
    result = CliRunner().invoke(
        cli, [*args, "--out", str(out)], prog_name="ensemble-lesion", env={DEBUG_ENV: None}
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


@needs_fashion
def test_single_block_deletion_reruns_to_the_committed_table(tmp_path: Path) -> None:
    committed = pd.read_csv(TABLES / "single_resnet.csv")
    images = int(committed["images"].iloc[0])
    again = _run(
        tmp_path, "sweep", "single", "--model", str(RESNET20), "--dataset", "fashion-mnist",
        "--limit", str(images), "--device", "cpu",
    )  # fmt: skip
    merged = committed.merge(again, on="config", suffixes=("_committed", "_again"))
    assert len(merged) == len(committed) == 10  # the full network and each of the 9 blocks
    # Deterministic in float32 on the CPU; a 2-image slack absorbs another CPU's rounding.
    assert (merged["wrong_committed"] - merged["wrong_again"]).abs().max() <= 2


@needs_fashion
def test_exact_gradient_decomposition_reruns_to_the_committed_table(tmp_path: Path) -> None:
    committed = pd.read_csv(TABLES / "gradients.csv")
    meta = json.loads((TABLES / "gradients.json").read_text())
    again = _run(
        tmp_path, "gradients", "--model", str(RESNET20), "--dataset", "fashion-mnist",
        "--split", meta["split"], "--batches", str(meta["batches"]),
        "--images", str(meta["batch_size"]), "--seed", str(meta["seed"]),
        "--at", meta["measured_at"], "--norm", meta["norm"],
        "--samples-per-length", "0", "--sign-draws", "0", "--device", "cpu",
    )  # fmt: skip
    # The same seed draws the same training batches whatever the number of sampled paths, so the
    # exact per-length norms come back to rounding.
    assert again["length"].tolist() == committed["length"].tolist()
    assert again["exact_norm"].to_numpy() == pytest.approx(
        committed["exact_norm"].to_numpy(), rel=1e-4
    )
