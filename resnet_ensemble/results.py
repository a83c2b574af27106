"""Results tables: the one contract for every table the toolkit writes, and how it is written.

Holds:
- ``TABLES`` / ``TableSpec``: each kind of table (sweep, paths, gradients, subnetworks, training
  history, training, and the depth series' depth and depth_k) with its columns: those a reader
  needs, and, where the library fixes them, all of them in order
- ``SweepKind`` / ``SweepMetric``: the closed sets of sweeps and of the metrics a sweep's value
  column is named after; ``sweep_metric`` finds that column, ``chance_level`` what guessing
  would score in it
- ``sweep_rows``: the one reader of a sweep table: its baseline row, the other rows, and
  ``downsampling`` as a boolean (``is_baseline``, ``as_flags`` for frames read otherwise)
- ``write_table``: a finished table and its sidecar (provenance and the table's kind), each
  written atomically; the only other writer of sidecars is ``ResultsTable``
- ``table_kind``: which kind a table is, from its sidecar or its columns
- ``atomic_write_bytes`` / ``atomic_write_text``: write to a temporary file beside the target,
  fsync, then rename, so a reader never sees a half-written file and a kill loses nothing that
  was already there
- ``ResultsTable``: a CSV that grows one configuration at a time; each append rewrites the file
  atomically, so a sweep killed at any moment leaves a readable table holding every finished
  configuration; ``done`` tells a resumed sweep what to skip, and a row it cannot read whole
  (cut short by a crash, a full disk or a power cut) is dropped, recomputed and noted; a
  resume needs a readable sidecar that records the same experiment (``RESUME_KEYS``: model,
  weights, data folder and fingerprint, text file and window, settings)
- ``run_metadata``: what every sidecar records (versions, command line, time)
- ``check_writable``: refuse an unwritable output path before any work starts (the rest of
  what a command checks about its outputs, and their locks, is ``outputs.claim_outputs``)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .atomic import atomic_write, check_target, remove_stale_temporaries
from .bounds import MAX_CSV_BYTES, regular_file_size
from .names import METRIC_NAMES, MetricName, SweepKind, TableKind

__all__ = [
    "DEPTH_COLUMNS",
    "DYNAMICS_COLUMNS",
    "DEPTH_K_COLUMNS",
    "HISTORY_COLUMNS",
    "SWEEP_COLUMNS",
    "SWEEP_METRICS",
    "TABLES",
    "BASELINE",
    "ResultsTable",
    "SweepRows",
    "SweepKind",
    "SweepMetric",
    "TableKind",
    "TableSpec",
    "atomic_write_bytes",
    "atomic_write_text",
    "chance_level",
    "as_flags",
    "check_writable",
    "read_table",
    "run_metadata",
    "sidecar_path",
    "history_path",
    "is_baseline",
    "sweep_columns",
    "sweep_metric",
    "sweep_rows",
    "table_kind",
    "write_table",
]

#: The metrics a sweep can score (``names.MetricName``); its value column is named after it.
SweepMetric = MetricName
SWEEP_METRICS: tuple[str, ...] = METRIC_NAMES


@dataclass(frozen=True)
class TableSpec:
    """One kind of results table.

    ``required``: the columns every reader may rely on (a table lacking one is refused);
    ``any_of``: of these, at least one (the gradients table's measurements, a sweep's metric
    column); ``columns``: all columns in order, where the library fixes them (empty where they
    follow the analysis; a sweep's are those of the error metric, ``sweep_columns``).
    """

    kind: TableKind
    description: str
    required: tuple[str, ...]
    any_of: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    def missing(self, columns: Iterable[str]) -> list[str]:
        """The required columns that ``columns`` lacks (``a or b`` for an unmet ``any_of``)."""
        have = set(columns)
        lacking = [c for c in self.required if c not in have]
        if self.any_of and not have & set(self.any_of):
            lacking.append(" or ".join(self.any_of))
        return lacking


SWEEP_COLUMNS = [
    "model",
    "variant",
    "sweep",
    "config",
    "route",
    "deleted",
    "k",
    "sample",
    "seed",
    "kendall_tau",
    "deleted_name",
    "downsampling",
    "error",
    "wrong",
    "images",
]

#: What ``train`` writes beside a checkpoint (CKPT.history.csv), one row per epoch.
HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_error",
    "test_loss",
    "test_error",
    "seconds",
)


def history_path(out: str | os.PathLike[str]) -> Path:
    """``ckpt.pt`` -> ``ckpt.history.csv``, beside the checkpoint."""
    out = Path(out)
    return out.with_name(f"{out.stem}.history.csv")


def sweep_columns(metric: str = "error") -> list[str]:
    """The table's columns: ``SWEEP_COLUMNS`` for top-1 error; for another metric its value
    column is named after it and ``wrong`` becomes ``sum`` (the metric's sum over images)."""
    if metric == "error":
        return list(SWEEP_COLUMNS)
    return [{"error": metric, "wrong": "sum"}.get(c, c) for c in SWEEP_COLUMNS]


def sweep_metric(columns: Iterable[str], meta: Mapping[str, Any] | None = None) -> str | None:
    """The metric a sweep table holds, which names its value column: the sidecar's ``metric``
    where the table has that column, else the one metric column ``sweep_columns`` put there
    (``error``, ``top5``, ...); None when that is not clear."""
    have = list(columns)
    named = (meta or {}).get("metric")
    if isinstance(named, str) and named in have:
        return named
    found = [c for c in have if c in SWEEP_METRICS]
    return found[0] if len(found) == 1 else None


def chance_level(metric: str, num_classes: int | None) -> float | None:
    """What a uniform guess over ``num_classes`` classes scores in ``metric`` (error and top5
    as fractions, loss in nats, perplexity as the class count); None where it has none (kl, a
    custom metric) or the classes are unknown."""
    if not num_classes or num_classes < 2:
        return None
    guess = {
        "error": 1 - 1 / num_classes,
        "top5": 1 - min(5, num_classes) / num_classes,
        "loss": math.log(num_classes),
        "perplexity": float(num_classes),
    }
    return guess.get(metric)


#: The ``config`` of a sweep's full-network row (every block kept, in order).
BASELINE = "baseline"
_TRUE = {"true", "1", "1.0", "yes"}


def is_baseline(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a sweep table are the full network's (``config`` "baseline")."""
    return frame["config"].astype(str) == BASELINE


def as_flags(values: pd.Series) -> pd.Series:
    """A boolean column as read back from a CSV (True, "True", "1", or empty on the baseline
    row) as real booleans; anything else is False."""
    return values.map(lambda v: str(v).strip().lower() in _TRUE).astype(bool)


@dataclass(frozen=True)
class SweepRows:
    """A sweep table split the one way its readers need: the full network's row(s) and every
    other row (the deletions, k-deletions or reorderings), with ``downsampling`` a boolean."""

    baseline: pd.DataFrame
    deletions: pd.DataFrame

    def full(self, column: str = "error") -> float:
        """The full network's value in ``column`` (its first baseline row); NaN without one."""
        if column not in self.baseline or not len(self.baseline):
            return math.nan
        return float(pd.to_numeric(self.baseline[column], errors="coerce").iloc[0])


def sweep_rows(table: pd.DataFrame | str | Path) -> SweepRows:
    """Read a sweep table (a frame or a CSV path) as its baseline and its other rows; the one
    reader of sweep tables, so every consumer picks the baseline and reads ``downsampling`` the
    same way."""
    frame = read_table(table, ["config"]) if isinstance(table, (str, Path)) else table
    base = is_baseline(frame)
    deletions = frame[~base].copy()
    if "downsampling" in deletions:
        deletions["downsampling"] = as_flags(deletions["downsampling"])
    return SweepRows(frame[base].copy(), deletions)


#: The depth series (``depth_series``): its table of one row per analysed network, and ...
DEPTH_COLUMNS = (
    "network",
    "model",
    "variant",
    "blocks",
    "full_error",
    "single_mean",
    "single_median",
    "single_worst",
    "single_mean_over_full",
    "single_downsampling_mean",
    "single_other_mean",
    "chance_error",
    "effective_lo",
    "effective_hi",
    "effective_share",
    "effective_path_share",
    "paths95_lo",
    "paths95_hi",
    "paths95_share",
    "paths95_normal_lo",
    "paths95_normal_hi",
    "decay_per_block",
    "decay_r2",
    "decay_measure",
    "images",
    "checkpoint_sha256",
)
#: ... its table of one row per network and k, the k-deletion curves.
DEPTH_K_COLUMNS = ("network", "model", "variant", "blocks", "k", "k_over_n", "error", "error_sem")

#: The training dynamics (``dynamics``): one row per kept epoch of one training run.
DYNAMICS_COLUMNS = (
    "epoch",
    "model",
    "blocks",
    "full_error",
    "single_mean",
    "single_median",
    "single_worst",
    "single_mean_over_full",
    "single_median_over_full",
    "swaps_1_median",
    "swaps_3_median",
    "swaps_10_median",
    "swaps_1_mean",
    "swaps_3_mean",
    "swaps_10_mean",
    "swap_draws",
    "keep_stage_first",
    "effective_lo",
    "effective_hi",
    "effective_path_share",
    "exact_lo",
    "exact_hi",
    "exact_path_share",
    "paths95_lo",
    "paths95_hi",
    "decay_per_block",
    "decay_r2",
    "images",
    "swap_images",
    "gradient_images",
    "checkpoint_sha256",
)

TABLES: dict[str, TableSpec] = {
    spec.kind: spec
    for spec in (
        TableSpec(
            "sweep",
            "lesion sweep: one row per configuration (sweep single, multi or reorder)",
            ("variant", "sweep", "config", "deleted", "k", "kendall_tau", "downsampling"),
            any_of=SWEEP_METRICS,  # the value column, named after the metric
            columns=tuple(SWEEP_COLUMNS),
        ),
        TableSpec("paths", "paths of each length (paths)", ("length", "paths", "fraction")),
        TableSpec(
            "gradients",
            "gradient per path length (gradients)",
            ("length", "num_paths"),
            any_of=("exact_norm", "sampled_mean", "rms_single_path"),
        ),
        TableSpec(
            "effective_path_evaluation",
            "an effective-path network's test error read three ways (effective_paths_eval.py)",
            ("way", "error", "active_blocks"),
        ),
        TableSpec(
            "proxies",
            "cheap per-block measures, one row per block (block_proxies)",
            ("block", "name", "downsamples", "block_influence", "relative_update"),
        ),
        TableSpec(
            "gradient_samples",
            "one row per sampled single path of the gradient analysis (gradients)",
            ("batch", "length", "sample", "norm"),
        ),
        TableSpec(
            "subnetworks",
            "one row per evaluated sub-network (paths --exhaustive)",
            ("kept", "num_kept", "error"),
        ),
        TableSpec(
            "history",
            "a training run's history, one row per epoch (train)",
            ("epoch", "lr", "train_error", "test_error"),
            columns=HISTORY_COLUMNS,
        ),
        TableSpec(
            "training",
            "training histories side by side, one variant each (reproduce)",
            ("variant", "epoch", "test_error"),
            columns=("variant", "epoch", "train_error", "test_error"),
        ),
        TableSpec(
            "depth",
            "one row per analysed network (depth)",
            ("network", "variant", "blocks", "single_mean", "full_error"),
            columns=DEPTH_COLUMNS,
        ),
        TableSpec(
            "depth_k",
            "error against k deleted blocks, per network (depth)",
            ("network", "variant", "blocks", "k", "k_over_n", "error"),
            columns=DEPTH_K_COLUMNS,
        ),
        TableSpec(
            "dynamics",
            "one row per kept epoch of a training run (dynamics)",
            ("epoch", "full_error", "single_mean_over_full", "decay_per_block"),
            columns=DYNAMICS_COLUMNS,
        ),
    )
}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: temp file in the same folder, fsync, rename (see
    ``atomic.atomic_write``, the one implementation)."""
    atomic_write(path, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def _nearest_existing(folder: Path) -> Path:
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable(path: str | Path) -> Path:
    """Refuse, before any work, an output path that could not be written at the end, or must
    not be: one that is a folder, a symlink or anything else but a regular file (a FIFO, a
    device such as /dev/null: ``atomic.check_target``), whose folder (or an ancestor of it) is
    a file, or whose folder cannot be written.

    Creates nothing: a missing folder is made by the first write, so a run that fails before it
    has anything to write leaves no trace.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; give a file name")
    check_target(path)
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise ValueError(f"cannot write {path}: {existing} is a file, not a folder")
    try:  # os.access is not enough: root passes it on read-only mounts and in /proc
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(
            f"cannot write {path}: files cannot be created in {existing} "
            f"({err.strerror or err}); choose another output path"
        ) from None
    return path


def sidecar_path(table: str | Path) -> Path:
    """``results.csv`` -> ``results.json``."""
    return Path(table).with_suffix(".json")


def run_metadata() -> dict[str, Any]:
    """Versions, platform and command line: enough to say what produced a result."""
    import numpy
    import scipy
    import torch
    import torchvision

    prog = Path(sys.argv[0]).name
    if prog == "__main__.py":  # python -m resnet_ensemble (and torchrun -m resnet_ensemble)
        prog = f"python -m {Path(sys.argv[0]).parent.name}"
    return {
        "command": " ".join([prog, *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "resnet_ensemble": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "pandas": pd.__version__,
        },
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def read_sidecar(table: str | Path) -> dict[str, Any]:
    """A table's sidecar as a dict; empty where there is none or it is not a JSON object."""
    try:
        meta = json.loads(sidecar_path(table).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_sidecar(table: Path, metadata: Mapping[str, Any]) -> None:
    atomic_write_text(sidecar_path(table), json.dumps(dict(metadata), indent=2, default=str))


def write_table(
    path: str | Path, frame: pd.DataFrame, kind: str, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a finished table and its sidecar, each atomically, the sidecar first (so that a
    table never stands without one).

    The sidecar holds ``run_metadata()`` (versions, command line, time), then ``metadata``,
    then ``table``: the kind, which ``plot`` reads.

    Raises:
        ValueError: an unknown kind, or a frame lacking the kind's required columns.
    """
    if kind not in TABLES:
        raise ValueError(f"unknown table kind {kind!r}; known: {', '.join(TABLES)}")
    missing = TABLES[kind].missing(frame.columns)
    if missing:
        raise ValueError(f"a {kind} table needs the columns {missing}")
    path = Path(path)
    _write_sidecar(path, {**run_metadata(), **(metadata or {}), "table": kind})
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def table_kind(columns: Sequence[str], meta: Mapping[str, Any] | None = None) -> TableKind | None:
    """The kind of a table: its sidecar's ``table`` where that names a known kind, else the
    most specific kind whose required columns it has; None when none fits."""
    named = (meta or {}).get("table")
    if named in TABLES:
        return TABLES[named].kind
    fits = [spec for spec in TABLES.values() if not spec.missing(columns)]
    return max(fits, key=lambda spec: len(spec.required)).kind if fits else None


def read_table(path: str | Path, required: Iterable[str] = (), **read_csv: Any) -> pd.DataFrame:
    """Read a results CSV, checking that it has the columns a consumer needs; ``read_csv``
    goes to ``pandas.read_csv``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results table at {path}")
    regular_file_size(path, "results table", MAX_CSV_BYTES)  # a FIFO or device is never read
    try:
        df = pd.read_csv(path, **read_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV table ({type(err).__name__})") from None
    except (ValueError, OSError) as err:  # pandas' other complaints, named with the file
        raise ValueError(
            f"{path} is not a readable CSV table ({' '.join(str(err).split())[:120]})"
        ) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it has {list(df.columns)}")
    return df


#: Metadata that must be the same for a resumed table to continue the same experiment: the
#: model (its name, its file's SHA-256, or the SHA-256 of its weights where no file names it),
#: the data (name, split, number of items, the folder, ``data.data_fingerprint`` of the items,
#: a text file's SHA-256 and window) and the settings that decide the configurations and their
#: numbers. A key the run records and the sidecar lacks (or the reverse) is a difference too.
RESUME_KEYS = (
    "table",
    "model",
    "checkpoint_sha256",
    "weights_sha256",
    "dataset",
    "split",
    "images",
    "data_dir",
    "text_sha256",
    "window",
    "data_fingerprint",
    "sweep",
    "metric",
    "amp",
    "seed",
    "samples",
    "max_k",
    "max_swaps",
    "eligible",
    "keep_stage_first",
)

_ABSENT = object()

#: The keys of ``RESUME_KEYS`` that sidecars record only since issue 24. A sidecar without
#: ``data_fingerprint`` was written before them: what it lacks of these cannot be compared, so
#: such a table is resumed only when nothing is left to compute (``sweeps.check_rows``), and
#: then nothing is added to it.
LATER_KEYS = ("data_dir", "text_sha256", "window", "data_fingerprint", "weights_sha256")


def _check_same_experiment(path: Path, metadata: Mapping[str, Any]) -> list[str]:
    """Refuse to resume a table whose sidecar is missing or unreadable, or records another
    model, data or settings: the skipped configurations would silently come from a different
    experiment. Values are compared as JSON stores them (a tuple and a list are the same).

    Returns the ``LATER_KEYS`` that an older sidecar lacks (empty for a sidecar of this
    version): the caller must not add rows to such a table.
    """
    side = sidecar_path(path)
    try:
        earlier = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, ValueError) as err:
        problem = f"is unreadable ({type(err).__name__}: {str(err).splitlines()[0]})"
    else:
        problem = "" if isinstance(earlier, dict) else "is not a JSON object"
    if problem:
        raise ValueError(
            f"cannot resume {path}: its sidecar {side} {problem}, so nothing shows that its rows "
            "come from this model, data and settings; --overwrite to start again"
        )
    now = json.loads(json.dumps(dict(metadata), default=str))
    older = "data_fingerprint" not in earlier
    unproven: list[str] = []
    for key in RESUME_KEYS:
        old, new = earlier.get(key, _ABSENT), now.get(key, _ABSENT)
        if old == new:
            continue
        if older and old is _ABSENT and key in LATER_KEYS:
            unproven.append(key)
            continue
        made = f"it was made with {key}={old!r}"
        if old is _ABSENT:
            made = f"its sidecar records no {key}"
        has = f"this run has no {key}" if new is _ABSENT else f"this run has {key}={new!r}"
        if key == "weights_sha256" and "(random init)" in str(now.get("model")):
            has += " (a model with random weights is drawn anew by every run)"
        raise ValueError(
            f"cannot resume {path}: {made}, {has}; use the same model, data and settings, or "
            "--overwrite to start again"
        )
    return unproven


class ResultsTable:
    """A tidy CSV table with a JSON sidecar, grown one finished configuration at a time.

    ``key`` names the column that identifies a configuration (several rows may share it); a
    resumed run asks ``done`` and skips those. Each ``append`` rewrites the whole file
    atomically; tables here hold at most tens of thousands of rows, so this costs little and
    makes a torn row impossible.
    """

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str],
        *,
        key: str = "config",
        metadata: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.path = check_writable(path)
        self.columns = list(columns)
        self.key = key
        self._frame = pd.DataFrame(columns=self.columns)
        #: What resuming found wrong and did about it, one line each, for the caller to show.
        self.notes: list[str] = []
        #: The line of the file each row read on resuming came from (for messages about it).
        self.lines: list[int] = []
        #: What an older sidecar does not record (``LATER_KEYS``): no row may be added.
        self.unproven: list[str] = []
        if resume and self.path.exists():
            self._frame = self._read_whole_rows()
            self.unproven = _check_same_experiment(self.path, dict(metadata or {}))
        elif self.path.exists() and not resume:
            raise ValueError(
                f"{self.path} already exists; pass --resume to continue it, or --overwrite to "
                "start again"
            )
        self.metadata = dict(metadata or {})
        for stale in (self.path, sidecar_path(self.path)):  # left by a run killed mid-write
            remove_stale_temporaries(stale)
        # The sidecar is written with the first rows, not now: a run that fails before it has
        # any result (a model whose outputs are NaN, say) leaves no file behind.
        self._sidecar_written = resume and sidecar_path(self.path).exists()

    def _read_whole_rows(self) -> pd.DataFrame:
        """The table's rows that were written whole, as the text they were written as
        (re-inferred dtypes would turn an integer column with gaps into floats, "3" -> "3.0",
        when the table is written again).

        A row is whole when it has a field for every column and ends with its line break. A
        configuration with any other row is dropped entirely, so that it is recomputed, and
        ``notes`` says so: a row cut short by a crash, a full disk or a power cut (or one
        written by something other than this class) is never taken as done.
        """
        try:
            text = self.path.read_bytes().decode("utf-8")
            records = list(csv.reader(io.StringIO(text, newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ValueError(f"{self.path} is not a readable CSV table ({err})") from None
        if not records:
            raise ValueError(f"{self.path} is not a readable CSV table (it is empty)")
        header, rows = records[0], records[1:]
        missing = [c for c in self.columns if c not in header]
        if missing:
            raise ValueError(f"{self.path} lacks the columns {missing}; it has {header}")
        cut = bool(rows) and not text.endswith(("\n", "\r"))  # the last row never finished
        whole, broken, numbers = [], [], []
        for number, row in enumerate(rows, start=2):
            if len(row) == len(header) and not (cut and number == len(rows) + 1):
                whole.append(row)
                numbers.append(number)
            elif any(field.strip() for field in row):
                broken.append((number, row))
        frame = pd.DataFrame(whole, columns=header, dtype=object)[self.columns]
        frame.index = pd.Index(numbers, dtype=int)
        key_at = header.index(self.key)
        redo = {row[key_at] for _, row in broken if len(row) > key_at}
        if broken:
            frame = frame[~frame[self.key].isin(redo)]
            lines = ", ".join(str(number) for number, _ in broken)
            self.notes.append(
                f"{self.path}: dropped {len(broken)} incomplete row(s) (line {lines}), cut short "
                "by an interrupted write; their configurations will be computed again"
            )
        self.lines = [int(n) for n in frame.index]
        return frame.reset_index(drop=True).astype(object)

    @classmethod
    def overwrite(cls, path: str | Path) -> None:
        """Remove an earlier table and its sidecar, for a fresh start."""
        for p in (Path(path), sidecar_path(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    @property
    def done(self) -> set[str]:
        return set(self._frame[self.key].astype(str))

    @property
    def text(self) -> pd.DataFrame:
        """The table as the text of its CSV cells (every cell a string, "" when empty): what
        a resumed run compares with the rows it would write."""
        csv_text = self._frame.to_csv(index=False)
        return pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)

    @property
    def frame(self) -> pd.DataFrame:
        """The table as ``read_table`` would return it (types inferred from the CSV)."""
        return pd.read_csv(io.StringIO(self._frame.to_csv(index=False)))

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add the rows of finished configurations and persist the whole table atomically."""
        if not rows:
            return
        unknown = set().union(*(r.keys() for r in rows)) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}")
        # Object columns keep each value's own type, so the CSV text of a row does not depend
        # on which other rows share its chunk (an int column with a gap would become float).
        new = pd.DataFrame(
            [{c: r.get(c) for c in self.columns} for r in rows], columns=self.columns, dtype=object
        )
        frame = new if self._frame.empty else pd.concat([self._frame, new], ignore_index=True)
        if not self._sidecar_written:  # first, so that a table never exists without one
            self.write_metadata(complete=False)
        atomic_write_text(self.path, frame.to_csv(index=False))
        self._frame = frame
        # Then the sidecar again, so that its row count is what the CSV now holds: a reader
        # between the two writes sees fewer rows claimed than there are, never more.
        self.write_metadata(complete=False)

    def write_metadata(self, complete: bool, **extra: Any) -> None:
        """The sidecar: ``status`` "in progress" or "complete" (and ``complete``, the same as
        a boolean), and ``rows``, the rows the CSV holds."""
        self.metadata.update(extra)
        self.metadata["status"] = "complete" if complete else "in progress"
        self.metadata["complete"] = complete
        self.metadata["rows"] = len(self._frame)
        _write_sidecar(self.path, self.metadata)
        self._sidecar_written = True
