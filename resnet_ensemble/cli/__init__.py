"""The ``ensemble-lesion`` command line: a thin click layer over the library.

Holds the top-level group (which, with no subcommand, runs the single lesion experiment) and the
error contract shared by every subcommand: exit 0 on success, 2 on a usage error (click's), 1 on
any other error with one line that says what was wrong, and a traceback only with ``--debug``.
Each subcommand lives in its own module in this package.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .common import DEBUG_ENV, fail_cleanly
from .lesion_cmd import lesion_options, run_lesion

__all__ = ["cli", "main"]


# Each subcommand, the module that defines it and its one-line help. A module is imported only
# when its command runs or shows its own help, so that `--help` does not import torch.
_SUBCOMMANDS = {
    "blocks": ("blocks_cmd", "List the blocks: index, name, stage, downsampling, parameter count."),
    "train": ("train_cmd", "Train a CIFAR-style ResNet (He et al.'s recipe)."),
    "sweep": ("sweep_cmd", "Run a lesion sweep: single, multi or reorder."),
    "paths": ("paths_cmd", "Path-length distribution; every sub-network with --exhaustive."),
    "gradients": ("gradients_cmd", "Gradient per path length: exact decomposition and sampled."),
    "plot": ("plot_cmd", "Draw every paper figure that results tables allow."),
    "reproduce": ("reproduce_cmd", "Every paper figure, end to end: train, sweep, analyse, plot."),
    "depth": ("depth_cmd", "Put analysed networks side by side, against their number of blocks."),
    "dynamics": ("dynamics_cmd", "The paper's measures against the epochs of one training run."),
}


class _Group(click.Group):
    """A group whose errors follow the one-line contract and whose subcommands load lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Once a command has run or shown its help it is in both: list it once.
        return list(dict.fromkeys([*super().list_commands(ctx), *_SUBCOMMANDS]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _SUBCOMMANDS and cmd_name not in self.commands:
            from importlib import import_module

            module = import_module(f"{__name__}.{_SUBCOMMANDS[cmd_name][0]}")
            self.add_command(getattr(module, cmd_name))
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_module, help_text) in _SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        before = os.environ.get(DEBUG_ENV)
        try:
            with fail_cleanly():
                return super().invoke(ctx)
        finally:  # --debug lasts one invocation, also for in-process callers (tests, notebooks)
            if before is None:
                os.environ.pop(DEBUG_ENV, None)
            else:
                os.environ[DEBUG_ENV] = before


@click.group(
    cls=_Group,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@lesion_options
@click.pass_context
def cli(ctx: click.Context, debug: bool, **lesion_kwargs: Any) -> None:
    """Take a trained residual network apart at test time (Veit et al., NeurIPS 2016).

    With no subcommand: the test error of the full network and with the --drop-block blocks
    deleted. With no --model it uses the embedded default (a ResNet trained by this toolkit on
    Fashion-MNIST and 2,000 held-out test images), offline.
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if ctx.invoked_subcommand is None:
        run_lesion(**lesion_kwargs)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="ensemble-lesion")
