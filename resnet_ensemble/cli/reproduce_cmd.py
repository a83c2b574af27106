"""``ensemble-lesion reproduce``: every paper figure from one command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..archs import MAX_DEPTH, check_depth
from ..bounds import BOUNDS
from .common import bounded, device_option, seed_option

F = TypeVar("F", bound=Callable[..., Any])

#: What a run may resize: ``reproduce.Scale``'s fields, each left at the scale's own value
#: (``--quick`` or the paper's) unless given.
_SCALE_OPTIONS: dict[str, tuple[click.ParamType, str]] = {
    "depth": (click.IntRange(8, MAX_DEPTH), "Override the depth."),
    "epochs": (bounded("epochs"), "Override the epochs."),
    "train_limit": (bounded("limit"), "Train on N images."),
    "batch_size": (bounded("batch_size"), "Override the training batch size."),
    "test_images": (bounded("limit"), "Evaluate on N images."),
    "samples": (bounded("samples"), "Draws per k in sweeps."),
    "max_k": (bounded("max_k"), "Delete up to k blocks (Fig. 5a)."),
    "max_swaps": (bounded("max_swaps"), "Up to k swaps (Fig. 5b)."),
    "gradient_images": (bounded("images"), "Images per gradient batch."),
    "gradient_batches": (
        bounded("batches"),
        "Random training batches the gradients are measured on.",
    ),
    "samples_per_length": (
        click.IntRange(1, BOUNDS["samples_per_length"].hi),
        "The paper's gradient estimator: single paths per length in each batch (the paper: "
        "1,000 in all).",
    ),
    "sign_draws": (
        bounded("sign_draws"),
        "Draws of the all-lengths sign estimator of the gradient (0 skips it).",
    ),
    "subnetwork_samples": (
        click.IntRange(0, BOUNDS["samples"].hi),
        "Sub-networks sampled when n is above --max-exhaustive (0: none).",
    ),
    "subnetwork_images": (bounded("limit"), "Images for the evaluation of all sub-networks."),
    "max_exhaustive": (
        click.IntRange(0, 24),
        "Evaluate all 2^n sub-networks up to this n; sample beyond it.",
    ),
}


def _scale_options(func: F) -> F:
    """One --NAME option per entry of ``_SCALE_OPTIONS``, in its order, default None."""
    for name, (kind, text) in reversed(_SCALE_OPTIONS.items()):
        option = click.option(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
        func = option(func)
    return func


@click.command()
@click.option(
    "--quick",
    is_flag=True,
    help="A small network, few epochs, images and samples: under 15 minutes on a "
    "2-core CPU. Without it: the paper's scale (ResNet-110, 164 epochs), for a GPU.",
)
@click.option(
    "--dataset",
    default="fashion-mnist",
    show_default=True,
    help="cifar10, cifar100, fashion-mnist, imagenet or synthetic (smoke test).",
)
@click.option("--data-dir", type=click.Path(), default=None, help="Where the dataset lives.")
@click.option("--download", is_flag=True, help="Download the dataset (needs internet).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/reproduce",
    show_default=True,
    help="Folder for checkpoints, tables, figures and summary.md.",
)
@click.option(
    "--model",
    "model_spec",
    default=None,
    help="Skip training: analyse this model (e.g. torchvision:resnet152 on ImageNet).",
)
@click.option(
    "--weights-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="State dict for --model torchvision:NAME.",
)
@click.option("--resnet", "resnet_ckpt", default=None, help="Reuse this ResNet checkpoint.")
@click.option("--plain", "plain_ckpt", default=None, help="Reuse this plain-network checkpoint.")
@click.option(
    "--stochastic-depth", "sd_ckpt", default=None, help="Reuse this stochastic-depth checkpoint."
)
@click.option(
    "--effective-paths",
    "effective_ckpt",
    default=None,
    help="Reuse this effective-path-trained checkpoint.",
)
@click.option(
    "--only",
    type=click.Choice(["train", "sweeps", "paths", "gradients", "figures"]),
    multiple=True,
    help="Run only these stages (repeatable; default: all). A stage that needs an output not "
    "yet made is refused, naming the file.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Recompute the stages whose results in --out were made with other settings (without "
    "it such a run is refused, naming them).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what each stage would do and why (run, resume, skip, refuse); run nothing.",
)
@_scale_options
@device_option
@seed_option("Seeds every stage: training, the sweeps' draws, the gradient batches.")
def reproduce(
    quick: bool,
    dataset: str,
    data_dir: str | None,
    download: bool,
    out: str,
    model_spec: str | None,
    weights_file: str | None,
    resnet_ckpt: str | None,
    plain_ckpt: str | None,
    sd_ckpt: str | None,
    effective_ckpt: str | None,
    device: str,
    seed: int,
    only: tuple[str, ...],
    overwrite: bool,
    dry_run: bool,
    **sizes: int | None,
) -> None:
    """Train (or reuse) the networks, run every sweep and the gradient analysis, draw every
    figure and write summary.md. A stage is skipped on a re-run only when stages.json proves it
    done: the same settings and inputs, and every file it wrote still there; a second run into
    the same folder while one is running is refused."""
    if model_spec and any((resnet_ckpt, plain_ckpt, sd_ckpt, effective_ckpt)):
        raise click.UsageError("--model analyses one given model; drop the checkpoint options")
    from ..outputs import output_lock
    from ..results import check_writable
    from ..studies.reproduce import Reproduction, scale_for

    depth = sizes["depth"]
    if depth is not None and check_depth(depth):
        raise click.BadParameter(str(check_depth(depth)), param_hint="--depth")
    scale = scale_for(quick, **sizes)
    reuse = {
        "resnet": resnet_ckpt,
        "plain": plain_ckpt,
        "stochastic_depth": sd_ckpt,
        "effective_paths": effective_ckpt,
    }
    given = {variant: spec for variant, spec in reuse.items() if spec}  # checked by Reproduction
    manifest = check_writable(Path(out) / "stages.json")
    with output_lock(manifest):  # the whole folder, for the whole run
        rep = Reproduction(
            out,
            dataset=dataset,
            data_dir=data_dir,
            download=download,
            scale=scale,
            model=model_spec,
            weights_file=weights_file,
            checkpoints=given,
            device=device,
            seed=seed,
            log=lambda m: click.echo(m, err=True),
            only=only or None,
            overwrite=overwrite,
        )
        if dry_run:
            steps = rep.plan()
            for name, decision in steps:
                pad = " " * (7 - len(decision.action))
                click.echo(f"[{decision.action}]{pad}{name}: {decision.reason}")
            refusal = rep.refusal(steps)
            if refusal:
                raise ValueError(refusal)
            return
        summary = rep.run()
    click.echo(summary.read_text())
    click.echo(f"wrote {summary}")
