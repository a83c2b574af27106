"""The main command, ``ensemble-lesion --drop-block 3``: test error with blocks deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..names import MetricName
from .common import data_options, json_line, metric_option, model_options

F = TypeVar("F", bound=Callable[..., Any])


def lesion_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)
    func = metric_option(func)
    func = data_options(func)
    func = model_options(func)
    func = click.option(
        "--route",
        "route_text",
        default=None,
        metavar="ROUTE",
        help="Run this route instead (not with --drop-block): blocks by index, -1 for the last, "
        "or by name (layer2.1); ranges, 5-2 reversed, 4x2 a repeat, [2|3] a parallel group; "
        "e.g. 0-3,5,4,6-8 swaps blocks 4 and 5.",
    )(func)
    func = click.option(
        "--drop-block",
        "drop_blocks",
        multiple=True,
        metavar="BLOCK",
        help="Delete this block: its 0-based index as `ensemble-lesion blocks` lists it, -1 for "
        "the last, or its name (layer2.1); repeatable.",
    )(func)
    return func


def run_lesion(
    drop_blocks: tuple[str, ...],
    as_json: bool,
    metric: MetricName = "error",  # click's choice checked it
    route_text: str | None = None,
    **options: Any,
) -> None:
    """Evaluate the full network and the lesioned (or rerouted) one on the same images in one
    pass."""
    from ..blocks.registry import resolve_block
    from ..core.engine import evaluate_routes
    from ..core.interventions import format_route_item, parse_route, plan_route
    from ..studies.experiment import open_experiment

    if len(set(drop_blocks)) != len(drop_blocks):
        raise click.BadParameter("a block is given twice", param_hint="--drop-block")
    if route_text is not None and drop_blocks:
        raise click.UsageError("give --drop-block or --route, not both")
    if route_text is not None:  # the text's own mistakes, before the model is loaded
        try:
            parse_route(route_text, resolve=lambda name: 0)  # names are looked up below
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--route") from None
    exp = open_experiment(**options)
    n = len(exp.blocks)
    try:
        dropped = [resolve_block(exp.anatomy, ref) for ref in drop_blocks]
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--drop-block") from None
    if len(set(dropped)) != len(dropped):
        raise click.BadParameter("a block is given twice", param_hint="--drop-block")
    kept: list[Any] = [i for i in range(n) if i not in set(dropped)]
    if route_text is not None:
        try:
            kept = parse_route(
                route_text, n, resolve=lambda name: resolve_block(exp.anatomy, name, "the route")
            )
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--route") from None
    plan_route(exp.anatomy, kept)  # refuses what cannot run before any image is read
    full, lesioned = evaluate_routes(exp.model, exp.loader(), [range(n), kept], metric=metric)
    record = {
        **exp.describe(),
        "metric": metric,
        "dropped_blocks": dropped,  # 0-based, however they were given
        "dropped_names": [exp.blocks[i].name for i in dropped],
        **({"route": ",".join(map(format_route_item, kept))} if route_text is not None else {}),
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
    # Rates as percentages to two decimals; losses, perplexities and KL (often far below 0.01)
    # to four significant digits.
    shown, signed = ("6.2f", "+.2f") if percent else (".4g", "+.4g")
    click.echo(f"{label}, full network:  {record[keys[0]]:{shown}}{unit}")
    if drop_blocks or route_text is not None:
        names = ", ".join(f"{i} ({exp.blocks[i].name})" for i in dropped)
        what = f"route {record['route']}" if route_text is not None else f"without {names}"
        click.echo(f"{label}, {what}: {record[keys[1]]:{shown}}{unit}")
        points = " points" if percent else ""
        click.echo(f"difference: {record[keys[2]]:{signed}}{points}")
    else:
        click.echo(
            "no --drop-block given: pass --drop-block BLOCK to delete a block, or --route ROUTE"
        )
