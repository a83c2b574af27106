"""``ensemble-lesion train``: train a CIFAR-style ResNet with He et al.'s recipe, optionally with
stochastic depth or the paper's effective-path training, writing a checkpoint every epoch.

Holds the click command ``train``; the work is ``resnet_ensemble.studies.training.train``, whose
progress events ``TrainDisplay`` draws. Runs under ``torchrun`` for several GPUs (or CPU
processes) unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..archs import BUILTIN_ARCH_PATTERN, num_blocks, parse_arch
from .common import (
    FiniteFloat,
    bounded,
    choice_option,
    device_option,
    overwrite_option,
    progress_bar,
    seed_option,
)

if TYPE_CHECKING:
    from ..studies.training import EpochStart, TrainEvent

__all__ = ["TrainDisplay", "train"]


class TrainDisplay(contextlib.AbstractContextManager["TrainDisplay"]):
    """Draws a training run's events: messages and one line per epoch on stdout, and each
    epoch's steps on stderr, as a bar with the running loss on a terminal, elsewhere as a line
    every few seconds (``progress_bar``). Use as a context manager, so that a run that stops
    mid-epoch does not leave its bar open."""

    def __init__(self) -> None:
        self._bar = contextlib.ExitStack()
        self._step: Callable[[float], None] | None = None

    def __call__(self, event: TrainEvent) -> None:
        from ..studies.training import EpochEnd, EpochStart, TrainMessage, TrainStep

        if isinstance(event, TrainStep) and self._step is not None:
            self._step(event.loss)
        elif isinstance(event, EpochStart):
            self._open(event)
        elif isinstance(event, EpochEnd):
            self.close()
            click.echo(event.line)
        elif isinstance(event, TrainMessage):
            click.echo(event.text)

    def _open(self, event: EpochStart) -> None:
        self.close()
        label = f"epoch {event.epoch}/{event.epochs}"
        if sys.stderr.isatty():
            bar = self._bar.enter_context(
                click.progressbar(
                    length=event.steps,
                    label=label,
                    file=sys.stderr,
                    item_show_func=lambda text: text,
                    show_eta=True,
                )
            )
            self._step = lambda loss: bar.update(1, current_item=f"loss {loss:.3f}")
        else:
            update = self._bar.enter_context(progress_bar(event.steps, label))
            self._step = lambda _loss: update(1)

    def close(self) -> None:
        """Finish the bar of the epoch in flight, if any."""
        self._bar.close()
        self._step = None

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _milestones(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected fractions such as 0.5,0.75, got {value!r}") from None
    if not out or any(not 0 < m <= 1 for m in out):
        raise click.BadParameter(f"each milestone must be a fraction in (0, 1], got {value!r}")
    return out


def _arch(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        parse_arch(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value.strip().lower()


@click.command()
@click.option(
    "--arch",
    default="resnet110",
    show_default=True,
    callback=_arch,
    help=f"A built-in {BUILTIN_ARCH_PATTERN}.",
)
@click.option(
    "--dataset",
    default="cifar10",
    show_default=True,
    help="cifar10, cifar100, fashion-mnist, imagenet or synthetic (smoke tests only).",
)
@click.option("--data-dir", type=click.Path(), default=None, help="Where the dataset lives.")
@click.option("--download", is_flag=True, help="Download the dataset (needs internet).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("checkpoint.pt"),
    show_default=True,
    help="Checkpoint to write (every epoch); the history goes to OUT_STEM.history.csv.",
)
@click.option(
    "--epochs",
    type=bounded("epochs"),
    default=164,
    show_default=True,
    help="Epochs (the paper: 164).",
)
@click.option(
    "--batch-size",
    type=bounded("batch_size"),
    default=128,
    show_default=True,
    help="Global batch, split over torchrun processes.",
)
@click.option(
    "--lr",
    type=FiniteFloat(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="The learning rate after any warm-up; --schedule lowers it from there.",
)
@click.option(
    "--momentum",
    type=FiniteFloat(0, 1),
    default=0.9,
    show_default=True,
    help="SGD momentum.",
)
@click.option(
    "--weight-decay",
    type=FiniteFloat(min=0),
    default=1e-4,
    show_default=True,
    help="L2 weight decay of SGD.",
)
@choice_option("--schedule", ["step", "cosine"], "Step (He et al.) or cosine decay of the lr.")
@click.option(
    "--milestones",
    default="0.5,0.75",
    show_default=True,
    callback=_milestones,
    help="Step schedule: fractions of the epochs where the lr is divided by 10.",
)
@click.option(
    "--warmup-epochs",
    type=FiniteFloat(min=0, max=100_000),
    default=0.0,
    show_default=True,
    help="Train at lr/10 first (He et al. warm ResNet-110 up for ~1 epoch).",
)
@choice_option(
    "--shortcut", ["A", "B"], "A: zero-padded identity (He et al.'s CIFAR); B: projection."
)
@click.option(
    "--stochastic-depth",
    type=FiniteFloat(0, 1, min_open=True),
    default=None,
    metavar="P",
    help="Stochastic depth with final survival probability P (Huang et al. use 0.5).",
)
@choice_option(
    "--stochastic-depth-draw",
    ["batch", "sample"],
    "Drop each block once per mini-batch (Huang et al.) or per sample (timm's drop_path).",
)
@click.option(
    "--active-blocks",
    type=bounded("active_blocks"),
    default=None,
    metavar="K",
    help="Effective-path training: each mini-batch runs K random blocks, the rest deleted.",
)
@seed_option("Seeds the initial weights, the shuffling, augmentation and dropped blocks.")
@device_option
@click.option("--amp/--no-amp", default=None, help="bf16 autocast. Default: on for CUDA.")
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="channels_last memory format. Default: on for CUDA.",
)
@click.option(
    "--batch-augment/--no-batch-augment",
    default=None,
    help="Augment whole batches as tensors instead of per image in workers. Default: on for "
    "one process on CIFAR or Fashion-MNIST.",
)
@click.option("--resume", is_flag=True, help="Continue from the epoch saved in --out.")
@overwrite_option("the checkpoint and its history")
@click.option(
    "--limit",
    type=bounded("limit"),
    default=None,
    help="Use only the first N train (and test) images.",
)
@click.option(
    "--test-limit", type=bounded("limit"), default=None, help="Evaluate on the first N test images."
)
@click.option(
    "--workers",
    type=bounded("workers"),
    default=2,
    show_default=True,
    help="Processes loading the data (0: in the main process).",
)
@click.option("--quiet", is_flag=True, help="No per-epoch lines or progress bar.")
def train(
    arch: str,
    dataset: str,
    data_dir: str | None,
    download: bool,
    out: Path,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    schedule: str,
    milestones: tuple[float, ...],
    warmup_epochs: float,
    shortcut: str,
    stochastic_depth: float | None,
    stochastic_depth_draw: str,
    active_blocks: int | None,
    seed: int,
    device: str,
    amp: bool | None,
    channels_last: bool | None,
    batch_augment: bool | None,
    resume: bool,
    overwrite: bool,
    limit: int | None,
    test_limit: int | None,
    workers: int,
    quiet: bool,
) -> None:
    """Train a CIFAR ResNet (He et al. 2016): SGD 0.9, wd 1e-4, lr 0.1 / 10 at 50% and 75%.

    Writes --out atomically after every epoch (with optimizer state, for --resume) and a CSV
    history beside it; an existing --out is refused without --resume or --overwrite, and one
    that another run is writing is refused at once. Under torchrun it trains with
    DistributedDataParallel.
    """
    from ..data.datasets import check_data_dir
    from ..outputs import claim_outputs, input_paths
    from ..results import sidecar_path
    from ..studies.training import TrainConfig, TrainingWarning, check_output_path, history_path
    from ..studies.training import train as run_training

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other")
    out = check_output_path(out)
    check_data_dir(dataset, data_dir)
    n_blocks = num_blocks(arch)
    if active_blocks is not None and active_blocks > n_blocks:
        raise ValueError(
            f"--active-blocks {active_blocks} is more than the {n_blocks} residual blocks of {arch}"
        )
    config = TrainConfig(
        arch=arch,
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        out=out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,  # type: ignore[arg-type]
        milestones=milestones,
        warmup_epochs=warmup_epochs,
        shortcut=shortcut,
        stochastic_depth=stochastic_depth,
        stochastic_depth_draw=stochastic_depth_draw,  # type: ignore[arg-type]
        active_blocks=active_blocks,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        batch_augment=batch_augment,
        resume=resume,
        limit=limit,
        test_limit=test_limit,
        num_workers=workers,
    )
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    # Rank 0 writes the files, so it alone claims them (and holds their locks to the end).
    outputs = [out, history_path(out), sidecar_path(history_path(out))] if main_process else []
    claim = claim_outputs(
        outputs,
        inputs=input_paths({"data_dir": data_dir}),
        resume=resume,
        overwrite=overwrite,
    )
    with claim:
        if dataset.strip().lower() == "synthetic" and not quiet and main_process:
            click.echo("note: synthetic data: a smoke test, not a benchmark", err=True)
        with TrainDisplay() as display, warnings.catch_warnings():
            warnings.simplefilter("ignore", TrainingWarning)  # echoed below, as one line each
            result = run_training(config, progress=None if quiet else display)
    if not main_process:
        return
    plural = "" if result.epochs == 1 else "s"
    click.echo(
        f"wrote {result.checkpoint} ({arch} on {dataset}, {result.epochs} epoch{plural}): "
        f"test error {100 * result.final_test_error:.2f}%; "
        f"history in {history_path(result.checkpoint)}"
    )
    for note in result.warnings:  # a diverged or untrained run is said, even with --quiet
        click.echo(f"warning: {note}", err=True)
