"""``ensemble-lesion paths``: the path-length distribution, and all 2^n sub-networks.

Prints by default; ``--out`` also writes the tables (CSV, each with a JSON sidecar whose
``table`` key lets ``ensemble-lesion plot`` draw Fig. 6a and the sub-network figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import data_options, model_options, positive_int

if TYPE_CHECKING:
    import pandas as pd

#: ``--max-exhaustive`` when not given: all 2^n subsets up to this n, by device.
MAX_EXHAUSTIVE = {"cuda": 20, "cpu": 12}
#: Above this n, 2^n routes do not fit in memory as a list, whatever --max-exhaustive says.
HARD_MAX_EXHAUSTIVE = 24


def _subnetwork_path(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}.subnetworks.csv")


def _count(value: int) -> str:
    """Exact with thousands separators below 10^21, else d.ddde+N (truncated, any size)."""
    if value < 10**21:
        return f"{value:,}"
    digits = str(value)
    return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def _describe_model(options: dict[str, Any]) -> dict[str, Any]:
    """The model's blocks without loading any data (counting paths needs only n)."""
    from ..anatomy import anatomy
    from ..checkpoints import load_model

    loaded = load_model(
        options["model_spec"],
        weights_file=options["weights_file"],
        weights=options["weights"],
        device="cpu",
    )
    found = anatomy(loaded.model)
    _refuse_plain(found)
    return {
        "model": loaded.arch + (" (random init)" if loaded.random_init else ""),
        "model_spec": loaded.spec,
        "checkpoint_sha256": loaded.sha256,
        "num_blocks": len(found.blocks),
    }


def _refuse_plain(found: Any) -> None:
    from ..paths import format_blocks

    plain = [b.index for b in found.blocks if b.shortcut is None]
    if plain:
        raise ValueError(
            f"block(s) {format_blocks(plain)} have no shortcut, so the network does not unravel "
            "into 2^n paths; paths are defined for residual networks only"
        )


def _echo_paths(n: int, model: str, share: float, table: pd.DataFrame) -> dict[str, Any]:
    from ..paths import summarize_paths

    summary = summarize_paths(n, share)
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
    width = max(5, *(len(_count(int(c))) for c in table["paths"]))
    click.echo(f"{'length':>6}  {'paths':>{width}}  {'share':>10}  {'cumulative':>10}")
    for row in table.itertuples(index=False):
        click.echo(
            f"{row.length:>6}  {_count(int(row.paths)):>{width}}  "
            f"{_percent(row.fraction):>10}  {_percent(row.cumulative):>10}"
        )
    return summary.numbers()


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
    type=click.FloatRange(0, 1, min_open=True),
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
    type=positive_int,
    default=1024,
    show_default=True,
    help="Sub-networks drawn (each block kept with probability 1/2, duplicates merged) when n "
    "is above --max-exhaustive.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the per-length table here (CSV with a JSON sidecar); with --exhaustive the "
    "error of each sub-network goes to OUT_STEM.subnetworks.csv. Without --out nothing is "
    "written.",
)
def paths(
    num_blocks: int | None,
    share: float,
    exhaustive: bool,
    max_exhaustive: int | None,
    samples: int,
    seed: int,
    out: str | None,
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
    from ..experiment import open_experiment
    from ..paths import path_table
    from ..results import check_writable, write_table
    from ..runtime import resolve_device
    from ..subnetworks import evaluate_subnetworks

    if num_blocks is not None and exhaustive:
        raise click.UsageError("--exhaustive evaluates a model: give --model, not --blocks")
    if not exhaustive:
        unused = [
            f"--{key.replace('_', '-')}"
            for key in ("dataset", "data_dir", "limit", "download")
            if options.get(key) not in (None, False)
        ]
        if unused:
            raise click.UsageError(
                f"{', '.join(unused)}: data options need --exhaustive; counting paths reads no data"
            )
        resolve_device(options["device"])  # --device cuda without CUDA is refused, not ignored
    out_path = check_writable(out) if out else None
    sub_path = _subnetwork_path(out_path) if out_path and exhaustive else None

    exp = None
    if num_blocks is not None:
        n, describe = num_blocks, {"model": "any network", "num_blocks": num_blocks}
    elif exhaustive:
        exp = open_experiment(**options)
        _refuse_plain(exp.anatomy)
        describe = exp.describe()
    else:
        describe = _describe_model(options)
    n = int(describe["num_blocks"])

    table = path_table(n, describe["model"])
    numbers = _echo_paths(n, describe["model"], share, table)
    if out_path is not None:
        write_table(out_path, table, "paths", {**describe, "n": n, **numbers})
        click.echo(f"wrote {out_path}")
    if exp is None:
        return

    limit = max_exhaustive
    if limit is None:
        limit = MAX_EXHAUSTIVE["cuda" if exp.device.type == "cuda" else "cpu"]
    every = n <= limit
    click.echo("")
    which = (
        f"all {_count(2**n)} sub-networks"
        if every
        else f"{samples} sampled sub-networks (each block kept with probability 1/2, "
        f"duplicates merged; n = {n} is above --max-exhaustive {limit})"
    )
    click.echo(f"evaluating {which} on {describe['images']} images of {exp.dataset_name}")
    frame = evaluate_subnetworks(
        exp.model, exp.loader(), max_exhaustive=limit, samples=samples, seed=seed
    )
    view = frame.attrs["ensemble"]
    frame.insert(0, "model", describe["model"])
    by_size = frame.groupby("num_kept")["error"].agg(["count", "mean", "min", "max"])
    click.echo(f"{'kept':>4}  {'subsets':>7}  {'mean error':>10}  {'min':>7}  {'max':>7}")
    for k, row in by_size.iterrows():
        click.echo(
            f"{k:>4}  {int(row['count']):>7}  {100 * row['mean']:>9.2f}%  "
            f"{100 * row['min']:>6.2f}%  {100 * row['max']:>6.2f}%"
        )
    click.echo(
        f"ensemble view: the average of the {view['subnetworks']} sub-networks' softmax outputs "
        f"has {100 * view['ensemble_error']:.2f}% error; the full network "
        f"{100 * view['full_error']:.2f}%; a sub-network on average "
        f"{100 * view['mean_subnetwork_error']:.2f}%"
    )
    if sub_path is None:
        click.echo(f"(give --out FILE.csv to keep the error of each of the {len(frame)} subsets)")
        return
    sub_meta = {
        **describe,
        "exhaustive": every,
        "max_exhaustive": limit,
        "samples": None if every else samples,
        "seed": seed,
        "ensemble": view,
    }
    write_table(sub_path, frame, "subnetworks", sub_meta)
    click.echo(f"wrote {sub_path}")
