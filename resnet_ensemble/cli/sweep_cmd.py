"""``ensemble-lesion sweep single|multi|reorder``: the paper's lesion experiments, to a table.

One subcommand per kind, each with its own options (``sweep multi --help`` lists --max-k, not
--max-swaps); the work is ``sweeps.sweep_to_table``. Ends with a short table of what it found.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..names import SWEEP_KINDS, MetricName, SweepKind
from .common import (
    STRATEGY_CHOICES,
    Notes,
    bounded,
    choice_option,
    data_options,
    file_option,
    metric_option,
    model_options,
    progress_bar,
    seed_option,
    verify_option,
)

__all__ = ["sweep"]

F = TypeVar("F", bound=Callable[..., Any])

# The kinds and their one-line help (``names`` is torch-free, so --help stays fast).
KINDS = SWEEP_KINDS


class _Kinds(click.Group):
    """``sweep KIND``: an unknown or missing kind is a usage error that lists the kinds."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            choices = ", ".join(repr(k) for k in self.commands)
            raise click.UsageError(f"'{args[0]}' is not one of {choices}.", ctx)
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            raise click.UsageError(f"Missing argument 'KIND': one of {', '.join(KINDS)}.", ctx)
        return super().parse_args(ctx, args)


@click.group(cls=_Kinds)
def sweep() -> None:
    """Run a lesion sweep: single, multi or reorder. Under torchrun the images are sharded
    across ranks and rank 0 writes the table."""


def _common_options(func: F) -> F:
    """The options every kind has: model, data, output, resume and the engine's."""
    for option in reversed(
        [
            file_option(
                "--out",
                "Results CSV (a JSON sidecar goes beside it). Default: runs/sweep_KIND.csv.",
            ),
            click.option(
                "--resume",
                is_flag=True,
                help="Continue a killed sweep: skip finished configurations.",
            ),
            click.option("--overwrite", is_flag=True, help="Replace an existing table."),
            click.option(
                "--chunk",
                type=bounded("chunk"),
                default=64,
                show_default=True,
                help="Configurations evaluated together; a kill loses at most one chunk.",
            ),
            choice_option(
                "--strategy", STRATEGY_CHOICES, "Share prefixes, or batch deletion masks (GPU)."
            ),
            click.option(
                "--amp", is_flag=True, help="bf16 autocast (GPU); full precision is the default."
            ),
            click.option(
                "--channels-last", is_flag=True, help="channels_last memory format (GPU)."
            ),
            metric_option,
            verify_option,
        ]
    ):
        func = option(func)
    return model_options(data_options(func))


_SAMPLES = click.option(
    "--samples", type=bounded("samples"), default=3, show_default=True, help="Random draws per k."
)
_SEED = seed_option("Seeds the random draws: the blocks deleted (multi) or swapped (reorder).")


def _run(kind: SweepKind, out: str | None, metric: MetricName, **options: Any) -> None:
    """Parse, one call, print: the sweep into its table, then what it found."""
    from ..results import sweep_rows
    from ..studies.sweeps import summarize_sweep, sweep_to_table

    settings = {
        key: options.pop(key)
        for key in (
            "resume",
            "overwrite",
            "chunk",
            "strategy",
            "amp",
            "channels_last",
            "max_k",
            "max_swaps",
            "samples",
            "seed",
            "eligible",
            "keep_stage_first",
        )
        if key in options
    }
    if settings.get("resume") and settings.get("overwrite"):
        raise click.UsageError("--resume and --overwrite contradict each other")
    notes = Notes()
    with _Progress(f"sweep {kind}") as progress:
        outcome = sweep_to_table(
            kind,
            Path(out or f"runs/sweep_{kind}.csv"),
            {**options, "on_note": notes.append},
            metric=metric,
            on_start=progress.start,
            **settings,
        )
    if outcome.frame is None:  # not rank 0
        return
    notes.extend(outcome.notes)
    notes.echo()
    _echo_summary(summarize_sweep(outcome.frame, metric), metric)
    frame = outcome.frame
    base = sweep_rows(frame).baseline[metric]
    if not len(base):
        click.echo(f"wrote {outcome.path}")
        return
    shown = (
        f"{float(base.iloc[0]):.4g}"
        if metric not in ("error", "top5")
        else f"{100 * float(base.iloc[0]):.2f}%"
    )
    name = {"error": "error", "top5": "top-5 error"}.get(metric, metric)
    click.echo(f"wrote {len(frame)} rows to {outcome.path}; full-network {name} {shown}")


class _Progress:
    """The sweep's start line and progress bar, opened when the work is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def start(self, line: str, units: int) -> Callable[[int], None]:
        click.echo(line, err=True)
        self._bar = progress_bar(units, self.label)
        return self._bar.__enter__()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _echo_summary(summary: Any, metric: str) -> None:
    from tabulate import tabulate

    def show(column: str, value: Any) -> str:
        if value != value:  # NaN: not measured for this row
            return ""
        if column == "count":
            return str(int(value))
        if column == "configuration":
            return str(value)
        return f"{value:.4g}" if metric not in ("error", "top5") else f"{100 * value:.2f}%"

    rows = [[show(c, v) for c, v in row.items()] for _, row in summary.iterrows()]
    colalign = ["left"] + ["right"] * (len(summary.columns) - 1)
    click.echo(tabulate(rows, headers=list(summary.columns), colalign=colalign))


def _kind_command(kind: SweepKind, doc: str, *options: Callable[[F], F]) -> click.Command:
    """``sweep KIND``: the common options, then ``options``; ``doc`` is its help."""

    def command(**values: Any) -> None:
        _run(kind, **values)

    command.__doc__ = doc
    for option in reversed(options):
        command = option(command)
    # short_help: click's own would stop at the first full stop, the one of "Fig. 3".
    return sweep.command(kind, short_help=doc)(_common_options(command))


single = _kind_command("single", "Every block deleted alone (paper Fig. 3).")
multi = _kind_command(
    "multi",
    "k random blocks deleted together, k = 1..--max-k (paper Fig. 5a).",
    click.option(
        "--max-k",
        type=bounded("max_k"),
        default=8,
        show_default=True,
        help="Delete up to this many blocks (the paper went to 20).",
    ),
    _SAMPLES,
    _SEED,
    choice_option(
        "--eligible",
        ["non-downsampling", "all", "not-stage-first"],
        "Which blocks the draws come from: those whose shortcut is the identity, every block, "
        "or every block but the first of each stage (the authors' plots).",
    ),
)
reorder = _kind_command(
    "reorder",
    "k random swaps of same-shape blocks, with their Kendall tau (paper Fig. 5b).",
    click.option(
        "--max-swaps",
        type=bounded("max_swaps"),
        default=8,
        show_default=True,
        help="Up to this many swaps.",
    ),
    _SAMPLES,
    _SEED,
    click.option(
        "--keep-stage-first",
        is_flag=True,
        help="No swap moves the first block of a stage (the authors' protocol).",
    ),
)
