"""What a training run reports: its events, the signs that it diverged, where it ran.

``train`` prints nothing. It tells a ``TrainProgress`` callback each ``TrainEvent``
(``TrainMessage``, ``EpochStart``, ``TrainStep``, ``EpochEnd``), which the command line draws
as a progress bar and lines; after the run, ``divergence_warnings`` reads the history for a loss
that is not finite or exploding and a final error at chance, and ``hardware_info`` records the
machine in the checkpoint's metadata. These sit apart from the loop so that a caller (the CLI,
a notebook, a test) can use them without reading the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.checkpoints import package_version

__all__ = [
    "EXPLODING_LOSS",
    "EpochEnd",
    "EpochStart",
    "TrainEvent",
    "TrainMessage",
    "TrainProgress",
    "TrainStep",
    "TrainingDiverged",
    "TrainingWarning",
    "divergence_warnings",
    "hardware_info",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingWarning(UserWarning):
    """A run finished but looks diverged or untrained (``divergence_warnings``)."""


#: A loss this many times a uniform guess's (ln C nats) is exploding: the network is
#: confidently wrong (a diverged 1-epoch run ended at 563,192 against ln 10 = 2.3).
EXPLODING_LOSS = 10.0


def divergence_warnings(history: Sequence[Mapping[str, float]], num_classes: int) -> list[str]:
    """One line for each sign that a run diverged or learned nothing, from its history rows
    (``epoch``, ``train_loss``, ``test_loss``, ``test_error``): a loss that is not finite, a
    loss above ``EXPLODING_LOSS`` times a uniform guess's (ln C), a final test error within a
    quarter of a class's share of chance (1 - 1/C: for 10 classes, 87.5% or more)."""
    if not history or num_classes < 2:
        return []
    guess = math.log(num_classes)
    notes = []
    for column, what in (("train_loss", "training"), ("test_loss", "test")):
        values = [(int(r["epoch"]), float(r.get(column, math.nan))) for r in history]
        bad = [(e, v) for e, v in values if not math.isfinite(v)]
        if bad:
            notes.append(f"the {what} loss is not finite (epoch {bad[0][0]}: {bad[0][1]})")
            continue
        epoch, worst = max(values, key=lambda ev: ev[1])
        if worst > EXPLODING_LOSS * guess:
            notes.append(
                f"the {what} loss exploded: {worst:.4g} at epoch {epoch}, against "
                f"{guess:.4g} for a uniform guess over {num_classes} classes; lower --lr or add "
                "--warmup-epochs 1"
            )
    chance = 1 - 1 / num_classes
    final = history[-1]
    error = float(final.get("test_error", math.nan))
    if math.isfinite(error) and error >= chance - 0.25 / num_classes:
        notes.append(
            f"the final test error {100 * error:.2f}% (epoch {int(final['epoch'])}) is at "
            f"chance ({100 * chance:.4g}% for {num_classes} classes): the network learned "
            "nothing; lower --lr, add --warmup-epochs 1 or train longer"
        )
    return notes


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def hardware_info(device: torch.device | str = "cpu", world_size: int = 1) -> dict[str, Any]:
    """Where a run happened: CPU model, GPU name, library versions."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "device": str(device),
        "processes": world_size,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "resnet_ensemble": package_version(),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


@dataclass(frozen=True)
class TrainMessage:
    """A line worth showing: resuming, a changed recipe, nothing left to do."""

    text: str


@dataclass(frozen=True)
class EpochStart:
    """Epoch ``epoch`` (1-based) of ``epochs`` begins; it will take ``steps`` steps."""

    epoch: int
    epochs: int
    steps: int


@dataclass(frozen=True)
class TrainStep:
    """Step ``step`` (1-based) of epoch ``epoch`` finished; ``loss`` is its mean over all
    processes."""

    epoch: int
    step: int
    loss: float


@dataclass(frozen=True)
class EpochEnd:
    """An epoch finished, its checkpoint and history row written; ``row`` is that row."""

    row: dict[str, float]
    epochs: int

    @property
    def line(self) -> str:
        """The epoch as one line, as the command line and ``TrainConfig.log`` show it."""
        r = self.row
        return (
            f"epoch {int(r['epoch'])}/{self.epochs}  lr {r['lr']:.4g}  train loss "
            f"{r['train_loss']:.4f} err {100 * r['train_error']:.2f}%  test loss "
            f"{r['test_loss']:.4f} err {100 * r['test_error']:.2f}%  ({r['seconds']:.1f}s)"
        )


TrainEvent = TrainMessage | EpochStart | TrainStep | EpochEnd
#: What ``train`` calls with each event, on rank 0 only. An exception raised here stops the run
#: (after an ``EpochEnd``, with that epoch saved).
TrainProgress = Callable[[TrainEvent], None]
