"""``ensemble-lesion gradients``: how much gradient flows through paths of each length."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..experiment import open_experiment
from ..gradient_analysis import analyze_gradients, write_gradient_report
from ..results import atomic_write_text, check_writable, run_metadata, sidecar_path
from .common import data_options, model_options, positive_int


@click.command()
@model_options
@data_options
@click.option(
    "--images",
    type=positive_int,
    default=32,
    show_default=True,
    help="Images in the batch the gradients are taken on (the paper: one batch).",
)
@click.option(
    "--samples-per-length",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="The paper's estimator: single paths sampled per length (paper: 1,000; 0 skips it).",
)
@click.option(
    "--sign-draws",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Draws of the all-lengths sign estimator (0 skips it).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="results/gradients.csv",
    show_default=True,
    help="Per-length table (CSV, with a JSON sidecar).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a Markdown report here, with figures beside it.",
)
def gradients(
    images: int,
    samples_per_length: int,
    sign_draws: int,
    seed: int,
    out: str,
    report: str | None,
    **options: object,
) -> None:
    """Decompose the input gradient by path length, exactly, and with the paper's sampling."""
    out_path = check_writable(out)
    report_path = check_writable(report) if report else None
    options["limit"] = min(images, options["limit"] or images)  # type: ignore[type-var]
    exp = open_experiment(**options)  # type: ignore[arg-type]
    x, y = next(iter(exp.loader()))
    x, y = x.to(exp.device), y.to(exp.device)
    analysis = analyze_gradients(
        exp.model,
        x,
        y,
        model_name=exp.describe()["model"],
        samples_per_length=samples_per_length,
        sign_draws=sign_draws,
        seed=seed,
    )
    atomic_write_text(out_path, analysis.table.to_csv(index=False))
    meta = {**run_metadata(), **exp.describe(), **analysis.meta}
    atomic_write_text(sidecar_path(out_path), json.dumps(meta, indent=2, default=str))
    eff = analysis.effective
    click.echo(f"{exp.describe()['model']}: {analysis.n} blocks, {analysis.images} images")
    click.echo(
        f"effective paths: lengths {int(eff['lo'])}-{int(eff['hi'])} carry "
        f"{100 * eff['gradient_share']:.1f}% of the gradient and hold "
        f"{100 * eff['path_share']:.3g}% of all paths"
    )
    click.echo(f"wrote {out_path}")
    if report_path is not None:
        figures = []
        try:
            from ..plots import plot_all

            fig_dir = report_path.parent / f"{report_path.stem}_figures"
            written = plot_all([out_path], fig_dir)
            figures = [
                str(Path(p).relative_to(report_path.parent))
                for p in written
                if str(p).endswith(".png")
            ]
        except ImportError:  # plotting is optional for the report
            pass
        write_gradient_report(analysis, report_path, describe=exp.describe(), figures=figures)
        click.echo(f"wrote {report_path}")
