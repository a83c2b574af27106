"""``ensemble-lesion reproduce``: every paper figure from one command."""

from __future__ import annotations

import click

from ..archs import check_depth
from .common import positive_int


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
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--download", is_flag=True, help="Download the dataset (needs internet).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="results/reproduce",
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
@click.option("--depth", type=click.IntRange(min=8), default=None, help="Override the depth.")
@click.option("--epochs", type=positive_int, default=None, help="Override the epochs.")
@click.option("--train-limit", type=positive_int, default=None, help="Train on N images.")
@click.option("--test-images", type=positive_int, default=None, help="Evaluate on N images.")
@click.option("--samples", type=positive_int, default=None, help="Draws per k in sweeps.")
@click.option("--max-k", type=positive_int, default=None, help="Delete up to k blocks (Fig. 5a).")
@click.option("--max-swaps", type=positive_int, default=None, help="Up to k swaps (Fig. 5b).")
@click.option(
    "--gradient-images", type=positive_int, default=None, help="Images per gradient batch."
)
@click.option(
    "--gradient-batches",
    type=positive_int,
    default=None,
    help="Random training batches the gradients are measured on.",
)
@click.option(
    "--samples-per-length",
    type=positive_int,
    default=None,
    help="The paper's gradient estimator: single paths per length in each batch (the paper: "
    "1,000 in all).",
)
@click.option(
    "--sign-draws",
    type=click.IntRange(min=0),
    default=None,
    help="Draws of the all-lengths sign estimator of the gradient (0 skips it).",
)
@click.option(
    "--subnetwork-samples",
    type=click.IntRange(min=0),
    default=None,
    help="Sub-networks sampled when n is above --max-exhaustive (0: none).",
)
@click.option(
    "--subnetwork-images",
    type=positive_int,
    default=None,
    help="Images for the evaluation of all sub-networks.",
)
@click.option(
    "--max-exhaustive",
    type=click.IntRange(min=0),
    default=None,
    help="Evaluate all 2^n sub-networks up to this n; sample beyond it.",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
    depth: int | None,
    epochs: int | None,
    train_limit: int | None,
    test_images: int | None,
    samples: int | None,
    max_k: int | None,
    max_swaps: int | None,
    gradient_images: int | None,
    gradient_batches: int | None,
    samples_per_length: int | None,
    sign_draws: int | None,
    subnetwork_samples: int | None,
    subnetwork_images: int | None,
    max_exhaustive: int | None,
    device: str,
    seed: int,
) -> None:
    """Train (or reuse) the networks, run every sweep and the gradient analysis, draw every
    figure and write summary.md. Finished stages are skipped on a re-run."""
    if model_spec and any((resnet_ckpt, plain_ckpt, sd_ckpt, effective_ckpt)):
        raise click.UsageError("--model analyses one given model; drop the checkpoint options")
    from ..reproduce import Reproduction, scale_for

    if depth is not None and check_depth(depth):
        raise click.BadParameter(str(check_depth(depth)), param_hint="--depth")
    scale = scale_for(
        quick,
        depth=depth,
        epochs=epochs,
        train_limit=train_limit,
        test_images=test_images,
        samples=samples,
        max_k=max_k,
        max_swaps=max_swaps,
        gradient_images=gradient_images,
        gradient_batches=gradient_batches,
        samples_per_length=samples_per_length,
        sign_draws=sign_draws,
        subnetwork_samples=subnetwork_samples,
        subnetwork_images=subnetwork_images,
        max_exhaustive=max_exhaustive,
    )
    reuse = {
        "resnet": resnet_ckpt,
        "plain": plain_ckpt,
        "stochastic_depth": sd_ckpt,
        "effective_paths": effective_ckpt,
    }
    given = {variant: spec for variant, spec in reuse.items() if spec}  # checked by Reproduction
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
    )
    summary = rep.run()
    click.echo(summary.read_text())
    click.echo(f"wrote {summary}")
