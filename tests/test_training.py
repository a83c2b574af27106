"""Training: the loop learns, checkpoints reload exactly, resume is bit-identical, effective-path
training runs K blocks per step, divergence keeps the last good checkpoint, and the CLI works.

Every run is a resnet8/resnet14 on a few hundred synthetic images, on the CPU.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from resnet_ensemble.cli import cli
from resnet_ensemble.models import build_builtin
from resnet_ensemble.models.checkpoints import load_checkpoint
from resnet_ensemble.models.specs import load_model
from resnet_ensemble.studies import training
from resnet_ensemble.studies.training import (
    HISTORY_COLUMNS,
    EpochEnd,
    EpochStart,
    TrainConfig,
    TrainEvent,
    TrainingDiverged,
    TrainMessage,
    TrainStep,
    history_path,
    lr_factor,
    train,
)

REPO = Path(__file__).resolve().parents[1]


class _Stop(Exception):
    """Raised from the log callback to simulate a run killed after an epoch was saved."""


def config(tmp_path: Path, name: str = "ckpt.pt", **overrides) -> TrainConfig:
    base = {
        "arch": "resnet8",
        "dataset": "synthetic",
        "out": tmp_path / name,
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.05,
        "limit": 64,
        "test_limit": 64,
        "device": "cpu",
        "num_workers": 0,
    }
    return TrainConfig(**{**base, **overrides})


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_learns_and_checkpoint_reloads_exactly(tmp_path: Path) -> None:
    result = train(config(tmp_path, epochs=2, limit=256, lr=0.1, test_limit=128))
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.final_test_error < 0.75  # 10 classes: chance is 0.9
    loaded = load_model(result.checkpoint)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), result.model(x))
    meta = loaded.metadata
    assert meta["epochs_done"] == 2 and meta["seed"] == 0 and meta["synthetic"] is True
    assert meta["test_error"] == pytest.approx(result.final_test_error)
    assert meta["command"] == sys.argv and meta["hardware"]["torch"] == str(torch.__version__)
    assert meta["wall_seconds"] > 0 and meta["recipe"]["lr"] == 0.1
    rows = read_history(history_path(result.checkpoint))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    # The history has a sidecar like every table: its kind, the recipe and the provenance.
    side = json.loads(history_path(result.checkpoint).with_suffix(".json").read_text())
    assert side["table"] == "history" and side["recipe"]["lr"] == 0.1 and "command" in side


@pytest.mark.parametrize(
    "data",
    [
        {},  # synthetic data through the DataLoader, per-sample stochastic depth
        {"stochastic_depth_draw": "sample"},
        # the real Fashion-MNIST, augmented a whole batch at a time as tensors
        {"dataset": "fashion-mnist", "batch_augment": True, "limit": 96},
    ],
    ids=["loader", "loader-per-sample", "tensor-batches"],
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path, data: dict) -> None:
    def cfg(tmp_path: Path, name: str = "ckpt.pt", **overrides) -> TrainConfig:
        return config(tmp_path, name, **{**data, **overrides})

    whole = train(cfg(tmp_path, "whole.pt", stochastic_depth=0.5))
    if data.get("batch_augment"):
        assert load_checkpoint(tmp_path / "whole.pt")["metadata"]["batch_augment"] is True

    def die_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise _Stop

    with pytest.raises(_Stop):
        train(
            cfg(tmp_path, "split.pt", stochastic_depth=0.5, log=die_after_first_epoch),
        )
    assert load_checkpoint(tmp_path / "split.pt")["epoch"] == 1
    assert len(read_history(tmp_path / "split.history.csv")) == 1
    resumed = train(cfg(tmp_path, "split.pt", stochastic_depth=0.5, resume=True))
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [
        {k: v for k, v in r.items() if k != "seconds"}
        for r in read_history(tmp_path / "split.history.csv")
    ]
    assert strip == [
        {k: v for k, v in r.items() if k != "seconds"}
        for r in read_history(tmp_path / "whole.history.csv")
    ]
    # Resuming a finished run does nothing and says so.
    said: list[str] = []
    again = train(cfg(tmp_path, "split.pt", stochastic_depth=0.5, resume=True, log=said.append))
    assert again.epochs == 2 and any("nothing to do" in s for s in said)


def test_the_progress_callback_receives_every_step_and_epoch_and_nothing_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, batch, epochs = 70, 32, 2
    steps = math.ceil(images / batch)  # 32 + 32 + 6
    events: list[TrainEvent] = []
    lines: list[str] = []
    run = config(tmp_path, epochs=epochs, limit=images, batch_size=batch, log=lines.append)
    result = train(run, progress=events.append)
    assert capsys.readouterr() == ("", "")

    per_epoch = 1 + steps + 1
    assert len(events) == epochs * per_epoch  # a fresh run has no messages
    history = read_history(history_path(result.checkpoint))
    for e in range(epochs):
        start, *step_events, end = events[e * per_epoch : (e + 1) * per_epoch]
        assert start == EpochStart(epoch=e + 1, epochs=epochs, steps=steps)
        assert [(s.epoch, s.step) for s in step_events] == [(e + 1, i + 1) for i in range(steps)]
        assert all(isinstance(s, TrainStep) for s in step_events)
        assert isinstance(end, EpochEnd) and end.epochs == epochs
        # The row is the one the history CSV holds, to the last digit.
        assert {k: str(v) for k, v in end.row.items()} == history[e]
        # The epoch's train loss is the mean over images of the steps' losses.
        sizes = [batch] * (images // batch) + [images % batch]
        mean = sum(s.loss * n for s, n in zip(step_events, sizes, strict=True)) / images
        assert end.row["train_loss"] == pytest.approx(mean, rel=1e-12)
    # TrainConfig.log still gets the lines: one per epoch.
    assert lines == [e.line for e in events if isinstance(e, EpochEnd)]
    assert lines[0].startswith("epoch 1/2  lr 0.05  train loss ")

    # Resuming the finished run: two messages and no epoch, to both listeners.
    said: list[str] = []
    resumed: list[TrainEvent] = []
    finished = config(tmp_path, epochs=epochs, limit=images, resume=True, log=said.append)
    train(finished, progress=resumed.append)
    assert resumed == [
        TrainMessage(f"resuming {result.checkpoint} from epoch 2"),
        TrainMessage(f"{result.checkpoint} is already trained for 2 epochs; nothing to do"),
    ]
    assert said == [m.text for m in resumed]
    assert capsys.readouterr() == ("", "")  # the library prints nothing


def test_whole_batch_augmentation_builds_no_data_loader(tmp_path: Path, monkeypatch) -> None:
    """Held as tensors, the train and test sets need no DataLoader; without, both get one."""
    made: list[int] = []
    real_make_loader = training.make_loader

    def counting_make_loader(dataset, **kwargs):
        made.append(len(dataset))
        return real_make_loader(dataset, **kwargs)

    monkeypatch.setattr(training, "make_loader", counting_make_loader)
    small = {"epochs": 1, "limit": 64, "test_limit": 48}
    tensors = train(config(tmp_path, "t.pt", dataset="fashion-mnist", batch_augment=True, **small))
    assert made == [] and load_checkpoint(tensors.checkpoint)["metadata"]["batch_augment"]
    train(config(tmp_path, "l.pt", batch_augment=False, **small))
    assert sorted(made) == [48, 64]  # the test loader, once; the train loader, once per epoch


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    train(config(tmp_path, epochs=1, limit=32))
    with pytest.raises(ValueError, match="--resume: .* is a resnet8 .* not resnet14"):
        train(config(tmp_path, arch="resnet14", epochs=1, limit=32, resume=True))


def test_effective_path_training_runs_k_blocks_per_step(tmp_path: Path, monkeypatch) -> None:
    """Counted with forward hooks on each block's second convolution (the residual branch),
    independently of how blocks are deleted."""
    events: list[str] = []
    real_build = training.build_builtin

    def build_and_watch(*args, **kwargs) -> nn.Module:
        model = real_build(*args, **kwargs)
        for name, module in model.named_modules():
            if name.endswith(".conv2"):
                module.register_forward_hook(
                    lambda m, i, o, name=name: events.append(name) if m.training else None
                )
        model.fc.register_forward_hook(lambda m, i, o: events.append("|") if m.training else None)
        return model

    monkeypatch.setattr(training, "build_builtin", build_and_watch)
    k = 2
    train(
        config(tmp_path, arch="resnet14", active_blocks=k, epochs=1, limit=320, test_limit=32),
    )
    steps: list[list[str]] = [[]]
    for e in events:
        if e == "|":
            steps.append([])
        else:
            steps[-1].append(e)
    steps = steps[:-1]
    assert len(steps) == 10  # 320 images / batch 32
    assert all(len(s) == k and len(set(s)) == k for s in steps)
    chosen = Counter(name for s in steps for name in s)
    assert len(chosen) >= 4  # the subset changes from step to step (6 blocks in resnet14)
    assert len({tuple(sorted(s)) for s in steps}) > 1


def test_an_effective_path_network_evaluates_with_residuals_scaled_by_k_over_n(
    tmp_path: Path,
) -> None:
    """Trained on K of n blocks, each residual is present with probability K/n: evaluation must
    scale it so, as stochastic depth does, or the full net is far from its BN statistics."""
    out = tmp_path / "eff.pt"
    train(
        config(tmp_path, "eff.pt", arch="resnet14", active_blocks=2, epochs=1, limit=64),
    )
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch_kwargs"]["active_blocks"] == 2
    model = load_model(str(out)).model
    plain = build_builtin("resnet14", **{**ckpt["arch_kwargs"], "active_blocks": None})
    plain.load_state_dict(ckpt["state_dict"])
    plain.eval()
    x = torch.randn(3, *model.example_input_size)
    h = plain.stem(x)
    for stage in (plain.layer1, plain.layer2, plain.layer3):
        for blk in stage:  # by hand: relu(shortcut(h) + (2/6) * residual(h))
            r = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(h)))))
            h = F.relu(blk.shortcut(h) + r * (2 / 6))
    torch.testing.assert_close(model(x), plain.head(h))


def test_active_blocks_larger_than_the_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 1 and the 3 residual blocks of resnet8"):
        train(config(tmp_path, active_blocks=4))
    with pytest.raises(ValueError, match="needs shortcuts"):
        train(config(tmp_path, arch="plain8", active_blocks=2))


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch):
    poisoned = {"on": False}
    real_load = training.load_dataset

    class Poison(torch.utils.data.Dataset):
        def __init__(self, base) -> None:
            self.base = base

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, i):
            x, y = self.base[i]
            return (x * float("nan") if poisoned["on"] else x), y

    monkeypatch.setattr(training, "load_dataset", lambda *a, **k: Poison(real_load(*a, **k)))
    out = tmp_path / "ckpt.pt"
    digest: dict[str, str] = {}

    def poison_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/"):
            digest["after_epoch_1"] = hashlib.sha256(out.read_bytes()).hexdigest()
            poisoned["on"] = True

    with pytest.raises(TrainingDiverged) as info:
        train(config(tmp_path, log=poison_after_first_epoch))
    message = str(info.value)
    assert message.startswith("loss became NaN at epoch 2 step 1; lower --lr")
    assert "\n" not in message and "kept in" in message
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest["after_epoch_1"]
    assert load_model(out).metadata["epochs_done"] == 1


def test_lr_schedule_follows_he_et_al() -> None:
    kw = {"steps_per_epoch": 391, "epochs": 164}
    assert lr_factor(0, **kw) == 1.0
    assert lr_factor(82 * 391 - 1, **kw) == 1.0 and lr_factor(82 * 391, **kw) == pytest.approx(0.1)
    assert lr_factor(123 * 391, **kw) == pytest.approx(0.01)
    assert lr_factor(0, warmup_epochs=1, **kw) == pytest.approx(0.1)
    assert lr_factor(391, warmup_epochs=1, **kw) == 1.0
    assert lr_factor(164 * 391, schedule="cosine", **kw) == pytest.approx(0.0)
    assert lr_factor(82 * 391, schedule="cosine", **kw) == pytest.approx(0.5)


def test_cli_train_writes_checkpoint_and_history(tmp_path: Path, monkeypatch) -> None:
    from resnet_ensemble.cli import common

    monkeypatch.setattr(common, "PROGRESS_EVERY_S", 0.0)  # off a terminal: a line per step
    out = tmp_path / "cli.pt"
    args = [
        "train",
        "--arch",
        "resnet8",
        "--dataset",
        "synthetic",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output and f"wrote {out}" in result.output
    assert result.stdout.startswith("epoch 1/1  lr 0.1  train loss ")  # the epoch's line
    assert "epoch 1/1: 1/2 " in result.stderr  # 64 images / batch 32: step 1 of 2
    assert load_model(out).metadata["epochs_done"] == 1
    assert len(read_history(tmp_path / "cli.history.csv")) == 1


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--epochs", "0"], 2, "--epochs"),
        (["--batch-size", "0"], 2, "--batch-size"),
        (["--stochastic-depth", "1.5"], 2, "--stochastic-depth"),
        (["--active-blocks", "0"], 2, "--active-blocks"),
        (["--schedule", "linear"], 2, "--schedule"),
        (["--arch", "resnet9"], 2, "6n + 2"),
        (["--active-blocks", "9"], 1, "more than the 3 residual blocks"),
        (["--out", "{tmp}/missing/ckpt.pt"], 1, "does not exist"),
        (["--out", "{tmp}"], 1, "is a directory"),
    ],
)
def test_cli_train_refuses_bad_values_early(tmp_path: Path, extra, code, needle) -> None:
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    base = [
        "train",
        "--arch",
        "resnet8",
        "--dataset",
        "synthetic",
        "--out",
        str(tmp_path / "x.pt"),
        "--limit",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli, base + extra)
    assert result.exit_code == code, result.output
    assert needle in result.output
    if code == 1:
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    """DDP with Gloo: two processes train one model; only rank 0 writes."""
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "resnet_ensemble",
        "train",
        "--arch",
        "resnet8",
        "--dataset",
        "synthetic",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--limit",
        "128",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--active-blocks",
        "2",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1
    meta = load_model(out).metadata
    assert meta["hardware"]["processes"] == 2 and meta["num_test_images"] == 128
    assert len(read_history(tmp_path / "ddp.history.csv")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddp.history.csv",
        "ddp.history.json",
        "ddp.pt",
    ]


# ----------------------------------------------------------------------------------------------
# Warnings on a diverged or untrained run


def _history(*rows: tuple[float, float, float]) -> list[dict[str, float]]:
    """(train_loss, test_loss, test_error) per epoch."""
    return [
        {"epoch": e, "train_loss": tr, "test_loss": te, "test_error": err}
        for e, (tr, te, err) in enumerate(rows, start=1)
    ]


def test_divergence_warnings_by_hand():
    """ln 10 = 2.303: a loss above 23.03 explodes; chance for 10 classes is 90%, and 87.5% or
    more counts as at chance."""
    from resnet_ensemble.studies.training import divergence_warnings

    assert divergence_warnings(_history((2.0, 1.5, 0.40), (1.2, 1.0, 0.30)), 10) == []
    assert divergence_warnings(_history((23.0, 2.3, 0.874)), 10) == []  # just under both
    (note,) = divergence_warnings(_history((563192.0, 2.0, 0.5)), 10)
    assert note.startswith("the training loss exploded: 5.632e+05 at epoch 1, against 2.303")
    (note,) = divergence_warnings(_history((2.0, 2.3, 0.80), (2.3, 2.3, 0.906)), 10)
    assert note.startswith("the final test error 90.60% (epoch 2) is at chance (90% for 10")
    (note,) = divergence_warnings(_history((1.0, math.inf, 0.5)), 10)
    assert note == "the test loss is not finite (epoch 1: inf)"
    assert len(divergence_warnings(_history((1e6, math.nan, 0.95)), 10)) == 3
    assert divergence_warnings(_history((1.0, 4.9, 0.98)), 100) == []  # 98% < 98.75%


def test_train_warns_on_a_diverged_run_in_a_real_process(tmp_path):
    """lr 5 on real Fashion-MNIST: the test loss explodes and the error ends at chance; the
    command still writes the checkpoint and exits 0, and says so on stderr, also with --quiet."""
    out = tmp_path / "diverged.pt"
    args = [
        sys.executable, "-m", "resnet_ensemble", "train", "--arch", "resnet8", "--dataset",
        "fashion-mnist", "--epochs", "1", "--limit", "256", "--test-limit", "256",
        "--batch-size", "64", "--lr", "5", "--workers", "0", "--device", "cpu", "--out",
        str(out), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warnings_seen = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert any("loss exploded" in line for line in warnings_seen), done.stderr
    assert "Traceback" not in done.stderr and out.exists()


def test_train_returns_and_issues_the_warnings(tmp_path):
    """The library says it too: in TrainResult.warnings and as a TrainingWarning."""
    from resnet_ensemble.studies.training import TrainingWarning

    run = config(tmp_path, epochs=1, lr=5.0, dataset="fashion-mnist", limit=256, test_limit=256)
    with pytest.warns(TrainingWarning, match="loss exploded"):
        result = train(run)
    assert any("loss exploded" in note for note in result.warnings)
