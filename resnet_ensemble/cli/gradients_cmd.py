"""``ensemble-lesion gradients``: how much gradient flows through paths of each length.

Prints by default; ``--out`` writes the per-length table (CSV with a JSON sidecar, the
"gradients" kind that ``ensemble-lesion plot`` draws as Fig. 6b and 6c) and ``--report`` a
Markdown report with its figures (and, without ``--out``, its table beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import data_options, model_options, positive_int

if TYPE_CHECKING:
    import pandas as pd

#: The columns printed, and their headers.
_PRINTED = {
    "length": "length",
    "num_paths": "paths",
    "exact_norm": "exact norm",
    "exact_share": "exact share",
    "sampled_mean": "sampled mean",
    "sampled_sem": "± sem",
    "sampled_share": "sampled share",
    "rms_single_path": "rms path",
}


def _check_sign_draws(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value == 1:
        raise click.BadParameter("0 skips the sign estimator; otherwise give at least 2 draws")
    return value


def _output_paths(out: str | None, report: str | None) -> tuple[Path | None, Path | None]:
    """The table and report paths, checked writable before any work. With --report and no
    --out the table goes beside the report (REPORT_STEM.csv), since its figures are drawn
    from it."""
    from ..results import check_writable, sidecar_path

    report_path = Path(report) if report else None
    if report_path is not None and report_path.suffix.lower() in (".csv", ".json"):
        raise click.BadParameter(
            "the report is Markdown: give a name such as report.md", param_hint="--report"
        )
    out_path = Path(out) if out else None
    if out_path is None and report_path is not None:
        out_path = report_path.with_suffix(".csv")
    if report_path is not None and out_path is not None:
        taken = {out_path.resolve(), sidecar_path(out_path).resolve()}
        if report_path.resolve() in taken:
            raise click.BadParameter(
                f"{report_path} would overwrite the table or its sidecar", param_hint="--report"
            )
    if out_path is not None:
        check_writable(out_path)
    if report_path is not None:
        check_writable(report_path)
    return out_path, report_path


def _echo_table(table: pd.DataFrame) -> None:
    shown = table[[c for c in _PRINTED if table[c].notna().any()]].rename(columns=_PRINTED)
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


@click.command()
@model_options
@data_options
@click.option(
    "--images",
    type=positive_int,
    default=128,
    show_default=True,
    help="Images per batch (the paper's mini-batch: 128). Recorded: absolute values of the "
    "batch norm depend on it.",
)
@click.option(
    "--batches",
    type=positive_int,
    default=4,
    show_default=True,
    help="Random batches to measure on, drawn from --split by --seed; the error bands come "
    "from the spread across them.",
)
@click.option(
    "--split",
    type=click.Choice(["auto", "train", "test"]),
    default="auto",
    show_default=True,
    help="Where the batches come from; auto: the training split, as the paper (the embedded "
    "data have only a test split).",
)
@click.option(
    "--samples-per-length",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="The paper's estimator: single paths sampled per length in each batch (the paper: "
    "1,000 in all; 0 skips it).",
)
@click.option(
    "--at",
    type=click.Choice(["auto", "image", "blocks"]),
    default="auto",
    show_default=True,
    help="Where the gradient is measured: at the image, or at the input of the first residual "
    "block (the input of the residual part). auto: the image, or a language model's input "
    "embeddings.",
)
@click.option(
    "--norm",
    type=click.Choice(["batch", "per_image"]),
    default="batch",
    show_default=True,
    help="batch: the norm of the mean-loss gradient over the whole batch (depends on the batch "
    "size); per_image: the mean norm of each image's own loss gradient.",
)
@click.option(
    "--sign-draws",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    callback=_check_sign_draws,
    help="Draws of the sign estimator of the root-mean-square single-path norm (0 skips it; "
    "else at least 2).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the per-length table here (CSV with a JSON sidecar). Without --out or "
    "--report nothing is written.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a Markdown report here, e.g. rep.md: its figures go to rep_figures/ "
    "beside it and, without --out, the table it is drawn from to rep.csv.",
)
def gradients(
    images: int,
    batches: int,
    split: str,
    samples_per_length: int,
    at: str,
    norm: str,
    sign_draws: int,
    seed: int,
    out: str | None,
    report: str | None,
    **options: Any,
) -> None:
    """Decompose the input gradient by path length, exactly, and with the paper's sampling.

    Prints, per path length: the norm of the exact gradient all paths of that length carry
    together, the paper's estimate (mean norm of single random paths, and its share once
    multiplied by the number of paths), and the effective paths: the shortest ranges of
    lengths holding 90% and 95% of the gradient, and the share of all paths in them.

    \b
    Example:
      ensemble-lesion gradients --model ckpt.pt --report results/gradients.md
    """
    from .. import paper
    from ..experiment import open_experiment
    from ..gradient_analysis import (
        AT_LABELS,
        NORM_LABELS,
        RANGE_LABELS,
        analyze_gradients,
        write_gradient_report,
    )
    from ..results import write_table

    out_path, report_path = _output_paths(out, report)
    exp = open_experiment(**options)
    split = exp.gradient_split(split)
    batch_list = exp.random_batches(images, batches, split=split, seed=seed)
    describe = {**exp.describe(), "split": split}
    n = len(exp.blocks)
    click.echo(  # the slow part: say so, so that a quiet minute is not a hang
        f"exact decomposition and {samples_per_length} sampled paths for each of the {n + 1} "
        f"lengths, on each of {batches} random batches of {images} {split} images...",
        err=True,
    )
    analysis = analyze_gradients(
        exp.model,
        batch_list,
        model_name=describe["model"],
        samples_per_length=samples_per_length,
        sign_draws=sign_draws,
        seed=seed,
        at=None if at == "auto" else at,  # type: ignore[arg-type]
        norm=norm,  # type: ignore[arg-type]
    )
    at = analysis.meta["measured_at"]
    click.echo(
        f"{describe['model']}: {analysis.n} residual blocks, 2^{analysis.n} paths; "
        f"{batches} random batch{'es' if batches > 1 else ''} of {images} {split} images of "
        f"{describe['dataset']} (seed {seed}); gradient {AT_LABELS[at]}, {NORM_LABELS[norm]}"
    )
    click.echo("")
    _echo_table(analysis.table)
    click.echo("")
    click.echo("effective paths:")
    for key, label in RANGE_LABELS.items():
        r = analysis.ranges.get(key)
        if r is not None:
            click.echo(
                f"  {label}: lengths {int(r['lo'])}-{int(r['hi'])} "
                f"({100 * r['gradient_share']:.1f}% of the gradient, "
                f"{100 * r['path_share']:.3g}% of all paths)"
            )
    click.echo(
        f"  (the paper, ResNet-110 with {paper.BLOCKS} blocks: lengths {paper.EFFECTIVE_LO}-"
        f"{paper.EFFECTIVE_HI}, {100 * paper.EFFECTIVE_PATH_SHARE:.2f}% of all paths)"
    )
    decay = analysis.meta.get("single_path_decay")
    if decay:
        click.echo(
            f"single-path norm ({decay['measure']}): x {decay['factor_per_block']:.3g} per block "
            f"of length (log-linear fit, R^2 = {decay['r2']:.3f}); the paper: falls exponentially"
        )
    if out_path is None:
        return
    write_table(out_path, analysis.table, "gradients", {**describe, **analysis.meta})
    click.echo(f"wrote {out_path}")
    if report_path is None:
        return
    from ..plots import plot_all  # here, not at the top: seaborn slows every command's start

    fig_dir = report_path.parent / f"{report_path.stem}_figures"
    written = [Path(p) for p in plot_all([out_path], fig_dir)]
    figures = [p.relative_to(report_path.parent).as_posix() for p in written if p.suffix == ".png"]
    write_gradient_report(analysis, report_path, describe=describe, figures=figures)
    click.echo(f"wrote {report_path} (figures in {fig_dir})")
