"""The scripts in experiments/ run as written, on the embedded default, at a tiny scale.

They call ``ensemble-lesion``; a shim on PATH makes that this interpreter's
``python -m resnet_ensemble``, so the tests need no installed console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "experiments").glob("*.sh"))


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "ensemble-lesion"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m resnet_ensemble "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{shim_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(script: str, env: dict[str, str], cwd: Path, **variables: str) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "experiments" / script)],
        env={**env, **variables},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_parses_and_names_its_figure(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    head = script.read_text().splitlines()[1]
    assert head.startswith("# Paper ") or head.startswith("# The unraveled view"), head
    assert "Expected" in script.read_text()


def test_fig5a_runs_on_the_embedded_default(env: dict[str, str], tmp_path: Path) -> None:
    _run("fig5a_delete_k.sh", env, tmp_path, OUT="out", MAX_K="2", SAMPLES="1")
    table = pd.read_csv(tmp_path / "out" / "multi_resnet.csv")
    assert sorted(set(table.k)) == [0, 1, 2]
    assert (tmp_path / "out" / "figures" / "fig5a_delete_k.png").is_file()


def test_fig5b_runs_on_the_embedded_default(env: dict[str, str], tmp_path: Path) -> None:
    _run("fig5b_reorder.sh", env, tmp_path, OUT="out", MAX_SWAPS="2", SAMPLES="1")
    table = pd.read_csv(tmp_path / "out" / "reorder_resnet.csv")
    assert table.kendall_tau.dropna().between(-1, 1).all()
    assert (tmp_path / "out" / "figures" / "fig5b_reorder.pdf").is_file()


def test_fig6_runs_on_the_embedded_default(env: dict[str, str], tmp_path: Path) -> None:
    _run("fig6_paths_gradients.sh", env, tmp_path, OUT="out", IMAGES="4", SAMPLES="2")
    for name in ("fig6a_path_lengths", "fig6b_gradient_per_length", "fig6c_total_gradient"):
        assert (tmp_path / "out" / "figures" / f"{name}.png").is_file()
    assert "Effective paths" in (tmp_path / "out" / "gradients.md").read_text()


def test_subnetworks_runs_on_the_embedded_default(env: dict[str, str], tmp_path: Path) -> None:
    _run("subnetworks.sh", env, tmp_path, OUT="out", LIMIT="20")
    table = pd.read_csv(tmp_path / "out" / "paths.subnetworks.csv")
    assert table.num_kept.between(0, 15).all()
    assert (tmp_path / "out" / "figures" / "subnetworks.png").is_file()


def test_depth_series_analysis_runs_on_a_tiny_series(env: dict[str, str], tmp_path: Path) -> None:
    from .conftest import save_tiny_checkpoint

    (tmp_path / "series" / "checkpoints").mkdir(parents=True)
    save_tiny_checkpoint(tmp_path / "series" / "checkpoints" / "resnet14.pt", 14, 1)
    _run(
        "depth_series_analyse.sh", env, tmp_path, ROOT="series", NETWORKS="resnet14 resnet20",
        TEST_IMAGES="40", SAMPLES="1", GRADIENT_IMAGES="4", GRADIENT_BATCHES="2",
        SAMPLES_PER_LENGTH="1", MAX_EXHAUSTIVE="3", SUBNETWORK_IMAGES="10",
    )  # fmt: skip
    multi = pd.read_csv(tmp_path / "series" / "resnet14" / "tables" / "multi_resnet.csv")
    assert multi.k.max() == 3  # k up to n / 2 for 6 blocks
    depth = pd.read_csv(tmp_path / "series" / "depth.csv")
    assert depth.network.tolist() == ["resnet14"]  # resnet20 has no checkpoint: skipped
    assert (tmp_path / "series" / "figures" / "depth_single_block.png").is_file()
