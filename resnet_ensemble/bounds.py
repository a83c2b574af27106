"""Bounds on every number and file a user gives: one table, checked before anything is
allocated, looped over or read.

Holds:
- ``BOUNDS``: each user-given count (``--limit``, ``--batch-size``, ``--samples``, seeds,
  windows, ...) with its smallest and largest value and why the largest is that large; the
  command line turns each into a ``click.IntRange`` (``cli.common.bounded``), so that a number
  out of range is a usage error in one line (exit 2) before any work starts
- ``check_count``: the same check for the library's entry points, as one-line ValueErrors
- ``check_finite``: a float option that must be a finite number (click's ranges pass NaN)
- ``regular_file_size``: a file to read, checked by ``stat`` alone (a regular file, not a
  FIFO, a device or a socket, and no larger than the cap for its kind) before it is opened

Torch-free, so that ``--help`` and the click layer can use it without importing torch.
"""

from __future__ import annotations

import math
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BOUNDS",
    "MAX_CSV_BYTES",
    "MAX_TEXT_BYTES",
    "Bound",
    "check_count",
    "check_finite",
    "regular_file_size",
]


@dataclass(frozen=True)
class Bound:
    """A user-given whole number: ``lo``..``hi``; ``why`` says where the upper bound comes from."""

    lo: int
    hi: int
    why: str


#: Every user-given count, by option name. The upper bounds are far above any real use and far
#: below what would exhaust memory or run for days before the first result.
BOUNDS: dict[str, Bound] = {
    "seed": Bound(0, 2**32 - 1, "numpy's and torch's generators take 32-bit seeds alike"),
    "limit": Bound(1, 100_000_000, "ImageNet-21k has 14 million images"),
    "batch_size": Bound(1, 16_384, "a batch is held in memory at once"),
    "images": Bound(1, 16_384, "each batch is held in memory, times the number of lengths"),
    "batches": Bound(1, 10_000, "the paper measured 1,000 samples in all"),
    "samples": Bound(1, 100_000, "a sweep or sample has at most 100,000 configurations"),
    "samples_per_length": Bound(0, 100_000, "the paper sampled 1,000 paths per length"),
    "sign_draws": Bound(0, 100_000, "each draw costs one exact decomposition"),
    "max_k": Bound(1, 10_000, "no network here has more blocks"),
    "max_swaps": Bound(1, 10_000, "no network here has more blocks"),
    "max_exhaustive": Bound(0, 24, "2^24 sub-networks are 16.8 million evaluations"),
    "chunk": Bound(1, 100_000, "a sweep has at most 100,000 configurations"),
    "epochs": Bound(1, 100_000, "He et al. trained for 164 epochs"),
    "workers": Bound(0, 256, "each worker is a process"),
    "active_blocks": Bound(1, 10_000, "no network here has more blocks"),
    "window": Bound(2, 1 << 20, "a window is one sequence of the model's context"),
    "num_blocks": Bound(0, 10_000, "a network of 2,000 layers has 1,000 blocks"),
    "num_classes": Bound(1, 100_000, "ImageNet-21k has 21,841 classes"),
    "in_channels": Bound(1, 64, "images have a handful of channels"),
}

#: The largest results table (CSV) read: a sweep's 100,000 rows take about 20 MB.
MAX_CSV_BYTES = 1 << 30
#: The largest text file read for ``text:PATH``: it is tokenised whole in memory, a few dozen
#: bytes per token (WikiText-2's test split is 1.3 MB).
MAX_TEXT_BYTES = 64 << 20


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_count(name: str, value: object, what: str | None = None) -> int:
    """``value`` as a whole number within ``BOUNDS[name]``, or a one-line ValueError that says
    the range; ``what`` names it in the message (default: the option, ``--name``)."""
    bound = BOUNDS[name]
    label = what or _option(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{label} must be a whole number, got {str(value)[:40]!r}")
    if not bound.lo <= value <= bound.hi:
        shown = str(value) if len(str(value)) <= 24 else f"{str(value)[:20]}..."
        raise ValueError(
            f"{label} must be from {bound.lo:,} to {bound.hi:,} ({bound.why}), got {shown}"
        )
    return value


def check_finite(value: float, what: str) -> float:
    """``value``, refused in one line where it is NaN or infinite (a NaN passes every range)."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def regular_file_size(path: Path, what: str, max_bytes: int) -> int:
    """The size of ``path``, checked by ``stat`` alone before anything opens it: a regular file
    no larger than ``max_bytes`` (a FIFO would block the reader, a device such as /dev/zero
    never ends, a huge file would fill memory).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a FIFO, a device or socket, or too large; one line naming it.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise ValueError(f"{path} is {kind}, not a {what} file; give a regular file")
    if st.st_size > max_bytes:
        raise ValueError(
            f"{path} is {_size(st.st_size)}, more than the {_size(max_bytes)} a {what} file may be"
        )
    return st.st_size


def _size(n: int) -> str:
    if n < 1 << 20:
        return f"{n:,} bytes"
    if n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    return f"{n / 2**30:.1f} GiB" if n >= 1 << 30 else f"{n / 2**20:.1f} MiB"
