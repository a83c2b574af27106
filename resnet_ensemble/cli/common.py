"""What every subcommand shares: the one-line error contract and the model/data options.

Holds ``fail_cleanly`` (exceptions -> one line on stderr and exit 1, traceback only with
``--debug``); the options shared so that every command spells them the same: ``model_options``,
``data_options``, ``metric_option``, ``seed_option``, ``device_option``, and the kinds
``choice_option`` (one of a few names, the first the default), ``file_option`` (a file to
write, none unless given) and ``overwrite_option`` (replace what exists, else it is
refused); ``positive_int``, ``bounded`` (a count's range from ``bounds.BOUNDS``),
``FiniteFloat`` (a float range that refuses NaN and infinities), ``progress_bar`` (a bar on a
terminal, periodic lines elsewhere) and ``json_line`` (a record as one line of JSON, without
float noise).
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

from ..bounds import BOUNDS
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


def bounded(name: str) -> click.IntRange:
    """The click type of the user-given count ``name``: its range in ``bounds.BOUNDS``, so that
    a number out of range is a one-line usage error before it drives any allocation or loop."""
    bound = BOUNDS[name]
    return click.IntRange(bound.lo, bound.hi)


class FiniteFloat(click.FloatRange):
    """A ``click.FloatRange`` that also refuses NaN and infinities (NaN passes every range)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


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


def overwrite_option(what: str) -> Callable[[F], F]:
    """--overwrite: replace ``what`` where it exists; without it an existing result is refused
    (``outputs.claim_outputs``), so that nothing the user had is replaced by accident."""
    return click.option(
        "--overwrite", is_flag=True, help=f"Replace {what} if it exists (else it is refused)."
    )


#: --metric: what each route is scored by.
metric_option = choice_option(
    "--metric",
    METRIC_CHOICES,
    "error (top-1), top5 (top-5 error), loss (mean cross-entropy), perplexity (language "
    "models: exp of the mean next-token loss) or kl (mean KL divergence of the predictions "
    "from the full network's, in nats).",
)


def seed_option(help: str = "Seeds the random draws.") -> Callable[[F], F]:  # noqa: A002
    """--seed: an integer, 0 unless given; ``help`` says what it seeds."""
    return click.option("--seed", type=bounded("seed"), default=0, show_default=True, help=help)


#: --device: where the work runs.
device_option = click.option(
    "--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto."
)


def _model_args(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    """``KEY=VALUE`` pairs -> a dict; a VALUE that reads as a Python literal (28, 0.1, True,
    None, (2, 2)) is that value, any other is the text."""
    import ast

    out: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(
                f"{text!r} is not KEY=VALUE (e.g. img_size=28)", ctx=ctx, param=param
            )
        if key in out:
            raise click.BadParameter(f"{key} is given twice", ctx=ctx, param=param)
        try:
            out[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out[key] = raw.strip()
    return out


def model_options(func: F) -> F:
    """--model, --weights-file, --weights, --model-arg: which network to take apart."""
    func = click.option(
        "--model-arg",
        "model_args",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_model_args,
        help="A constructor argument for torchvision:, timm: or a factory, e.g. img_size=28 "
        "for a timm ViT on 28x28 images; repeatable.",
    )(func)
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


class Notes(list[str]):
    """Notes gathered while a command runs, shown once it has succeeded: what the user should
    know beside the result (a checkpoint's recorded error), kept off a failure's one line."""

    def echo(self) -> None:
        for line in self:
            click.echo(f"note: {line}", err=True)


#: --verify: re-measure a checkpoint's recorded test error (``open_experiment``'s ``verify``).
verify_option = click.option(
    "--verify",
    is_flag=True,
    help="Re-measure the test error the checkpoint records, on its own test images, and stop "
    "if they disagree (metadata that do not describe the weights). Without it the recorded "
    "error is trusted and shown.",
)


def data_options(func: F) -> F:
    """--dataset, --data-dir, --download, --limit, --batch-size, --device, --tokenizer."""
    func = click.option(
        "--tokenizer",
        type=click.Path(exists=True),
        default=None,
        help="The tokenizer for text:PATH (a Hugging Face folder with one, or a "
        "tokenizer.json). Default: the hf: model folder's own.",
    )(func)
    func = device_option(func)
    func = click.option(
        "--batch-size",
        type=bounded("batch_size"),
        default=256,
        show_default=True,
        help="Images evaluated at once: memory and speed, not the results.",
    )(func)
    func = click.option(
        "--limit", type=bounded("limit"), default=None, help="Evaluate only the first N images."
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
