"""``ensemble-lesion paths``: the path-length distribution, and all 2^n sub-networks.

Prints by default; ``--out`` also writes the tables (CSV, each with a JSON sidecar whose
``table`` key lets ``ensemble-lesion plot`` draw Fig. 6a and the sub-network figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .common import (
    FiniteFloat,
    Notes,
    bounded,
    data_options,
    file_option,
    model_options,
    overwrite_option,
    seed_option,
    verify_option,
)

if TYPE_CHECKING:
    from ..studies.subnetworks import PathStudy

#: Above this n, 2^n routes do not fit in memory as a list, whatever --max-exhaustive says.
HARD_MAX_EXHAUSTIVE = 24


def _count(value: int) -> str:
    """Exact with thousands separators below 10^21, else d.ddde+N (truncated, any size)."""
    if value < 10**21:
        return f"{value:,}"
    digits = str(value)
    return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def _echo_counts(study: PathStudy) -> None:
    """The distribution, the table written, and (before the slow part) what will be evaluated."""
    n, model, summary, share = study.n, study.describe["model"], study.summary, study.summary.share
    click.echo(
        f"{model}: {n} residual blocks, 2^{n} = {_count(2**n)} paths; "
        f"length ~ Binomial({n}, 1/2), mean {summary.mean:g}, sd {summary.std:.3g}"
    )
    click.echo(
        f"central {100 * share:g}% of paths (mean ± z·sd, as the paper counts): lengths "
        f"{summary.normal_lo}-{summary.normal_hi}, holding {_percent(summary.normal_fraction)}"
    )
    click.echo(
        f"shortest range holding {100 * share:g}%: lengths {summary.lo}-{summary.hi}, "
        f"holding {_percent(summary.fraction)}"
    )
    click.echo("")
    table = study.table
    width = max(5, *(len(_count(int(c))) for c in table["paths"]))
    click.echo(f"{'length':>6}  {'paths':>{width}}  {'share':>10}  {'cumulative':>10}")
    for row in table.itertuples(index=False):
        click.echo(
            f"{row.length:>6}  {_count(int(row.paths)):>{width}}  "
            f"{_percent(row.fraction):>10}  {_percent(row.cumulative):>10}"
        )
    if study.table_path is not None:
        click.echo(f"wrote {study.table_path}")
    plan = study.plan
    if plan is None:
        return
    click.echo("")
    which = (
        f"all {_count(2**n)} sub-networks"
        if plan.every
        else f"{plan.samples} sampled sub-networks (each block kept with probability 1/2, "
        f"duplicates merged; n = {n} is above --max-exhaustive {plan.max_exhaustive})"
    )
    click.echo(f"evaluating {which} on {plan.images} images of {plan.dataset}")


def _echo_subnetworks(study: PathStudy) -> None:
    """Error by number of blocks kept, the ensemble view, and the table written."""
    if study.subnetworks is None or study.ensemble is None:
        return
    click.echo(f"{'kept':>4}  {'subsets':>7}  {'mean error':>10}  {'min':>7}  {'max':>7}")
    for k, row in study.error_by_blocks_kept().iterrows():
        click.echo(
            f"{k:>4}  {int(row['count']):>7}  {100 * row['mean']:>9.2f}%  "
            f"{100 * row['min']:>6.2f}%  {100 * row['max']:>6.2f}%"
        )
    view = study.ensemble
    click.echo(
        f"ensemble view: the average of the {view.subnetworks} sub-networks' softmax outputs "
        f"has {100 * view.ensemble_error:.2f}% error; the full network "
        f"{100 * view.full_error:.2f}%; a sub-network on average "
        f"{100 * view.mean_subnetwork_error:.2f}%"
    )
    if study.subnetworks_path is None:
        click.echo(
            f"(give --out FILE.csv to keep the error of each of the {len(study.subnetworks)} "
            "subsets)"
        )
        return
    click.echo(f"wrote {study.subnetworks_path}")


@click.command()
@model_options
@data_options
@click.option(
    "--blocks",
    "num_blocks",
    type=click.IntRange(min=0, max=1000),
    default=None,
    help="Count the paths of a network with this many blocks (no model needed).",
)
@click.option(
    "--share",
    type=FiniteFloat(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Central share of paths to report a range of lengths for.",
)
@click.option(
    "--exhaustive",
    is_flag=True,
    help="Also evaluate the sub-networks (each subset of kept blocks) on the test data: all "
    "2^n of them up to --max-exhaustive blocks, a sample above.",
)
@click.option(
    "--max-exhaustive",
    type=click.IntRange(min=0, max=HARD_MAX_EXHAUSTIVE),
    default=None,
    help="Evaluate all 2^n subsets up to this n, sample above it. Default: 20 on a GPU, 12 "
    "on the CPU (minutes either way).",
)
@click.option(
    "--samples",
    type=bounded("samples"),
    default=1024,
    show_default=True,
    help="Sub-networks drawn (each block kept with probability 1/2, duplicates merged) when n "
    "is above --max-exhaustive.",
)
@seed_option(help="Seed of the sample.")
@verify_option
@file_option(
    "--out",
    "Also write the per-length table here (CSV with a JSON sidecar); with --exhaustive the "
    "error of each sub-network goes to OUT_STEM.subnetworks.csv. Without --out nothing is "
    "written.",
)
@overwrite_option("the tables")
def paths(
    num_blocks: int | None,
    share: float,
    exhaustive: bool,
    max_exhaustive: int | None,
    samples: int,
    seed: int,
    out: str | None,
    overwrite: bool,
    **options: Any,
) -> None:
    """Count the 2^n paths of a model by length (Binomial(n, 1/2)): mean and central range.

    With --exhaustive, evaluate its sub-networks through the engine's shared-prefix tree:
    the error of each subset of kept blocks, the error against the number of blocks kept, and
    the sub-networks as an ensemble (their averaged softmax) against the full network.

    \b
    Examples:
      ensemble-lesion paths --blocks 54            # the paper's ResNet-110: 19-35 hold 95%
      ensemble-lesion paths --model ckpt.pt --exhaustive --out results/paths.csv
    """
    from ..studies.subnetworks import study_paths

    if num_blocks is not None and exhaustive:
        raise click.UsageError("--exhaustive evaluates a model: give --model, not --blocks")
    if not exhaustive:
        unused = [
            f"--{key.replace('_', '-')}"
            for key in ("dataset", "data_dir", "limit", "download", "tokenizer", "verify")
            if options.get(key) not in (None, False)
        ]
        if unused:
            raise click.UsageError(
                f"{', '.join(unused)}: data options need --exhaustive; counting paths reads no data"
            )
    notes = Notes()
    study = study_paths(
        {**options, "on_note": notes.append},
        num_blocks=num_blocks,
        share=share,
        exhaustive=exhaustive,
        max_exhaustive=max_exhaustive,
        samples=samples,
        seed=seed,
        out=out,
        overwrite=overwrite,
        on_counted=_echo_counts,
    )
    _echo_subnetworks(study)
    notes.echo()
