"""``ensemble-lesion plot``: the paper's figures from results tables, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail_cleanly, overwrite_option


def _choice(*decls: str, choices: tuple[str, ...], **more: Any) -> Any:
    """An option taking one of ``choices`` (by default the first), its default shown."""
    more.setdefault("default", choices[0])
    return click.option(*decls, type=click.Choice(choices), show_default=True, **more)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Folder for the figures (created if missing).",
)
@_choice(
    "--style",
    choices=("paper", "talk"),
    help="Font sizes: seaborn's paper context, or the larger talk context for slides.",
)
@_choice(
    "--width",
    choices=("single", "double"),
    help="Figure width: one journal column (3.5 in) or the full page (7.1 in).",
)
@_choice(
    "--format",
    "formats",
    choices=("png", "pdf", "svg"),
    multiple=True,
    default=("png", "pdf"),
    help="File format; repeat for several. PNG is drawn at 150 dpi.",
)
@click.option(
    "--fig-numbers/--no-fig-numbers",
    default=True,
    show_default=True,
    help="Start the title of a figure that reproduces one of the paper's with its number "
    "(Fig. 3 — deleting single blocks); --no-fig-numbers leaves it out, for your own paper.",
)
@overwrite_option("figures")
def plot(
    results: tuple[str, ...],
    out_dir: str,
    style: str,
    width: str,
    formats: tuple[str, ...],
    fig_numbers: bool,
    overwrite: bool,
) -> None:
    """Draw every paper figure that the RESULTS tables (CSV files, or folders holding them)
    allow, and list the files.

    Sweep tables give Fig. 3, 5a, 5b and 8, drawn in the sweep's metric (a metric other than
    error is added to the figure's name: fig3_single_block_top5); a paths table gives Fig. 6a,
    a gradients table Fig. 6b and 6c; training tables and the histories `train` writes,
    subnetworks tables and the depth series give their own figures (histories only where no
    training table is given). Each table's kind comes from its JSON sidecar, or from its
    columns; a CSV of no known kind is skipped with a note.

    \b
    Example:
      ensemble-lesion plot results/quick/ --out figures/
    """
    with fail_cleanly():
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        from ..viz.plots import plot_all

        written = plot_all(
            [Path(p) for p in results],
            out_dir,
            style=style,  # type: ignore[arg-type]
            width=width,  # type: ignore[arg-type]
            formats=formats,  # type: ignore[arg-type]
            fig_numbers=fig_numbers,
            on_skip=lambda note: click.echo(f"note: {note}", err=True),
            overwrite=overwrite,
        )
        for path in written:
            click.echo(str(path))
