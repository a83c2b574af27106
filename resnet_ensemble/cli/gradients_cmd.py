"""``ensemble-lesion gradients``: how much gradient flows through paths of each length.

Prints by default; ``--out`` writes the per-length table (CSV with a JSON sidecar, the
"gradients" kind that ``ensemble-lesion plot`` draws as Fig. 6b and 6c) and ``--report`` a
Markdown report with its figures (and, without ``--out``, its table beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from .common import (
    Notes,
    bounded,
    choice_option,
    data_options,
    file_option,
    model_options,
    overwrite_option,
    seed_option,
    verify_option,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..studies.gradient_analysis import GradientStudy

F = TypeVar("F", bound=Callable[..., Any])

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


def _check_draws(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value == 1 and param.name == "sign_draws":
        raise click.BadParameter("0 skips the sign estimator; otherwise give at least 2 draws")
    return value


def _draws_option(name: str, default: int, help: str) -> Callable[[F], F]:  # noqa: A002
    """An estimator's number of draws: 0 skips the estimator."""
    return click.option(
        name,
        type=bounded(name.removeprefix("--").replace("-", "_")),
        default=default,
        show_default=True,
        callback=_check_draws,
        help=help,
    )


def _output_paths(out: str | None, report: str | None) -> tuple[Path | None, Path | None]:
    """The table and report paths (``gradient_outputs``); a clash is a usage error."""
    from ..studies.gradient_analysis import gradient_outputs

    try:
        return gradient_outputs(out, report)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--report") from None


def _echo_table(table: pd.DataFrame) -> None:
    shown = table[[c for c in _PRINTED if table[c].notna().any()]].rename(columns=_PRINTED)
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


@click.command()
@model_options
@data_options
@click.option(
    "--images",
    type=bounded("images"),
    default=128,
    show_default=True,
    help="Images per batch (the paper's mini-batch: 128). Recorded: absolute values of the "
    "batch norm depend on it.",
)
@click.option(
    "--batches",
    type=bounded("batches"),
    default=4,
    show_default=True,
    help="Random batches to measure on, drawn from --split by --seed; the error bands come "
    "from the spread across them.",
)
@choice_option(
    "--split",
    ["auto", "train", "test"],
    "Where the batches come from; auto: the training split, as the paper (the embedded "
    "data have only a test split).",
)
@_draws_option(
    "--samples-per-length",
    25,
    "The paper's estimator: single paths sampled per length in each batch (the paper: "
    "1,000 in all; 0 skips it).",
)
@choice_option(
    "--at",
    ["auto", "image", "blocks"],
    "Where the gradient is measured: at the image, or at the input of the first residual "
    "block (the input of the residual part). auto: the image, or a language model's input "
    "embeddings.",
)
@choice_option(
    "--norm",
    ["batch", "per_image"],
    "batch: the norm of the mean-loss gradient over the whole batch (depends on the batch "
    "size); per_image: the mean norm of each image's own loss gradient.",
)
@_draws_option(
    "--sign-draws",
    8,
    "Draws of the sign estimator of the root-mean-square single-path norm (0 skips it; "
    "else at least 2).",
)
@seed_option("Seeds the batches drawn and the single paths sampled.")
@verify_option
@file_option(
    "--out",
    "Also write the per-length table here (CSV with a JSON sidecar). Without --out or "
    "--report nothing is written.",
)
@file_option(
    "--report",
    "Also write a Markdown report here, e.g. rep.md: its figures go to rep_figures/ "
    "beside it and, without --out, the table it is drawn from to rep.csv.",
)
@overwrite_option("the table, the report and its figures")
def gradients(
    images: int,
    batches: int,
    split: Literal["auto", "train", "test"],
    samples_per_length: int,
    at: Literal["auto", "image", "blocks"],
    norm: Literal["batch", "per_image"],
    sign_draws: int,
    seed: int,
    out: str | None,
    report: str | None,
    overwrite: bool,
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
    from ..studies.gradient_analysis import study_gradients

    out_path, report_path = _output_paths(out, report)
    notes = Notes()
    study = study_gradients(
        {**options, "on_note": notes.append},
        images=images,
        batches=batches,
        split=split,
        samples_per_length=samples_per_length,
        sign_draws=sign_draws,
        seed=seed,
        at=at,
        norm=norm,
        out=out_path,
        report=report_path,
        overwrite=overwrite,
        on_start=lambda line: click.echo(line, err=True),  # a quiet minute is not a hang
    )
    _echo_study(study)
    notes.echo()


def _echo_study(study: GradientStudy) -> None:
    """The header, the per-length table, the effective paths, and what was written."""
    from .. import paper
    from ..studies.gradient_analysis import AT_LABELS, NORM_LABELS, RANGE_LABELS

    analysis, describe, meta = study.analysis, study.describe, study.analysis.meta
    batches = meta["batches"]
    click.echo(
        f"{describe['model']}: {analysis.n} residual blocks, 2^{analysis.n} paths; "
        f"{batches} random batch{'es' if batches > 1 else ''} of {meta['batch_size']} "
        f"{describe['split']} images of {describe['dataset']} (seed {meta['seed']}); gradient "
        f"{AT_LABELS[meta['measured_at']]}, {NORM_LABELS[meta['norm']]}"
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
    decay = meta.get("single_path_decay")
    if decay:
        click.echo(
            f"single-path norm ({decay['measure']}): x {decay['factor_per_block']:.3g} per block "
            f"of length (log-linear fit, R^2 = {decay['r2']:.3f}); the paper: falls exponentially"
        )
    if study.table_path is not None:
        click.echo(f"wrote {study.table_path}")
    if study.report_path is not None:
        click.echo(f"wrote {study.report_path} (figures in {study.figures_dir})")
