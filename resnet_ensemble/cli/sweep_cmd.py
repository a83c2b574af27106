"""``ensemble-lesion sweep single|multi|reorder``: the paper's lesion experiments, to a table."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..distributed import from_environment
from ..experiment import open_experiment
from ..results import ResultsTable, check_writable, run_metadata
from ..sweeps import multi_deletions, random_swaps, run_sweep, single_deletions, sweep_columns
from .common import data_options, metric_option, model_options, positive_int

KINDS = {
    "single": "every block deleted alone (paper Fig. 3)",
    "multi": "k random blocks deleted together (paper Fig. 5a)",
    "reorder": "k random swaps of same-shape blocks (paper Fig. 5b)",
}


@click.command()
@click.argument("kind", type=click.Choice(list(KINDS)))
@model_options
@data_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results CSV (a JSON sidecar goes beside it). Default: results/sweep_KIND.csv",
)
@click.option(
    "--resume", is_flag=True, help="Continue a killed sweep: skip finished configurations."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing table.")
@click.option(
    "--max-k",
    type=positive_int,
    default=8,
    show_default=True,
    help="multi: delete up to this many blocks (the paper went to 20).",
)
@click.option(
    "--max-swaps",
    type=positive_int,
    default=8,
    show_default=True,
    help="reorder: up to this many swaps.",
)
@click.option(
    "--samples",
    type=positive_int,
    default=3,
    show_default=True,
    help="multi/reorder: random draws per k.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--chunk",
    type=positive_int,
    default=64,
    show_default=True,
    help="Configurations evaluated together; a kill loses at most one chunk.",
)
@click.option(
    "--strategy",
    type=click.Choice(["auto", "prefix", "mask"]),
    default="auto",
    show_default=True,
    help="Share prefixes, or batch deletion masks (GPU).",
)
@click.option("--amp", is_flag=True, help="bf16 autocast (GPU); full precision is the default.")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (GPU).")
@metric_option
def sweep(
    kind: str,
    out: str | None,
    resume: bool,
    overwrite: bool,
    max_k: int,
    max_swaps: int,
    samples: int,
    seed: int,
    chunk: int,
    strategy: str,
    amp: bool,
    channels_last: bool,
    metric: str,
    **options: Any,
) -> None:
    """Run a lesion sweep: single, multi or reorder. Under torchrun the images are sharded
    across ranks and rank 0 writes the table."""
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other")
    path = Path(out or f"results/sweep_{kind}.csv")
    dist = from_environment()
    try:
        problem = None
        if dist.is_main:
            try:
                check_writable(path)
                if path.exists() and not (resume or overwrite):
                    raise ValueError(
                        f"{path} already exists; pass --resume to continue it or "
                        "--overwrite to start again"
                    )
            except ValueError as err:
                problem = str(err)
        # Every rank learns rank 0's verdict, so that all stop with its message (not with a
        # lost connection when rank 0 leaves the process group).
        problem = dist.from_main(problem)
        if problem:
            raise ValueError(problem)
        options["device"] = dist.device(options["device"])
        exp = open_experiment(**options)
        if kind == "single":
            specs = single_deletions(exp.anatomy)
        elif kind == "multi":
            specs = multi_deletions(exp.anatomy, max_k=max_k, samples=samples, seed=seed)
        else:
            specs = random_swaps(exp.anatomy, max_swaps=max_swaps, samples=samples, seed=seed)
        metadata = {
            **run_metadata(),
            **exp.describe(),
            "table": "sweep",
            "sweep": kind,
            "description": KINDS[kind],
            "seed": seed,
            "samples": samples,
            "max_k": max_k if kind == "multi" else None,
            "max_swaps": max_swaps if kind == "reorder" else None,
            "world_size": dist.world,
            "amp": amp,
            "metric": metric,
        }
        if dist.is_main and overwrite:
            # Only now that the model, the data and the configurations are known to be good:
            # a run refused above must not cost the user the table it was told to replace.
            ResultsTable.overwrite(path)
        table = (
            ResultsTable(path, sweep_columns(metric), metadata=metadata, resume=resume)
            if dist.is_main
            else None
        )
        start = time.time()
        todo = len([s for s in specs if table is None or s.config not in table.done])
        shard = len(exp.shard(dist.rank, dist.world))
        if dist.is_main:
            click.echo(
                f"{kind} sweep of {exp.describe()['model']} on {exp.describe()['dataset']}: "
                f"{len(specs)} configurations ({len(specs) - todo} already done), "
                f"{exp.describe()['images']} images -> {path}",
                err=True,
            )
        with click.progressbar(
            length=todo * shard,
            label=f"sweep {kind}",
            file=sys.stderr,
            show_eta=True,
        ) as bar:
            run_sweep(
                exp,
                specs,
                table,
                chunk=chunk,
                dist=dist,
                strategy=strategy,
                amp=amp,
                channels_last=channels_last,
                progress=bar.update if dist.is_main else None,
                metric=metric,
            )
        if table is not None:
            table.write_metadata(complete=True, seconds=round(time.time() - start, 2))
            frame = table.frame
            base = frame.loc[frame["config"] == "baseline", metric]
            shown = (
                f"{100 * float(base.iloc[0]):.2f}%"
                if metric != "loss" and len(base)
                else (f"{float(base.iloc[0]):.4f}" if len(base) else "")
            )
            name = {"error": "error", "top5": "top-5 error", "loss": "loss"}[metric]
            click.echo(
                f"wrote {len(frame)} rows to {path}; full-network {name} {shown}"
                if len(base)
                else f"wrote {path}"
            )
    finally:
        dist.close()
