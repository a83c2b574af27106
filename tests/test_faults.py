"""Faults: finished work survives them and can be resumed.

- SIGKILL of a real ``train`` process: the checkpoint on disk is always whole, and ``--resume``
  ends at the weights of the uninterrupted run, bit for bit (SIGKILL of a sweep is
  ``test_sweeps.py::test_a_killed_sweep_resumes_to_the_uninterrupted_table``).
- What a kill in the middle of a write leaves (a hidden temporary file) is removed on resume.
- A full disk (a write, fsync or rename that raises ``OSError(ENOSPC)``) while saving a
  checkpoint or appending to a sweep table: one clear line, the previous file unchanged, no
  temporary left behind, and the run resumable.
- Numbers: NaN or inf in a checkpoint's weights or optimizer state, a loss that becomes NaN,
  and model outputs that overflow are each one clear error, never a silent result; bf16 autocast
  (``--amp``) stays within the documented tolerance of fp32 (docs/reliability.md).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from resnet_ensemble.atomic import stale_temporaries
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint
from resnet_ensemble.models.specs import load_model
from resnet_ensemble.studies.training import TrainConfig, history_path, train

from .cli_helpers import invoke as _invoke
from .cli_helpers import kill_mid_run
from .cli_helpers import one_error_line as _one_error_line
from .cli_helpers import subprocess_env as _env
from .conftest import randomize_batchnorm

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"num_classes": 10, "in_channels": 1}

#: The documented tolerance of --amp (bf16 autocast) against fp32 for a sweep's errors, in
#: percentage points: for every configuration, and on average over the configurations.
AMP_TOLERANCE_PP = 1.5
AMP_MEAN_TOLERANCE_PP = 0.5


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _train_args(out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "train", "--arch", "resnet8", "--dataset", "synthetic", "--limit", "32",
        "--test-limit", "16", "--batch-size", "16", "--workers", "0", "--device", "cpu",
        "--seed", "3",
        "--lr", "0.05", "--epochs", str(epochs), "--out", str(out), *extra,
    ]  # fmt: skip


def _config(out: Path, epochs: int) -> TrainConfig:
    """The library call that ``_train_args`` makes."""
    return TrainConfig(
        arch="resnet8",
        dataset="synthetic",
        limit=32,
        test_limit=16,
        batch_size=16,
        num_workers=0,
        device="cpu",
        seed=3,
        lr=0.05,
        epochs=epochs,
        out=out,
    )


@pytest.fixture(scope="module")
def epoch_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ckpt.pt (one epoch of training, with optimizer state for --resume) and
    its history, made once; tests take copies."""
    folder = tmp_path_factory.mktemp("epoch_1")
    result = _invoke(*_train_args(folder / "ckpt.pt", 1))
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def trained(epoch_1: Path, tmp_path: Path) -> Path:
    """A private copy of the one-epoch checkpoint and its history; returns the checkpoint."""
    for p in epoch_1.iterdir():
        shutil.copy2(p, tmp_path / p.name)
    return tmp_path / "ckpt.pt"


# ----------------------------------------------------------------------------------------------
# SIGKILL during training


def _kill_after_first_checkpoint(args: list[str], out: Path, cwd: Path) -> int | None:
    """Start training in a real process and SIGKILL it once a checkpoint is on disk; every
    checkpoint seen meanwhile must load. Returns the epoch saved at the kill, or None if the run
    finished first."""
    if not kill_mid_run(args, cwd, out.exists):
        return None
    return int(load_checkpoint(out)["epoch"])


@pytest.mark.slow
def test_a_killed_training_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    epochs = 4
    for _attempt in range(3):
        out = tmp_path / f"killed_{epochs}.pt"
        saved = _kill_after_first_checkpoint(_train_args(out, epochs), out, tmp_path)
        if saved is not None and saved < epochs:
            break
        epochs *= 2  # it finished before the kill: give it more to do
    else:
        pytest.fail("could not kill training mid-way in 3 attempts")

    # What the kill left is a whole checkpoint that the toolkit loads.
    assert 1 <= saved < epochs
    assert load_model(out).metadata["epochs_done"] == saved

    resumed = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *_train_args(out, epochs), "--resume"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} from epoch {saved}" in resumed.stdout
    final = load_checkpoint(out)
    assert final["epoch"] == epochs
    history = pd.read_csv(history_path(out))
    assert history["epoch"].tolist() == list(range(1, epochs + 1))  # no epoch lost or doubled
    assert stale_temporaries(out) == [] and stale_temporaries(history_path(out)) == []

    # Bit for bit the weights of a run that was never interrupted (CPU, same thread count).
    reference = train(_config(tmp_path / "reference.pt", epochs))
    expected = reference.model.state_dict()
    assert final["state_dict"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(final["state_dict"][key], value), key


def test_resume_removes_what_a_kill_mid_write_left(trained: Path, tmp_path: Path) -> None:
    out = trained
    # A process killed inside atomic_write leaves its hidden temporary file behind.
    stale = [tmp_path / ".ckpt.pt.k1ll3d0x.tmp", tmp_path / ".ckpt.history.csv.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    unrelated = [tmp_path / ".other.pt.abc.tmp", tmp_path / "ckpt.pt.bak"]
    for p in unrelated:
        p.write_bytes(b"not ours")
    result = _invoke(*_train_args(out, 2), "--resume")
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in unrelated)  # only this run's own temporaries go
    assert load_checkpoint(out)["epoch"] == 2


def test_a_resumed_sweep_removes_what_a_kill_mid_write_left(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "r14.pt"
    model = cifar_resnet(14, **KWARGS).eval()
    save_checkpoint(
        ckpt, model, arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    out = tmp_path / "t.csv"
    args = ["sweep", "single", "--model", str(ckpt), "--limit", "8", "--device", "cpu"]
    assert _invoke(*args, "--out", str(out)).exit_code == 0
    stale = [tmp_path / ".t.csv.x9y8z7.tmp", tmp_path / ".t.json.q1w2e3.tmp"]
    for p in stale:
        p.write_text("model,vari")
    result = _invoke(*args, "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale)
    assert len(pd.read_csv(out)) == 7


# ----------------------------------------------------------------------------------------------
# A full disk


def _no_space(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_writes(monkeypatch: pytest.MonkeyPatch, how: str, after: int = 0) -> None:
    """Make the ``after + 1``-th and later atomic writes fail the way a full disk does: in
    ``write`` (half the bytes land first), ``fsync`` or the final ``rename``."""
    calls = {"n": 0}

    def full() -> bool:
        calls["n"] += 1
        return calls["n"] > after

    def failing(real):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if full():
                _no_space()
            return real(*args, **kwargs)

        return call

    if how == "write":
        real_fdopen = os.fdopen

        class HalfWritten:
            def __init__(self, f) -> None:  # noqa: ANN001
                self.f = f

            def __enter__(self) -> HalfWritten:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, data: bytes) -> int:
                if not full():
                    return self.f.write(data)
                self.f.write(data[: len(data) // 2])  # half of it lands, then the disk is full
                _no_space()

            def __getattr__(self, name: str):  # noqa: ANN204
                return getattr(self.f, name)

        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: HalfWritten(real_fdopen(fd, *a, **k)))
    else:
        monkeypatch.setattr(os, how, failing(getattr(os, how)))


@pytest.mark.parametrize("how", ["write", "fsync", "replace"])
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    out = trained
    before = {p: _sha(p) for p in (out, history_path(out))}
    listing = _listing(tmp_path)

    with monkeypatch.context() as m:
        _fail_writes(m, how)
        result = _invoke(*_train_args(out, 2), "--resume")
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert line == (
        f"error: cannot write {out}: No space left on device (free some disk space, or write "
        "elsewhere); it is unchanged"
    )
    assert {p: _sha(p) for p in before} == before  # epoch 1 is still there, whole
    assert _listing(tmp_path) == listing  # and no temporary file is left behind

    result = _invoke(*_train_args(out, 2), "--resume")  # space again: it carries on
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["epoch"] == 2


@pytest.fixture(scope="module")
def resnet14(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(14, **KWARGS), seed=1).eval()
    path = tmp_path_factory.mktemp("ckpt") / "resnet14.pt"
    save_checkpoint(
        path, model, arch="resnet14", arch_kwargs=KWARGS, dataset="embedded", metadata={}
    )
    return path


@pytest.mark.parametrize("how", ["write", "replace"])
def test_a_full_disk_during_a_sweep_keeps_the_finished_rows(
    resnet14: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def args(out: Path) -> list[str]:
        return [
            "sweep", "multi", "--model", str(resnet14), "--limit", "32", "--device", "cpu",
            "--max-k", "3", "--samples", "2", "--chunk", "1", "--out", str(out),
        ]  # fmt: skip

    whole = tmp_path / "whole.csv"
    assert _invoke(*args(whole)).exit_code == 0
    full = whole.read_text().splitlines()
    assert len(full) == 1 + 7

    out = tmp_path / "full_disk.csv"
    with monkeypatch.context() as m:
        # The first sidecar, then each row and the sidecar counting it; then no space.
        _fail_writes(m, how, after=5)
        result = _invoke(*args(out))
    assert result.exit_code == 1
    assert "No space left on device" in _one_error_line(result.stderr)
    assert out.read_text().splitlines() == full[:3]  # the finished rows, whole
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["complete"] is False and meta["status"] == "in progress" and meta["rows"] == 2
    assert stale_temporaries(out) == [] and stale_temporaries(out.with_suffix(".json")) == []

    result = _invoke(*args(out), "--resume")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == full  # the same table as the uninterrupted sweep


# ----------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize("where", ["weights", "momentum"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_resume_refuses_non_finite_numbers_and_keeps_the_file(
    trained: Path, where: str, value: float
) -> None:
    raw = load_checkpoint(trained)
    if where == "weights":
        raw["state_dict"]["layer1.0.conv2.weight"][1, 0, 0, 0] = value
        needle = "non-finite weights in layer1.0.conv2"
    else:
        raw["optimizer_state"]["state"][2]["momentum_buffer"][0] = value
        needle = "non-finite optimizer state (momentum_buffer of parameter 2)"
    torch.save(raw, trained)
    digest = _sha(trained)
    result = _invoke(*_train_args(trained, 2), "--resume")
    assert result.exit_code == 1
    assert needle in _one_error_line(result.stderr)
    assert _sha(trained) == digest


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(trained: Path) -> None:
    before = {p: _sha(p) for p in (trained, history_path(trained))}
    result = _invoke(*_train_args(trained, 3), "--resume", "--lr", "1e30")
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert line.startswith("error: loss became ") and " at epoch 2 step " in line
    assert "lower --lr" in line
    assert f"the last good checkpoint (epoch 1) is kept in {trained}" in line
    assert {p: _sha(p) for p in before} == before
    result = _invoke(*_train_args(trained, 2), "--resume")  # and it is still resumable
    assert result.exit_code == 0, result.output


def test_outputs_that_overflow_are_an_error_not_an_error_rate(
    resnet14: Path, tmp_path: Path
) -> None:
    raw = load_checkpoint(resnet14)
    raw["state_dict"]["fc.weight"].fill_(3e38)  # finite weights whose logits overflow to inf
    path = tmp_path / "overflow.pt"
    torch.save(raw, path)
    for args in (
        ["--drop-block", "1", "--limit", "8"],
        ["sweep", "single", "--limit", "8", "--out", str(tmp_path / "t.csv")],
    ):
        result = _invoke(*args, "--model", str(path), "--device", "cpu")
        assert result.exit_code == 1, result.output
        line = _one_error_line(result.stderr)
        assert "outputs are NaN or infinite" in line and "route [0, 1, 2, 3, 4, 5]" in line
    assert not (tmp_path / "t.csv").exists()  # no row of meaningless errors


def test_amp_stays_within_the_documented_tolerance_of_fp32(tmp_path: Path) -> None:
    """bf16 autocast against fp32 on the embedded ResNet-32 (a real trained network) and 200
    held-out Fashion-MNIST images: every single-block deletion."""
    tables = {}
    for amp in (False, True):
        out = tmp_path / f"amp_{amp}.csv"
        extra = ["--amp"] if amp else []
        # --device auto: the CPU in CI, the GPU where there is one (the measurement to record).
        result = _invoke("sweep", "single", "--limit", "200", "--device", "auto", "--out",
                         str(out), *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(out.with_suffix(".json").read_text())["amp"] is amp
        tables[amp] = pd.read_csv(out).set_index("config")
    fp32, bf16 = tables[False], tables[True]
    assert fp32.index.tolist() == bf16.index.tolist() and len(fp32) == 16
    diff_pp = 100 * (bf16["error"] - fp32["error"]).abs()
    assert diff_pp.max() <= AMP_TOLERANCE_PP, diff_pp.to_dict()
    assert diff_pp.mean() <= AMP_MEAN_TOLERANCE_PP, diff_pp.to_dict()
