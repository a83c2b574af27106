"""Training CIFAR-style ResNets with He et al.'s (2016) recipe, and the paper's variants.

Holds:
- ``TrainConfig``: every knob of a run (arch, data, SGD recipe, schedule, stochastic depth,
  effective-path training, device, precision, resume), with the published defaults
- ``train``: the loop; writes an atomic checkpoint and a CSV history row after every epoch, and
  resumes from the last one. It prints nothing: it tells a ``TrainProgress`` callback what
  happens (``TrainMessage``, ``EpochStart``, ``TrainStep``, ``EpochEnd``: the ``TrainEvent``s)
  and ``TrainConfig.log`` the lines; the command line draws them
- ``TrainResult``: the trained model and its final errors
- ``TrainingDiverged``: raised when the loss stops being finite
- ``divergence_warnings``: what looks wrong in a finished run's history (a loss that is not
  finite or far above a guess's, a final test error at chance); ``train`` returns them in
  ``TrainResult.warnings`` and issues each as a ``TrainingWarning``
- ``lr_factor``: the learning-rate multiplier at an iteration (warm-up, step or cosine)
- ``check_output_path``, ``history_path``, ``hardware_info``

The events, ``divergence_warnings`` and ``hardware_info`` live in ``training_report`` and are
re-exported here.

Recipe (He et al. 2016, sec. 4.2): SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 50% and 75% of 164 epochs (32k and 48k of 64k iterations), optionally a warm-up
at lr/10 (they use 0.01 for about 400 iterations for ResNet-110). Effective-path training (Veit
et al. 2016, sec. 6): each mini-batch runs only K randomly chosen blocks, the others deleted.

Reproducibility: every epoch's randomness (shuffling, augmentation, stochastic depth, the blocks
chosen for effective-path training) is seeded from (seed, epoch) alone, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have (bit-identical on CPU).

Distributed: launched by ``torchrun`` with WORLD_SIZE > 1 it trains with DistributedDataParallel
(NCCL on CUDA, Gloo on CPU); ``batch_size`` is the global batch, split over the processes, and
only rank 0 writes files or reports.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from ..archs import num_blocks, parse_arch
from ..atomic import remove_stale_temporaries
from ..blocks.registry import residual_blocks
from ..blocks.runtime import resolve_device
from ..core.distributed import Distributed, from_environment
from ..core.interventions import lesion
from ..data.datasets import (
    CROP_FLIP_PADDING,
    DatasetInfo,
    dataset_info,
    dataset_size,
    load_dataset,
    make_loader,
)
from ..data.tensor_batches import TensorImages
from ..models import build_builtin
from ..models.checkpoints import (
    CHECKPOINT_FORMAT,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from ..results import HISTORY_COLUMNS, history_path, sidecar_path, write_table
from .training_report import (
    EpochEnd,
    EpochStart,
    TrainEvent,
    TrainingDiverged,
    TrainingWarning,
    TrainMessage,
    TrainProgress,
    TrainStep,
    divergence_warnings,
    hardware_info,
)

__all__ = [
    "HISTORY_COLUMNS",
    "EpochEnd",
    "EpochStart",
    "TrainConfig",
    "TrainEvent",
    "TrainMessage",
    "TrainProgress",
    "TrainResult",
    "TrainStep",
    "TrainingDiverged",
    "TrainingWarning",
    "check_output_path",
    "divergence_warnings",
    "hardware_info",
    "history_path",
    "lr_factor",
    "train",
]

# Recipe fields whose change on --resume alters the run (reported, not refused).
_RECIPE_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "milestones",
    "warmup_epochs",
    "active_blocks",
    "seed",
    "limit",
)


@dataclass
class TrainConfig:
    """One training run. Defaults are He et al.'s CIFAR-10 ResNet-110 recipe."""

    arch: str = "resnet110"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    out: Path = Path("checkpoint.pt")
    epochs: int = 164
    batch_size: int = 128  # global, split over DDP processes
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["step", "cosine"] = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs; lr / 10 at each
    warmup_epochs: float = 0.0  # at lr / 10; He et al. warm ResNet-110 up for ~400 iterations
    shortcut: str = "A"
    stochastic_depth: float | None = None  # final survival probability (Huang et al.: 0.5)
    # One draw per block per mini-batch (Huang et al.), or per sample (timm's drop_path).
    stochastic_depth_draw: Literal["batch", "sample"] = "batch"
    active_blocks: int | None = None  # K: effective-path training (Veit et al., sec. 6)
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # None: bf16 autocast on CUDA, off on CPU
    channels_last: bool | None = None  # None: on for CUDA
    # Augment whole batches as tensors (data held in memory as uint8) instead of per image in
    # DataLoader workers. None: on for a single process on data that fit in memory.
    batch_augment: bool | None = None
    resume: bool = False
    limit: int | None = None  # train images (smoke tests); also limits test images by default
    test_limit: int | None = None
    num_workers: int = 2
    # Receives the run's lines (messages, and one per epoch after its checkpoint is written).
    log: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def recipe(self) -> dict[str, Any]:
        """The config as plain values, for checkpoint metadata."""
        out = asdict(self)
        out.pop("log", None)
        out["out"] = str(self.out)
        out["milestones"] = [float(m) for m in self.milestones]
        return out


@dataclass
class TrainResult:
    """What ``train`` produced. ``model`` is the trained network in eval mode."""

    model: nn.Module
    checkpoint: Path
    history_path: Path
    history: list[dict[str, float]]
    epochs: int
    final_test_error: float
    final_test_loss: float
    final_train_loss: float
    final_train_error: float
    wall_seconds: float
    resumed_from: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # divergence_warnings' one-line notes


# ----------------------------------------------------------------------------------------------
# Small helpers


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, an output path that could not be written at the end."""
    path = Path(out).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name such as {path}/ckpt.pt")
    if not parent.exists():
        raise ValueError(f"--out {path}: folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--out {path} exists and is not writable")
    return path


def lr_factor(
    step: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    schedule: Literal["step", "cosine"] = "step",
    milestones: Sequence[float] = (0.5, 0.75),
    warmup_epochs: float = 0.0,
) -> float:
    """The multiplier of the base lr at iteration ``step`` (0-based).

    Warm-up: lr / 10 for the first ``warmup_epochs`` (He et al.'s constant warm-up, not a ramp).
    Step: / 10 at each milestone, placed on the epoch boundary nearest ``fraction * epochs``
    (0.5 and 0.75 of 164 -> epochs 82 and 123, the classic 32k and 48k iterations). Cosine:
    from 1 to 0 over the iterations after the warm-up.
    """
    warm = round(warmup_epochs * steps_per_epoch)
    if step < warm:
        return 0.1
    if schedule == "cosine":
        total = max(1, epochs * steps_per_epoch - warm)
        t = min(1.0, (step - warm) / total)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule != "step":
        raise ValueError(f"schedule must be 'step' or 'cosine', got {schedule!r}")
    boundaries = [math.floor(m * epochs + 0.5) * steps_per_epoch for m in milestones]
    return 0.1 ** sum(step >= b for b in boundaries)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for one epoch that depends on (seed, epoch) only, with no collisions
    between nearby seeds (unlike seed + epoch)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def _seed_everything(value: int) -> None:
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _rng_states() -> dict[str, Any]:
    """The generators' states, recorded for inspection (resume reseeds from (seed, epoch))."""
    np_state = np.random.get_state(legacy=False)["state"]  # the legacy tuple's keys and pos
    py_state = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state["key"], dtype=np.int64)),
            "pos": int(np_state["pos"]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


# ----------------------------------------------------------------------------------------------
# Progress: what a run reports, as events; the library never prints, a caller renders them


def _reporter(progress: TrainProgress | None, log: Callable[[str], None] | None) -> TrainProgress:
    """One callback for both listeners: ``progress`` gets every event, ``log`` the lines."""

    def report(event: TrainEvent) -> None:
        if progress is not None:
            progress(event)
        if log is not None and isinstance(event, TrainMessage):
            log(event.text)
        elif log is not None and isinstance(event, EpochEnd):
            log(event.line)

    return report


def _check_config(config: TrainConfig, num_blocks: int) -> None:
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if not config.lr > 0:
        raise ValueError(f"lr must be > 0, got {config.lr}")
    if config.warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {config.warmup_epochs}")
    if any(not 0 < m <= 1 for m in config.milestones):
        raise ValueError(
            f"milestones are fractions of the epochs in (0, 1], got {config.milestones}"
        )
    if config.shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be A or B, got {config.shortcut!r}")
    plain = parse_arch(config.arch)["family"] == "plain"
    if config.stochastic_depth is not None:
        if not 0 < config.stochastic_depth <= 1:
            raise ValueError(
                f"stochastic depth survival must be in (0, 1], got {config.stochastic_depth}"
            )
        if plain:
            raise ValueError(f"--stochastic-depth needs residual blocks; {config.arch} has none")
    if config.active_blocks is not None:
        if config.stochastic_depth is not None:
            raise ValueError("choose --stochastic-depth or --active-blocks, not both")
        if plain:
            raise ValueError(
                f"--active-blocks deletes blocks, which needs shortcuts; {config.arch} has none"
            )
        if not 1 <= config.active_blocks <= num_blocks:
            raise ValueError(
                f"--active-blocks {config.active_blocks} must be between 1 and the "
                f"{num_blocks} residual blocks of {config.arch}"
            )


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# The loop


def train(config: TrainConfig, progress: TrainProgress | None = None) -> TrainResult:
    """Train ``config.arch`` on ``config.dataset`` and write ``config.out`` after every epoch.

    Nothing is printed: what happens is told to ``progress`` (every event) and to
    ``config.log`` (the lines: messages and one per epoch), on rank 0 only.

    Args:
        config: the run; see ``TrainConfig``.
        progress: called with each ``TrainEvent`` (``TrainMessage``, ``EpochStart``,
            ``TrainStep``, ``EpochEnd``).
    Returns:
        a ``TrainResult`` with the trained model and its final test error; its ``warnings``
        say where the run looks diverged or untrained (each also issued as a
        ``TrainingWarning``).
    Raises:
        TrainingDiverged: the loss became NaN or infinite (the last good checkpoint is kept).
        ValueError, FileNotFoundError: a bad configuration, output path or dataset.
    Example:
        >>> config = TrainConfig(arch="resnet20", dataset="cifar10", out=Path("r20.pt"), log=print)
        >>> train(config).final_test_error
    """
    callback = progress
    started = time.time()
    out = check_output_path(config.out)
    requested = resolve_device(config.device)
    info = dataset_info(config.dataset)
    parse_arch(config.arch)  # a bad name fails before any process group or data
    with from_environment(requested) as world:
        report = _reporter(callback, config.log) if world.is_main else _ignore
        result = _Run(config, report, world, out, info, started).run()
    result.warnings = divergence_warnings(result.history, info.num_classes or 0)
    for note in result.warnings if world.is_main else ():
        warnings.warn(f"{out}: {note}", TrainingWarning, stacklevel=2)
    return result


def _ignore(_event: TrainEvent) -> None:
    """Ranks other than 0 report nothing."""


class _Run:
    """One training run's state, set up in the order that fails cheapest first: model and
    config checks, then data, then optimizer, then the checkpoint to resume."""

    def __init__(
        self,
        config: TrainConfig,
        report: TrainProgress,
        world: Distributed,
        out: Path,
        info: DatasetInfo,
        started: float,
    ) -> None:
        device = world.device
        self.config, self.world, self.device, self.out, self.info = config, world, device, out, info
        self.started = started
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.report = report
        cuda = device.type == "cuda"
        self.amp = cuda if config.amp is None else bool(config.amp)
        self.channels_last = cuda if config.channels_last is None else bool(config.channels_last)
        if config.batch_size % world.world:
            raise ValueError(
                f"--batch-size {config.batch_size} must divide evenly over {world.world} processes"
            )
        self.local_batch = config.batch_size // world.world
        if cuda:
            torch.backends.cudnn.benchmark = True

        # The same initial weights on every process (DDP also broadcasts rank 0's).
        _seed_everything(config.seed)
        self.arch_kwargs = {
            "num_classes": info.num_classes,
            "in_channels": info.in_channels,
            "shortcut": config.shortcut,
            "stochastic_depth": config.stochastic_depth,
            "active_blocks": config.active_blocks,
        }
        if config.stochastic_depth is not None:  # older checkpoints lack the key: add only here
            self.arch_kwargs["stochastic_depth_draw"] = config.stochastic_depth_draw
        # Checked before building, so that a bad --active-blocks gets the trainer's message.
        _check_config(config, num_blocks(config.arch))
        self.core = build_builtin(config.arch, **self.arch_kwargs)
        self.n_blocks = len(residual_blocks(self.core))
        self.core.to(device)
        if self.channels_last:
            self.core.to(memory_format=torch.channels_last)

        self._load_data()
        self.optimizer = torch.optim.SGD(
            self.core.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

        self.start_epoch, self.wall_before = 0, 0.0
        self.history: list[dict[str, float]] = []
        if world.is_main:  # hidden temporaries of a run killed mid-write: this run owns the files
            for path in (out, history_path(out), sidecar_path(history_path(out))):
                remove_stale_temporaries(path)
        if config.resume and out.exists():
            self.start_epoch, self.history, self.wall_before = _restore(self)
        elif config.resume:
            self._say(f"no checkpoint at {out} yet; starting from epoch 0")
        elif out.exists():
            self._say(
                f"note: {out} exists and will be overwritten after epoch 1 (--resume continues "
                "it instead)"
            )

        self.model: nn.Module = self.core
        if world.active:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.core,
                device_ids=[device.index] if cuda else None,
                # Effective-path training leaves the deleted blocks' parameters without grads.
                # So does stochastic depth with one draw per mini-batch (it skips the branch).
                find_unused_parameters=config.active_blocks is not None
                or (
                    config.stochastic_depth is not None and config.stochastic_depth_draw == "batch"
                ),
            )

    def _say(self, text: str) -> None:
        self.report(TrainMessage(text))

    # -- setup ---------------------------------------------------------------------------------

    def _load_data(self) -> None:
        config, world = self.config, self.world
        test_limit = config.test_limit if config.test_limit is not None else config.limit

        def both() -> tuple[Dataset, Dataset]:
            return (
                load_dataset(
                    config.dataset,
                    "train",
                    augment=True,
                    limit=config.limit,
                    seed=config.seed,
                    data_dir=config.data_dir,
                    download=config.download,
                ),
                load_dataset(
                    config.dataset,
                    "test",
                    augment=False,
                    limit=test_limit,
                    seed=config.seed,
                    data_dir=config.data_dir,
                    download=config.download,
                ),
            )

        # Rank 0 first, so that processes do not race to download the same files.
        if world.is_main:
            self.train_set, test_set = both()
        world.barrier()
        if not world.is_main:
            self.train_set, test_set = both()
        if dataset_size(self.train_set) == 0:
            raise ValueError(f"the {config.dataset} training split is empty")
        self.num_test_images = dataset_size(test_set)
        # Whole-batch tensor augmentation: one process, data in memory, a known augmentation.
        self.tensor_train: TensorImages | None = None
        self.tensor_test: TensorImages | None = None
        wanted = config.batch_augment is not False and not world.active
        if wanted and self.info.name in CROP_FLIP_PADDING:
            self.tensor_train = TensorImages.from_dataset(
                self.train_set, self.info.mean, self.info.std
            )
            self.tensor_test = TensorImages.from_dataset(test_set, self.info.mean, self.info.std)
        if config.batch_augment and self.tensor_train is None:
            raise ValueError(
                f"--batch-augment needs one process and {config.dataset} held in memory "
                f"({', '.join(CROP_FLIP_PADDING)}); drop it to augment per image"
            )
        self.sampler: DistributedSampler | None = None
        if world.active:
            self.sampler = DistributedSampler(
                self.train_set, num_replicas=world.world, rank=world.rank, seed=config.seed
            )
            # An exact shard of the test set per process (DistributedSampler would pad it).
            test_set = Subset(test_set, range(world.rank, self.num_test_images, world.world))
        n_local = len(self.sampler) if self.sampler is not None else dataset_size(self.train_set)
        self.steps_per_epoch = math.ceil(n_local / self.local_batch)
        # The test set as tensors where it is held so, else through a DataLoader: only one.
        eval_batch = max(self.local_batch, 256)
        self.test_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]
        if self.tensor_test is not None:
            self.test_batches = partial(self.tensor_test.batches, eval_batch)
        else:
            loader = make_loader(
                test_set, batch_size=eval_batch, shuffle=False, num_workers=config.num_workers
            )
            self.test_batches = lambda: loader

    def _lr_factor(self, step: int) -> float:
        c = self.config
        return lr_factor(
            step,
            steps_per_epoch=self.steps_per_epoch,
            epochs=c.epochs,
            schedule=c.schedule,
            milestones=c.milestones,
            warmup_epochs=c.warmup_epochs,
        )

    def _train_loader(self, epoch: int, seed: int) -> Any:
        if self.tensor_train is not None:
            return self.tensor_train.batches(
                self.local_batch, seed=seed, padding=CROP_FLIP_PADDING[self.info.name], flip=True
            )
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        return make_loader(
            self.train_set,
            batch_size=self.local_batch,
            shuffle=self.sampler is None,
            sampler=self.sampler,
            seed=seed,
            num_workers=self.config.num_workers,
        )

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        if self.start_epoch >= config.epochs:
            self._say(f"{self.out} is already trained for {self.start_epoch} epochs; nothing to do")
        for epoch in range(self.start_epoch, config.epochs):
            epoch_start = time.time()
            seed = _epoch_seed(config.seed, epoch)
            lr = float(self.optimizer.param_groups[0]["lr"])
            train_loss, train_error = self._train_epoch(epoch, seed)
            test_loss, test_error = self._evaluate()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                "train_error": train_error,
                "test_loss": test_loss,
                "test_error": test_error,
                "seconds": round(time.time() - epoch_start, 3),
            }
            self.history.append(row)
            if self.world.is_main:
                self._save(epoch + 1, seed)
            self.report(EpochEnd(dict(row), config.epochs))
            self.world.barrier()
        self.core.eval()
        nan = math.nan
        final = self.history[-1] if self.history else {}
        return TrainResult(
            model=self.core,
            checkpoint=self.out,
            history_path=history_path(self.out),
            history=list(self.history),
            epochs=max(self.start_epoch, len(self.history)),
            final_test_error=float(final.get("test_error", nan)),
            final_test_loss=float(final.get("test_loss", nan)),
            final_train_loss=float(final.get("train_loss", nan)),
            final_train_error=float(final.get("train_error", nan)),
            wall_seconds=self._wall(),
            resumed_from=self.start_epoch,
            metadata=self._metadata(),
        )

    def _train_epoch(self, epoch: int, seed: int) -> tuple[float, float]:
        """One pass over the training data; (mean loss, error) over all processes."""
        config, device, world = self.config, self.device, self.world
        # Augmentation and stochastic depth differ per process; the blocks kept do not.
        _seed_everything(seed + world.rank)
        choose = torch.Generator().manual_seed(seed)
        self.model.train()
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, wrong, count
        self.report(EpochStart(epoch + 1, config.epochs, self.steps_per_epoch))
        # On a GPU, reading a step's loss waits for the step to finish, and the GPU then idles
        # while the next step is launched: the loss is read one step late there instead (the
        # CPU queues step s + 1 while step s runs). A non-finite loss still stops the run, one
        # step later; the checkpoint on disk is the last good epoch's either way.
        lag = device.type == "cuda"
        pending: tuple[int, Tensor] | None = None  # (step, loss summed over processes)
        loss_value = math.nan
        for step, (x, y) in enumerate(self._train_loader(epoch, seed)):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._active_paths(choose):
                with _autocast(device, self.amp):
                    logits = self.model(x)  # (B, num_classes)
                loss = F.cross_entropy(logits.float(), y)
                # Summed over processes, so that every process stops at the same step.
                summed = world.sum_(loss.detach().clone())
                if not lag:  # before the update, so that a NaN never reaches the weights
                    loss_value = self._finite_loss(epoch, step, summed)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            with torch.no_grad():
                totals[0] += loss.detach().double() * y.numel()
                totals[1] += (logits.detach().argmax(1) != y).sum()
                totals[2] += y.numel()
            if not lag:
                self.report(TrainStep(epoch + 1, step + 1, loss_value))
                continue
            if pending is not None:
                self._report_late_step(epoch, *pending)
            pending = (step, summed)
        if pending is not None:
            self._report_late_step(epoch, *pending)
        totals = world.sum_(totals)
        count = max(1.0, float(totals[2]))
        return float(totals[0]) / count, float(totals[1]) / count

    def _finite_loss(self, epoch: int, step: int, summed: Tensor) -> float:
        """The step's mean loss over processes (``summed`` over them); a non-finite one stops
        the run."""
        loss_value = float(summed) / self.world.world
        if not math.isfinite(loss_value):
            raise TrainingDiverged(self._diverged(loss_value, epoch, step))
        return loss_value

    def _report_late_step(self, epoch: int, step: int, summed: Tensor) -> None:
        self.report(TrainStep(epoch + 1, step + 1, self._finite_loss(epoch, step, summed)))

    def _active_paths(self, choose: torch.Generator) -> contextlib.AbstractContextManager[Any]:
        """Effective-path training: keep K blocks drawn uniformly at random, delete the rest."""
        k = self.config.active_blocks
        if k is None or k >= self.n_blocks:
            return contextlib.nullcontext()
        keep = set(torch.randperm(self.n_blocks, generator=choose)[:k].tolist())
        return lesion(self.core, drop=[i for i in range(self.n_blocks) if i not in keep])

    def _diverged(self, value: float, epoch: int, step: int) -> str:
        what = "NaN" if math.isnan(value) else "infinite"
        kept = (
            f"the last good checkpoint (epoch {epoch}) is kept in {self.out}"
            if epoch > 0
            else "no checkpoint was written"
        )
        return (
            f"loss became {what} at epoch {epoch + 1} step {step + 1}; lower --lr (now "
            f"{self.config.lr:g}) or add --warmup-epochs 1; {kept}"
        )

    def _evaluate(self) -> tuple[float, float]:
        """(mean loss, error) on the test split, summed over all processes."""
        world = self.world
        if world.active:  # evaluate rank 0's BN statistics everywhere: they are what is saved
            for buffer in self.core.buffers():
                world.broadcast_(buffer)
        # The bare model: a DDP forward would need the same number of batches on every shard.
        model = self.core.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, wrong, count
        with torch.no_grad():
            for x, y in self.test_batches():
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(self.device, self.amp):
                    logits = model(x).float()
                totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
                totals[1] += (logits.argmax(1) != y).sum()
                totals[2] += y.numel()
        totals = world.sum_(totals)
        count = max(1.0, float(totals[2]))
        return float(totals[0]) / count, float(totals[1]) / count

    # -- records -------------------------------------------------------------------------------

    def _wall(self) -> float:
        return self.wall_before + (time.time() - self.started)

    def _metadata(self) -> dict[str, Any]:
        c, last = self.config, (self.history[-1] if self.history else {})
        return {
            "arch": c.arch,
            "dataset": c.dataset,
            "synthetic": bool(self.info.synthetic),
            "epochs": c.epochs,
            "epochs_done": int(last.get("epoch", self.start_epoch)),
            "seed": c.seed,
            "recipe": c.recipe(),
            "command": list(sys.argv),
            "command_line": shlex.join(sys.argv),
            "hardware": hardware_info(self.device, self.world.world),
            "num_train_images": dataset_size(self.train_set),
            "num_test_images": self.num_test_images,
            "num_blocks": self.n_blocks,
            "amp": "bf16" if self.amp else None,
            "channels_last": self.channels_last,
            "batch_augment": self.tensor_train is not None,
            "started_at": self.started_at,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(self._wall(), 3),
            **{
                k: last[k]
                for k in ("train_loss", "train_error", "test_loss", "test_error")
                if k in last
            },
        }

    def _save(self, epochs_done: int, seed: int) -> None:
        save_checkpoint(
            self.out,
            self.core,
            arch=self.config.arch,
            arch_kwargs=self.arch_kwargs,
            dataset=self.config.dataset,
            metadata=self._metadata(),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            epoch=epochs_done,
            normalization=(self.info.mean, self.info.std),
            extra={"history": self.history, "rng": _rng_states(), "epoch_seed": seed},
        )
        # The history CSV and its sidecar (provenance: the recipe, the command, the versions).
        recipe = self.config.recipe()
        about = {"arch": recipe["arch"], "dataset": recipe["dataset"], "recipe": recipe}
        history = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        write_table(history_path(self.out), history, "history", about)


def _check_finite_optimizer_state(state: Any, out: Path) -> None:
    """Refuse momentum buffers holding NaN or inf: SGD would spread them into every weight at
    the first step, and the run would 'diverge' for a reason no learning rate can fix."""
    per_param = state.get("state") if isinstance(state, dict) else None
    for key, slots in (per_param or {}).items():
        for name, value in (slots or {}).items():
            numeric = isinstance(value, Tensor) and value.is_floating_point()
            if numeric and not bool(torch.isfinite(value).all()):
                raise ValueError(
                    f"--resume: {out} has non-finite optimizer state ({name} of parameter "
                    f"{key}); the checkpoint is damaged: resume from an earlier copy, or train "
                    "to a new --out"
                )


def _restore(run: _Run) -> tuple[int, list[dict[str, float]], float]:
    """Load model, optimizer, schedule and history from ``run.out``; (epoch, history, wall).

    The new config's recipe governs the rest of the run (the values are identical when it is
    unchanged); a changed recipe is reported, a different model or dataset refused.
    """
    config, out = run.config, run.out
    ckpt = load_checkpoint(out)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"--resume: {out} is not a resnet-ensemble checkpoint")
    if ckpt.get("epoch") is None or ckpt.get("optimizer_state") is None:
        raise ValueError(
            f"--resume: {out} holds no optimizer state (a final or exported checkpoint); "
            "train to a new --out instead"
        )
    stored = ckpt.get("arch_kwargs") or {}
    same_model = ckpt.get("arch") == config.arch and all(
        stored.get(k) == v for k, v in run.arch_kwargs.items()
    )
    if not same_model or ckpt.get("dataset") != config.dataset:
        raise ValueError(
            f"--resume: {out} is a {ckpt.get('arch')} {stored} trained on {ckpt.get('dataset')}, "
            f"not {config.arch} {run.arch_kwargs} on {config.dataset}; use another --out"
        )
    old = (ckpt.get("metadata") or {}).get("recipe") or {}
    new = config.recipe()
    for key in _RECIPE_FIELDS:
        if key in old and old[key] != new[key]:
            run._say(f"warning: resuming with {key} {new[key]} (the checkpoint used {old[key]})")
    state = ckpt["state_dict"]
    check_state_dict(run.core, state, str(out), config.arch)
    _check_finite_optimizer_state(ckpt["optimizer_state"], out)
    run.core.load_state_dict(state)
    optimizer, scheduler = run.optimizer, run.scheduler
    try:
        optimizer.load_state_dict(ckpt["optimizer_state"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"--resume: the optimizer state in {out} does not fit ({err})") from None
    epoch = int(ckpt["epoch"])
    # The optimizer state would bring back the old lr, momentum and weight decay: recompute.
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    scheduler.last_epoch = epoch * run.steps_per_epoch
    lrs: list[float | Tensor] = [
        config.lr * fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas
    ]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group.update(
            lr=lr, initial_lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    scheduler._last_lr = lrs
    extra = ckpt.get("extra") or {}
    history = [dict(r) for r in extra.get("history", [])][:epoch]
    wall = float((ckpt.get("metadata") or {}).get("wall_seconds") or 0.0)
    run._say(f"resuming {out} from epoch {epoch}")
    return epoch, history, wall
