"""``ensemble-lesion depth``: a depth series of analysed networks, as curves over depth."""

from __future__ import annotations

import shlex
import sys

import click

from .common import overwrite_option

__all__ = ["depth"]


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the tables, figures and summary.md go (default: ROOT).",
)
@overwrite_option("depth.csv, depth_k.csv, summary.md and the figures")
def depth(root: str, out: str | None, overwrite: bool) -> None:
    """Put the networks analysed under ROOT side by side, against their number of blocks.

    ROOT holds one folder per network, each written by `ensemble-lesion reproduce --model
    CKPT --out ROOT/NAME`. Writes depth.csv (one row per network: full error, one block
    deleted: mean, median, worst, and mean / full; the effective range; the single-path
    decay), depth_k.csv (error against k deleted blocks), their figures and summary.md, which
    sets the deepest ResNet beside the paper's numbers at 54 blocks.

    \b
    Example:
      ensemble-lesion depth results/depth
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from ..studies.depth_series import write_series

    command = shlex.join(["ensemble-lesion", *sys.argv[1:]])
    for path in write_series(root, out, command=command, overwrite=overwrite):
        click.echo(str(path))
