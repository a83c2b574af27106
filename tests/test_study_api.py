"""The notebook API: ``study_sweep`` on a model in memory and any batches gives the table the
``sweep`` command writes for the same model saved to disk (the command run as a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import resnet_ensemble
from resnet_ensemble import evaluate_subnetworks, load_dataset, make_loader, study_sweep
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import save_checkpoint

from .conftest import randomize_batchnorm

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"num_classes": 10, "in_channels": 1}
IMAGES = 24


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(14, **KWARGS), seed=3).eval()


def _cli_table(tmp_path: Path, kind: str, *extra: str) -> pd.DataFrame:
    """The ``sweep`` command's table for ``_model()`` saved as a checkpoint, run as a process."""
    ckpt = tmp_path / "resnet14.pt"
    save_checkpoint(
        ckpt, _model(), arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    out = tmp_path / f"cli_{kind}.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    args = ["sweep", kind, "--model", str(ckpt), "--limit", str(IMAGES), "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args, "--out", str(out), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out)


def test_study_sweep_in_memory_equals_the_commands_table(tmp_path: Path) -> None:
    expected = _cli_table(tmp_path, "single")
    # Another batch size than the command's: counts of mistakes do not depend on it.
    loader = make_loader(load_dataset("embedded", "test", limit=IMAGES), batch_size=7)
    got = study_sweep(_model(), loader, kind="single", name="resnet14")
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == 1 + 6  # the full network, then each of ResNet-14's six blocks
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["resnet14.pt", "cli_single.csv", "cli_single.json"]
    )  # nothing written without out=


def test_study_sweep_reorder_takes_a_generator_and_equals_the_command(tmp_path: Path) -> None:
    expected = _cli_table(tmp_path, "reorder", "--max-swaps", "2", "--samples", "2")
    data = load_dataset("embedded", "test", limit=IMAGES)

    def batches():  # read once: study_sweep keeps it for every chunk
        for start in range(0, IMAGES, 10):
            items = [data[i] for i in range(start, min(start + 10, IMAGES))]
            yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    got = study_sweep(
        _model(), batches(), kind="reorder", name="resnet14", max_swaps=2, samples=2, chunk=2
    )
    pd.testing.assert_frame_equal(got, expected)


def test_study_sweep_writes_a_table_only_with_out(tmp_path: Path) -> None:
    loader = make_loader(load_dataset("embedded", "test", limit=8), batch_size=8)
    out = tmp_path / "s.csv"
    got = study_sweep(_model(), loader, out=out)
    pd.testing.assert_frame_equal(got, pd.read_csv(out))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["table"] == "sweep" and meta["complete"] is True and meta["rows"] == len(got)
    assert meta["model"] == "CifarResNet" and meta["model_spec"] == "in memory"
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        study_sweep(_model(), loader, out=out)
    study_sweep(_model(), loader, out=out, overwrite=True)


def test_study_sweep_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of single, multi, reorder"):
        study_sweep(_model(), [], kind="singles")  # type: ignore[arg-type]


def test_the_notebook_names_are_exported() -> None:
    names = ("study_sweep", "load_dataset", "make_loader", "evaluate_subnetworks")
    for name in (*names, "analyze_gradients", "resolve_block"):
        assert name in resnet_ensemble.__all__ and name in dir(resnet_ensemble)


def test_evaluate_subnetworks_equals_the_paths_commands_table(tmp_path: Path) -> None:
    ckpt = tmp_path / "resnet14.pt"
    save_checkpoint(
        ckpt, _model(), arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    table = tmp_path / "paths.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    args = ["paths", "--model", str(ckpt), "--limit", str(IMAGES), "--device", "cpu",
            "--exhaustive", "--max-exhaustive", "3", "--samples", "5", "--seed", "2"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args, "--out", str(table)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = pd.read_csv(tmp_path / "paths.subnetworks.csv")
    loader = make_loader(load_dataset("embedded", "test", limit=IMAGES), batch_size=7)
    out = tmp_path / "sub.csv"
    got = evaluate_subnetworks(
        _model(), loader, max_exhaustive=3, samples=5, seed=2, name="resnet14", out=out
    )
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(pd.read_csv(out), expected)
    ours = json.loads(out.with_suffix(".json").read_text())
    theirs = json.loads((tmp_path / "paths.subnetworks.json").read_text())
    for key in ("table", "exhaustive", "max_exhaustive", "samples", "seed", "ensemble", "images"):
        assert ours[key] == theirs[key], key
    with pytest.raises(ValueError, match="exists"):
        evaluate_subnetworks(_model(), loader, max_exhaustive=3, samples=5, out=out)
    # Without name or out: the table as before, no model column, nothing written.
    plain = evaluate_subnetworks(_model(), loader, max_exhaustive=3, samples=5, seed=2)
    pd.testing.assert_frame_equal(plain, expected.drop(columns="model"))


def test_analyze_gradients_in_memory_equals_the_gradients_commands_table(tmp_path: Path) -> None:
    from resnet_ensemble.studies.experiment import open_experiment

    ckpt = tmp_path / "resnet14.pt"
    save_checkpoint(
        ckpt, _model(), arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    args = ["gradients", "--model", str(ckpt), "--limit", str(IMAGES), "--device", "cpu",
            "--images", "6", "--batches", "2", "--samples-per-length", "3",
            "--sign-draws", "2", "--seed", "5", "--out", str(tmp_path / "cli.csv")]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cli_meta = json.loads((tmp_path / "cli.json").read_text())
    # The same random batches the command drew, handed over as a generator.
    exp = open_experiment(str(ckpt), dataset="embedded", limit=IMAGES, device="cpu")
    batches = exp.random_batches(6, 2, split=cli_meta["split"], seed=5)
    out = tmp_path / "api.csv"
    analysis = resnet_ensemble.analyze_gradients(
        _model(), iter(batches), model_name="resnet14", samples_per_length=3, sign_draws=2,
        seed=5, out=out,
    )  # fmt: skip
    expected = pd.read_csv(tmp_path / "cli.csv")
    pd.testing.assert_frame_equal(pd.read_csv(out), expected)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "api_samples.csv"), pd.read_csv(tmp_path / "cli_samples.csv")
    )
    assert len(analysis.table) == 6 + 1  # one row per path length 0..6
    ours = json.loads(out.with_suffix(".json").read_text())
    assert ours["table"] == "gradients" and ours["model_spec"] == "in memory"
    assert ours["samples_table"] == "api_samples.csv"
    for key in ("n", "images", "batches", "samples_per_length", "effective_lo", "effective_hi"):
        assert ours[key] == cli_meta[key], key
    with pytest.raises(ValueError, match="exists"):  # refused before any work
        resnet_ensemble.analyze_gradients(_model(), batches, samples_per_length=3, out=out)


def test_block_proxies_writes_a_proxies_table_only_with_out(tmp_path: Path) -> None:
    loader = make_loader(load_dataset("embedded", "test", limit=8), batch_size=4)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = resnet_ensemble.block_proxies(model, loader)
    assert "model" not in plain.columns and list(tmp_path.iterdir()) == []
    out = tmp_path / "proxies.csv"
    got = resnet_ensemble.block_proxies(model, loader, name="resnet14", out=out)
    assert list(got.columns) == ["model", *plain.columns]
    pd.testing.assert_frame_equal(got.drop(columns="model"), plain)
    pd.testing.assert_frame_equal(pd.read_csv(out), got)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["table"] == "proxies" and meta["images"] == 8 and meta["batches"] == 2
    assert meta["num_blocks"] == 6 and meta["model"] == "resnet14"
    with pytest.raises(ValueError, match="exists"):
        resnet_ensemble.block_proxies(model, loader, out=out)
    for k, v in model.state_dict().items():  # the model is left as it was
        assert torch.equal(v, before[k]), k
