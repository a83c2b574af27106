"""The main command, ``ensemble-lesion --drop-block 3``: test error with blocks deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .common import data_options, json_line, metric_option, model_options

F = TypeVar("F", bound=Callable[..., Any])


def lesion_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)
    func = metric_option(func)
    func = data_options(func)
    func = model_options(func)
    func = click.option(
        "--drop-block",
        "drop_blocks",
        type=int,
        multiple=True,
        metavar="INDEX",
        help="Delete this block (0-based, as `ensemble-lesion blocks` lists); repeatable.",
    )(func)
    return func


def run_lesion(
    drop_blocks: tuple[int, ...], as_json: bool, metric: str = "error", **options: Any
) -> None:
    """Evaluate the full network and the lesioned one on the same images in one pass."""
    from ..engine import evaluate_routes
    from ..experiment import open_experiment
    from ..interventions import plan_route

    if len(set(drop_blocks)) != len(drop_blocks):
        raise click.BadParameter("a block is given twice", param_hint="--drop-block")
    exp = open_experiment(**options)
    n = len(exp.blocks)
    kept = [i for i in range(n) if i not in set(drop_blocks)]
    for i in drop_blocks:
        if not 0 <= i < n:
            raise click.BadParameter(
                f"block {i} is out of range: {exp.loaded.arch} has {n} blocks, 0..{n - 1} "
                "(see `ensemble-lesion blocks`)",
                param_hint="--drop-block",
            )
    plan_route(exp.anatomy, kept)  # refuses what cannot run before any image is read
    full, lesioned = evaluate_routes(exp.model, exp.loader(), [range(n), kept], metric=metric)
    record = {
        **exp.describe(),
        "metric": metric,
        "dropped_blocks": list(drop_blocks),
        "dropped_names": [exp.blocks[i].name for i in drop_blocks],
    }
    percent = metric in ("error", "top5")  # error rates as percentages, the others as they are
    scale, unit = (100, "%") if percent else (1, "")
    if metric == "error":
        keys = ("error_full_pct", "error_lesioned_pct", "difference_pct")
    elif percent:
        keys = (f"{metric}_full_pct", f"{metric}_lesioned_pct", "difference_pct")
    else:
        keys = (f"{metric}_full", f"{metric}_lesioned", "difference")
    values = (scale * full, scale * lesioned, scale * (lesioned - full))
    record.update(dict(zip(keys, values, strict=True)))
    if as_json:
        click.echo(json_line(record))
        return
    click.echo(f"model:    {record['model']}")
    dataset = record["dataset"]
    if dataset == "embedded":
        dataset += " (held-out Fashion-MNIST test images shipped with the package)"
    click.echo(f"dataset:  {dataset}")
    click.echo(f"{exp.unit + ':':<10}{record['images']}")
    label = {"error": "error", "top5": "top-5 error"}.get(metric, metric)
    click.echo(f"{label}, full network:  {record[keys[0]]:6.2f}{unit}")
    if drop_blocks:
        names = ", ".join(f"{i} ({exp.blocks[i].name})" for i in drop_blocks)
        click.echo(f"{label}, without {names}: {record[keys[1]]:6.2f}{unit}")
        points = " points" if percent else ""
        click.echo(f"difference: {record[keys[2]]:+.2f}{points}")
    else:
        click.echo("no --drop-block given: pass --drop-block INDEX to delete a block")
