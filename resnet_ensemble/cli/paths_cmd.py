"""``ensemble-lesion paths``: the path-length distribution, and all 2^n sub-networks."""

from __future__ import annotations

import json

import click
import pandas as pd

from ..checkpoints import load_model
from ..experiment import open_experiment
from ..paths import evaluate_subnetworks, path_length_counts, summarize_paths
from ..results import atomic_write_text, check_writable, run_metadata, sidecar_path
from .common import data_options, model_options, positive_int


def path_table(n: int, model: str) -> pd.DataFrame:
    counts = path_length_counts(n)
    total = 2**n
    frame = pd.DataFrame(
        {"model": model, "length": range(n + 1), "paths": [str(c) for c in counts]}
    )
    frame["fraction"] = [c / total for c in counts]
    frame["cumulative"] = frame["fraction"].cumsum()
    return frame


@click.command()
@model_options
@data_options
@click.option(
    "--blocks",
    "num_blocks",
    type=click.IntRange(min=0, max=1000),
    default=None,
    help="Only count paths for this many blocks (no model needed).",
)
@click.option(
    "--share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Central share of paths to report a range for.",
)
@click.option(
    "--exhaustive",
    is_flag=True,
    help="Evaluate every sub-network (each subset of kept blocks) on the test data.",
)
@click.option(
    "--max-exhaustive",
    type=positive_int,
    default=12,
    show_default=True,
    help="Enumerate all 2^n subsets up to this n (20 is fine on a GPU); sample above.",
)
@click.option(
    "--samples",
    type=positive_int,
    default=1024,
    show_default=True,
    help="Sub-networks sampled when n is above --max-exhaustive.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Path-length table (CSV); with --exhaustive the sub-network table goes to "
    "OUT_STEM.subnetworks.csv. Default: results/paths.csv",
)
def paths(
    num_blocks: int | None,
    share: float,
    exhaustive: bool,
    max_exhaustive: int,
    samples: int,
    seed: int,
    out: str | None,
    **options: object,
) -> None:
    """Count the 2^n paths by length (Binomial(n, 1/2)) and, with --exhaustive, evaluate them."""
    out_path = check_writable(out or "results/paths.csv")
    sub_path = out_path.with_name(f"{out_path.stem}.subnetworks.csv")
    if num_blocks is not None and exhaustive:
        raise click.UsageError("--exhaustive needs a model, not --blocks")
    if num_blocks is None:
        if exhaustive:
            exp = open_experiment(**options)  # type: ignore[arg-type]
            describe = exp.describe()
        else:
            loaded = load_model(
                options["model_spec"],
                weights_file=options["weights_file"],  # type: ignore[arg-type]
                weights=options["weights"],
                device="cpu",
            )  # type: ignore[arg-type]
            from ..anatomy import residual_blocks

            describe = {
                "model": loaded.arch,
                "model_spec": loaded.spec,
                "checkpoint_sha256": loaded.sha256,
                "num_blocks": len(residual_blocks(loaded.model)),
            }
        n = int(describe["num_blocks"])
    else:
        n, describe = num_blocks, {"model": "any network", "num_blocks": num_blocks}
    summary = summarize_paths(n, share)
    table = path_table(n, describe["model"])
    atomic_write_text(out_path, table.to_csv(index=False))
    meta = {
        **run_metadata(),
        **describe,
        "table": "paths",
        "n": n,
        "share": share,
        "mean": summary.mean,
        "std": summary.std,
        "range_lo": summary.normal_lo,
        "range_hi": summary.normal_hi,
        "range_fraction": summary.normal_fraction,
        "shortest_lo": summary.lo,
        "shortest_hi": summary.hi,
        "shortest_fraction": summary.fraction,
    }
    atomic_write_text(sidecar_path(out_path), json.dumps(meta, indent=2, default=str))
    click.echo(
        f"{describe['model']}: {n} blocks, 2^{n} = {2**n:,} paths, mean length {summary.mean:g}"
    )
    click.echo(
        f"{100 * share:g}% of paths: lengths {summary.normal_lo}-{summary.normal_hi} "
        f"(mean ± z·sd, {100 * summary.normal_fraction:.2f}%); shortest range "
        f"{summary.lo}-{summary.hi} ({100 * summary.fraction:.2f}%)"
    )
    click.echo(f"wrote {out_path}")
    if not exhaustive:
        return
    check_writable(sub_path)
    frame = evaluate_subnetworks(
        exp.model, exp.loader(), max_exhaustive=max_exhaustive, samples=samples, seed=seed
    )
    view = frame.attrs["ensemble"]
    frame.insert(0, "model", describe["model"])
    atomic_write_text(sub_path, frame.to_csv(index=False))
    sub_meta = {
        **run_metadata(),
        **describe,
        "table": "subnetworks",
        "exhaustive": n <= max_exhaustive,
        "ensemble": view,
    }
    atomic_write_text(sidecar_path(sub_path), json.dumps(sub_meta, indent=2, default=str))
    by_size = frame.groupby("num_kept")["error"].mean()
    click.echo(
        f"{len(frame)} sub-networks on {view['images']} images "
        f"({'all' if n <= max_exhaustive else 'sampled'}); mean error by kept blocks:"
    )
    for k, err in by_size.items():
        click.echo(f"  {k:>3} kept: {100 * err:6.2f}%")
    click.echo(
        f"ensemble of their softmax outputs: {100 * view['ensemble_error']:.2f}% error; "
        f"full network {100 * view['full_error']:.2f}%; mean sub-network "
        f"{100 * view['mean_subnetwork_error']:.2f}%"
    )
    click.echo(f"wrote {sub_path}")
