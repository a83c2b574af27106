"""``ensemble-lesion dynamics``: the epochs of one training run, as curves over training."""

from __future__ import annotations

import shlex
import sys

import click

from .common import overwrite_option

__all__ = ["dynamics"]


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the table, figure and summary.md go (default: ROOT).",
)
@overwrite_option("dynamics.csv, summary.md and the figure")
def dynamics(root: str, out: str | None, overwrite: bool) -> None:
    """Put the kept epochs of one training run side by side, against the epoch.

    ROOT holds one folder per epoch, e0, e5, ..., each with the tables of `sweep single`,
    `sweep reorder` and `gradients` for that epoch's checkpoint under tables/ (as
    experiments/training_dynamics.sh writes them). Writes dynamics.csv (one row per epoch:
    one block deleted, mean and median ÷ full; the median error after 1, 3 and 10 swaps; the
    effective range, sampled and exact; the single-path decay), its figure
    (figures/training_dynamics) and summary.md.

    \b
    Example:
      ensemble-lesion dynamics results/converged/dynamics
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from ..studies.dynamics import write_dynamics

    command = shlex.join(["ensemble-lesion", *sys.argv[1:]])
    for path in write_dynamics(root, out, command=command, overwrite=overwrite):
        click.echo(str(path))
