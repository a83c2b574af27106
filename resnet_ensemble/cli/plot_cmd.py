"""``ensemble-lesion plot``: the paper's figures from results tables, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import click

from .common import fail_cleanly


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Folder for the figures (created if missing).",
)
@click.option(
    "--style",
    type=click.Choice(["paper", "talk"]),
    default="paper",
    show_default=True,
    help="Font sizes: seaborn's paper context, or the larger talk context for slides.",
)
@click.option(
    "--width",
    type=click.Choice(["single", "double"]),
    default="single",
    show_default=True,
    help="Figure width: one journal column (3.5 in) or the full page (7.1 in).",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["png", "pdf", "svg"]),
    multiple=True,
    default=("png", "pdf"),
    show_default=True,
    help="File format; repeat for several. PNG is drawn at 150 dpi.",
)
def plot(
    results: tuple[str, ...], out_dir: str, style: str, width: str, formats: tuple[str, ...]
) -> None:
    """Draw every paper figure that the RESULTS tables (CSV files, or folders holding them)
    allow, and list the files.

    Sweep tables give Fig. 3, 5a, 5b and 8, a paths table Fig. 6a, a gradients table Fig. 6b
    and 6c; training tables and the histories `train` writes, subnetworks tables and the depth
    series give their own figures (histories only where no training table is given). Each
    table's kind comes from its JSON sidecar, or from its
    columns; a CSV of no known kind is skipped with a note.

    \b
    Example:
      ensemble-lesion plot results/quick/ --out figures/
    """
    with fail_cleanly():
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        from ..plots import plot_all

        written = plot_all(
            [Path(p) for p in results],
            out_dir,
            style=style,  # type: ignore[arg-type]
            width=width,  # type: ignore[arg-type]
            formats=formats,
            on_skip=lambda note: click.echo(f"note: {note}", err=True),
        )
        for path in written:
            click.echo(str(path))
