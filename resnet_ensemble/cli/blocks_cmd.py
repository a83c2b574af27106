"""``ensemble-lesion blocks``: the residual blocks of a model, as every other command numbers
them."""

from __future__ import annotations

from typing import Any

import click

from .common import bounded, json_line, model_options


@click.command()
@model_options
@click.option(
    "--num-classes",
    type=bounded("num_classes"),
    default=None,
    help="For built-in and torchvision names.",
)
@click.option(
    "--in-channels",
    type=bounded("in_channels"),
    default=None,
    help="For built-in and torchvision names.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def blocks(
    model_spec: str | None,
    weights_file: str | None,
    weights: str | None,
    model_args: dict,
    num_classes: int | None,
    in_channels: int | None,
    as_json: bool,
) -> None:
    """List the blocks: index, name, stage, downsampling, parameter count."""
    from ..blocks.registry import residual_blocks
    from ..models.specs import load_model

    loaded = load_model(
        model_spec,
        weights_file=weights_file,
        weights=weights,
        num_classes=num_classes,
        in_channels=in_channels,
        device="cpu",
        model_args=model_args,
    )
    found = residual_blocks(loaded.model)
    rows: list[dict[str, Any]] = [
        {
            "index": b.index,
            "name": b.name,
            "stage": b.stage,
            "downsamples": b.downsamples,
            "parameters": b.num_parameters,
            "random_init": loaded.random_init,  # every output says when weights are random
        }
        for b in found
    ]
    if as_json:
        for row in rows:
            click.echo(json_line(row))
        return
    label = " (random init)" if loaded.random_init else ""
    click.echo(f"{loaded.arch}{label}: {len(rows)} residual blocks, 2^{len(rows)} paths")
    width = max(len(r["name"]) for r in rows)
    click.echo(
        f"{'index':>5}  {'name':<{width}}  {'stage':>5}  {'downsamples':<11}  {'parameters':>10}"
    )
    for r in rows:
        flag = "yes" if r["downsamples"] else "no"
        cells = f"{r['index']:>5}  {r['name']:<{width}}  {r['stage']:>5}  {flag:<11}"
        click.echo(f"{cells}  {r['parameters']:>10,}")
