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


class _Group(click.Group):
    """A group whose errors follow the one-line contract."""

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


def _register() -> None:
    from importlib import import_module

    for module_name, attr in _SUBCOMMANDS:
        cli.add_command(getattr(import_module(f"{__name__}.{module_name}"), attr))


_SUBCOMMANDS = [
    ("blocks_cmd", "blocks"),
    ("train_cmd", "train"),
    ("sweep_cmd", "sweep"),
    ("paths_cmd", "paths"),
    ("gradients_cmd", "gradients"),
    ("plot_cmd", "plot"),
    ("reproduce_cmd", "reproduce"),
    ("depth_cmd", "depth"),
]
_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="ensemble-lesion")
