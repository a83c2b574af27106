"""What every subcommand shares: the one-line error contract and the model/data options.

Holds ``fail_cleanly`` (exceptions -> one line on stderr and exit 1, traceback only with
``--debug``); the options shared so that every command spells them the same: ``model_options``,
``data_options``, ``metric_option``, ``seed_option``, ``device_option``, and the kinds
``choice_option`` (one of a few names, the first the default) and ``file_option`` (a file to
write, none unless given); ``positive_int``, ``progress_bar`` (a bar on a terminal, periodic
lines elsewhere) and ``json_line`` (a record as one line of JSON, without float noise).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

from ..errors import one_line
from ..names import METRIC_NAMES, STRATEGIES

DEBUG_ENV = "RESNET_ENSEMBLE_DEBUG"
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn any non-click exception into ``error: <one line>`` and exit status 1."""
    try:
        yield
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `ensemble-lesion blocks | head`: the reader has had enough
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush
        sys.exit(0)
    except Exception as err:  # noqa: BLE001 - this is the CLI's last line of defence
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        click.echo(f"error: {one_line(err)}", err=True)
        sys.exit(1)


positive_int = click.IntRange(min=1)

# ``names.MetricName`` and ``names.Strategy`` (torch-free, so --help stays fast).
METRIC_CHOICES = list(METRIC_NAMES)
STRATEGY_CHOICES = list(STRATEGIES)


def choice_option(name: str, choices: Sequence[str], help: str) -> Callable[[F], F]:  # noqa: A002
    """``name``: one of ``choices``, the first of them unless given."""
    return click.option(
        name, type=click.Choice(list(choices)), default=choices[0], show_default=True, help=help
    )


def file_option(name: str, help: str) -> Callable[[F], F]:  # noqa: A002
    """``name``: a file to write (not a folder); nothing is written unless it is given."""
    return click.option(name, type=click.Path(dir_okay=False), default=None, help=help)


#: --metric: what each route is scored by.
metric_option = choice_option(
    "--metric",
    METRIC_CHOICES,
    "error (top-1), top5 (top-5 error), loss (mean cross-entropy), perplexity (language "
    "models: exp of the mean next-token loss) or kl (mean KL divergence of the predictions "
    "from the full network's, in nats).",
)


def seed_option(help: str | None = None) -> Callable[[F], F]:  # noqa: A002 - click's name
    """--seed: an integer, 0 unless given; ``help`` says what it seeds."""
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


#: --device: where the work runs.
device_option = click.option(
    "--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto."
)


def model_options(func: F) -> F:
    """--model, --weights-file, --weights: which network to take apart."""
    func = click.option(
        "--weights",
        default=None,
        help="torchvision weights enum name (e.g. DEFAULT) for torchvision:NAME; needs internet.",
    )(func)
    func = click.option(
        "--weights-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Weights (.safetensors or a torch state dict) for torchvision:, timm:, hf: or a "
        "factory; classes and input channels are read from them.",
    )(func)
    func = click.option(
        "--model",
        "model_spec",
        default=None,
        metavar="SPEC",
        help="A checkpoint written by this toolkit, torchvision:NAME, timm:NAME, hf:PATH (a local "
        "Hugging Face folder), package.module:callable (your factory), or a built-in name such "
        "as resnet56 (random init). Default: the embedded Fashion-MNIST ResNet.",
    )(func)
    return func


def data_options(func: F) -> F:
    """--dataset, --data-dir, --download, --limit, --batch-size, --device."""
    func = device_option(func)
    func = click.option("--batch-size", type=positive_int, default=256, show_default=True)(func)
    func = click.option(
        "--limit", type=positive_int, default=None, help="Evaluate only the first N images."
    )(func)
    func = click.option("--download", is_flag=True, help="Download the dataset (needs internet).")(
        func
    )
    func = click.option(
        "--data-dir", type=click.Path(), default=None, help="Where the dataset lives."
    )(func)
    func = click.option(
        "--dataset",
        default=None,
        help="cifar10, cifar100, fashion-mnist, imagenet, synthetic, embedded, or text:PATH (a "
        "text file, tokenised with a language model's tokenizer, hf:PATH). Default: the "
        "dataset the checkpoint was trained on, else the embedded test subset.",
    )(func)
    return func


#: Seconds between progress lines when stderr is not a terminal (a log file, CI, a notebook).
PROGRESS_EVERY_S = 10.0


@contextlib.contextmanager
def progress_bar(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """Show progress on stderr and yield ``update(units)``.

    On a terminal it is click's bar. Elsewhere (nohup, CI, a notebook) a bar drawn with
    carriage returns shows nothing until the end, so it writes a plain line every
    ``PROGRESS_EVERY_S`` seconds instead: done, share, elapsed and an estimate of what is left.
    """
    if sys.stderr.isatty():
        with click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True) as bar:
            yield bar.update
        return
    start = last = time.monotonic()
    done = 0

    def update(units: int) -> None:
        nonlocal done, last
        done += units
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S or done >= length:
            return
        last = now
        elapsed = now - start
        left = elapsed * (length - done) / done if done else float("nan")
        click.echo(
            f"{label}: {done:,}/{length:,} ({100 * done / max(length, 1):.0f}%), "
            f"{elapsed:.0f} s elapsed, about {left:.0f} s left",
            err=True,
        )

    yield update


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")  # 2.600000000000001 -> 2.6: float noise, not precision
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def json_line(record: Any) -> str:
    """``record`` as one line of JSON, floats rounded to 12 significant digits."""
    return json.dumps(_rounded(record))
