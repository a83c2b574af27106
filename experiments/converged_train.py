"""Issue 20: the converged networks at 54 blocks, trained against a wall-clock deadline.

The depth series trained every network for 15 epochs on a CPU, and at 54 blocks they are
underfit. This trains one of the three networks of the paper's comparison to convergence on
the full Fashion-MNIST, in as many epochs as a deadline allows (at most the paper's 164):

- ``resnet110``: the post-activation ResNet-110 (He et al.; option A);
- ``fbpreresnet110``: the pre-activation ResNet-110 in fb.resnet.torch's ``preresnet.lua``
  layout, the networks Veit et al. lesioned;
- ``sd110``: stochastic depth at 110 (Huang et al.: post-activation, option A, survival
  falling linearly to 0.5, one draw per block per mini-batch);
- ``ep110k23``: effective-path training (Veit et al., sec. 4.3): the post-activation
  ResNet-110 trained on K = 23 of its 54 blocks per mini-batch, the paper's literal K.

Recipe: SGD, momentum 0.9, weight decay 1e-4, batch 256 at lr 0.2 (He et al.'s 128 at 0.1,
scaled linearly: Goyal et al. 2017), one warm-up epoch at lr / 10 (He et al.'s for ResNet-110),
then a cosine schedule to 0; bf16 autocast, channels_last, whole-batch augmentation (pad 2,
random crop, flip); seed 0. The epoch count is fixed after the warm-up epoch, from its
measured time and the deadline, since a cosine schedule must know its end: the first epoch
runs as a 1-epoch run, then ``--resume`` continues it with the chosen count (the checkpoint
records both). A run found part-way (``--resume`` from a committed state) keeps its count.
``--epochs N`` fixes the count instead (the deadline then only stops a run, resumably).

``--snapshots 5,15,30`` writes float16 inference checkpoints of those epochs on the way
(``depth_series_export.export``: test error before and after the rounding in the metadata),
and the end is exported the same way. A run that reaches the deadline stops after its epoch,
with its resume state written (``--grace`` seconds past the deadline, which the epoch count
aims at); the same command continues it anywhere, on a CPU too.

    python experiments/converged_train.py resnet110 --deadline-in 420 --snapshots 5,15,30
    python experiments/converged_train.py resnet110 --init-only    # epoch 0: resnet110_e0.pt
    bash experiments/converged_gpu.sh     # all three at once on one GPU, then the GPU check
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # depth_series_export, beside this file

from depth_series_export import export  # noqa: E402

from resnet_ensemble.data.datasets import dataset_info, load_dataset, make_loader  # noqa: E402
from resnet_ensemble.models import build_builtin  # noqa: E402
from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from resnet_ensemble.results import history_path  # noqa: E402
from resnet_ensemble.studies.training import (  # noqa: E402
    EpochEnd,
    EpochStart,
    TrainConfig,
    TrainEvent,
    TrainStep,
    train,
)

NETWORKS: dict[str, dict[str, object]] = {
    "resnet110": {"arch": "resnet110"},
    "fbpreresnet110": {"arch": "fbpreresnet110"},
    "sd110": {"arch": "resnet110", "stochastic_depth": 0.5},
    # Effective-path training (Veit et al., sec. 4.3) at the paper's literal K = 23 of 54.
    "ep110k23": {"arch": "resnet110", "active_blocks": 23},
}
PAPER_EPOCHS = 164  # He et al.'s CIFAR recipe, as Veit et al. trained


class DeadlineReached(Exception):
    """The wall clock ran out after an epoch: its resume state is on disk."""


def _recorded_epochs(ckpt: Path) -> int | None:
    """The epoch count a part-way run was started with, or None when there is no run yet."""
    if not ckpt.exists():
        return None
    recipe = (load_checkpoint(ckpt).get("metadata") or {}).get("recipe") or {}
    return int(recipe["epochs"]) if recipe.get("epochs") else None


class EpochPace:
    """An epoch's time at its steady pace: the steps after the first ``skip`` (cuDNN's
    autotuning and the first allocations make those slow), scaled to the whole epoch, plus the
    evaluation. The first GPU run timed the warm-up epoch whole, 16 s against 10-12 s for the
    later ones, and so chose 23 epochs where about 35 fitted."""

    def __init__(self, skip: int = 20) -> None:
        self.skip = skip
        self.start: float | None = None  # when step ``skip`` ended
        self.steps = 0
        self.last_step: float | None = None
        self.seconds: float | None = None

    def __call__(self, event: TrainEvent) -> None:
        now = time.monotonic()
        if isinstance(event, EpochStart):
            self.steps, self.start = event.steps, None
        elif isinstance(event, TrainStep):
            if event.step == self.skip:
                self.start = now
            self.last_step = now
        elif isinstance(event, EpochEnd) and self.start is not None and self.last_step:
            counted = self.steps - self.skip
            if counted > 0:
                training = (self.last_step - self.start) * self.steps / counted
                self.seconds = training + (now - self.last_step)  # + the evaluation


def _epochs_that_fit(ckpt: Path, deadline: float, most: int, pace: float | None) -> int:
    """Epochs in all: those done, plus as many more as the deadline leaves time for at
    ``pace`` seconds an epoch (else the median epoch so far, which the first one's autotuning
    makes cautious)."""
    history = pd.read_csv(history_path(ckpt))
    done = len(history)
    pace = pace or float(history["seconds"].median())
    # 10% and 20 s to spare: the float16 exports on the way and at the end take time too.
    more = math.floor(0.9 * (deadline - time.time() - 20) / pace)
    return max(done + 1, min(most, done + more))


CALIBRATION_IMAGES = 5120  # 20 batches of 256


def _calibrate_batchnorm(model: torch.nn.Module, images: int = CALIBRATION_IMAGES) -> None:
    """Set every BatchNorm's running statistics to the cumulative average over the first
    ``images`` training images (no augmentation), weights untouched: at initialisation the
    stored statistics (mean 0, variance 1) describe no data, and an analysis of the network as
    initialised needs the statistics its own activations have."""
    data = load_dataset("fashion-mnist", "train", augment=False, limit=images)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative moving average: every batch weighs the same
    model.train()
    with torch.no_grad():
        for x, _ in make_loader(data, batch_size=256, shuffle=False, num_workers=0):
            model(x)
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def export_initialisation(network: str, out: Path) -> None:
    """The network as ``train`` initialises it (seed 0), before any step, in float16: epoch 0
    of the training-dynamics series, with its BatchNorm statistics calibrated on training
    images (``_calibrate_batchnorm``)."""
    info = dataset_info("fashion-mnist")
    spec = dict(NETWORKS[network])
    arch = str(spec.pop("arch"))
    kwargs = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "shortcut": "A",
        "stochastic_depth": spec.get("stochastic_depth"),
        "active_blocks": None,
    }
    if kwargs["stochastic_depth"] is not None:
        kwargs["stochastic_depth_draw"] = "batch"
    # The trainer's order: seed every generator, then build (training.train, seed 0).
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model = build_builtin(arch, **kwargs)
    _calibrate_batchnorm(model)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.data = tensor.data.half()
    save_checkpoint(
        out,
        model,
        arch=arch,
        arch_kwargs=kwargs,
        dataset="fashion-mnist",
        metadata={
            "epochs": 0,
            "epochs_done": 0,
            "seed": 0,
            "weights_dtype": "float16",
            "note": (
                "initialisation (seed 0) of every run of this network, before any step; "
                f"BatchNorm statistics calibrated on the first {CALIBRATION_IMAGES:,} training "
                "images (the weights as initialised)"
            ),
        },
        epoch=0,
        normalization=(info.mean, info.std),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {network} at initialisation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=sorted(NETWORKS))
    parser.add_argument("--out", type=Path, default=Path("results/converged/train"))
    parser.add_argument("--exports", type=Path, default=Path("results/converged/checkpoints"))
    parser.add_argument("--deadline-in", type=float, default=0.0, help="seconds from now")
    parser.add_argument(
        "--grace", type=float, default=45.0, help="seconds past the deadline before a run stops"
    )
    parser.add_argument("--max-epochs", type=int, default=PAPER_EPOCHS)
    parser.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="a fixed epoch count (0: as many as the deadline allows, at most --max-epochs)",
    )
    parser.add_argument("--snapshots", default="", help="epochs to export on the way: 5,15,30")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, help="train and test images (a smoke test only)")
    parser.add_argument(
        "--init-only", action="store_true", help="write NETWORK_e0.pt (initialisation) and stop"
    )
    args = parser.parse_args()
    if args.init_only:
        args.exports.mkdir(parents=True, exist_ok=True)
        export_initialisation(args.network, args.exports / f"{args.network}_e0.pt")
        return
    deadline = time.time() + args.deadline_in
    snapshots = {int(e) for e in args.snapshots.split(",") if e.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    args.exports.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / f"{args.network}.pt"

    def config(epochs: int) -> TrainConfig:
        return TrainConfig(
            **NETWORKS[args.network],  # type: ignore[arg-type]
            dataset="fashion-mnist",
            out=ckpt,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule="cosine",
            warmup_epochs=1.0,
            seed=0,
            device=args.device,
            amp=True,
            channels_last=True,
            batch_augment=True,
            num_workers=0,
            resume=True,
            limit=args.limit,
            log=lambda line: print(f"[{args.network}] {line}", flush=True),
        )

    pace = EpochPace()

    def on_event(event: TrainEvent) -> None:
        pace(event)
        if not isinstance(event, EpochEnd):
            return
        epoch = int(event.row["epoch"])
        if epoch in snapshots:
            export(
                ckpt,
                args.exports / f"{args.network}_e{epoch}.pt",
                device=args.device,
                finished_only=False,
            )
        if epoch < event.epochs and time.time() > deadline + args.grace:
            raise DeadlineReached(f"stopped by the deadline after epoch {epoch} of {event.epochs}")

    epochs = _recorded_epochs(ckpt) or (args.epochs if args.epochs > 0 else None)
    try:
        # Without --epochs, the warm-up epoch alone first: its pace sets the epoch count.
        if epochs in (None, 1) and args.epochs <= 0:
            if epochs is None:
                train(config(1), progress=on_event)
            epochs = _epochs_that_fit(ckpt, deadline, args.max_epochs, pace.seconds)
            at = f"{pace.seconds:.1f} s an epoch" if pace.seconds else "the epochs so far"
            print(f"[{args.network}] {epochs} epochs fit the deadline at {at}", flush=True)
        result = train(config(epochs), progress=on_event)
    except DeadlineReached as stop:
        print(f"[{args.network}] {stop}; continue with the same command (it resumes)", flush=True)
        return
    final = args.exports / f"{args.network}.pt"
    export(ckpt, final, device=args.device)
    print(
        f"[{args.network}] done: {result.epochs} epochs, test error "
        f"{100 * result.final_test_error:.2f}%, {result.wall_seconds:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
