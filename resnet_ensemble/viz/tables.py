"""Reading results tables for the figures: a table's kind (``results.TABLES``) from its sidecar or
columns, its plotted values checked against their ranges, and folders searched for tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..results import (
    TABLES,
    TableKind,
    read_sidecar,
    read_table,
    sweep_metric,
    table_kind,
)

Format = Literal["png", "pdf", "svg"]
# The columns a figure needs from each kind of table (``results.TABLES``); others are drawn
# when present.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {kind: spec.required for kind, spec in TABLES.items()}


# ----------------------------------------------------------------------------------------------
# Reading tables


@dataclass
class LoadedTable:
    """One results table: where it came from, its kind, its rows and its sidecar."""

    path: Path
    kind: TableKind
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def _missing(kind: str, columns: Sequence[str]) -> list[str]:
    return TABLES[kind].missing(columns)


def _kinds_text() -> str:
    kinds = list(TABLES)
    return f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def load_table(path: str | Path) -> LoadedTable:
    """Read one results CSV and tell its kind: the sidecar's ``table`` key where it names a
    known kind, else the kind whose required columns the table has.

    Raises:
        ValueError: one line naming the file, the columns it lacks and the kinds it could be.
    """
    path = Path(path)
    frame = read_table(path)
    meta = read_sidecar(path)
    columns = list(frame.columns)
    named = meta.get("table")
    if named in TABLES:
        missing = _missing(named, columns)
        if missing:
            raise ValueError(
                f"{path}: a {named} table (per its sidecar) but it lacks the columns {missing}"
            )
    kind = table_kind(columns, meta)  # the most specific kind wins, should two ever fit
    if kind is not None:
        check_values(path, kind, frame, meta)
        return LoadedTable(path, kind, frame, meta)
    overlap = {k: len(set(TABLE_COLUMNS[k]) & set(columns)) for k in TABLE_COLUMNS}
    best = max(overlap.values())
    if best == 0:
        raise ValueError(
            f"{path}: not a results table the plots can read: it has the columns {columns}, "
            f"none of those of a {_kinds_text()} table"
        )
    near = [k for k in TABLE_COLUMNS if overlap[k] == best]
    lacks = "; ".join(f"as a {k} table it lacks {_missing(k, columns)}" for k in near)
    raise ValueError(f"{path}: missing columns: {lacks} (it could be a {' or '.join(near)} table)")


#: What a plotted measurement may hold, per kind of table: (low, high, NaN allowed). A value
#: outside it (a negative or infinite error, text where a number belongs) would be drawn
#: without a word, so the table is refused instead, naming the lines.
_UNIT = (0.0, 1.0, False)
_NONNEGATIVE = (0.0, math.inf, False)
_MEASURED = (0.0, math.inf, True)  # NaN: not measured (a skipped estimator)
_VALUE_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "paths": {"paths": _NONNEGATIVE, "fraction": _UNIT},
    "gradients": {c: _MEASURED for c in ("exact_norm", "sampled_mean", "rms_single_path")},
    "subnetworks": {"error": _UNIT},
    "history": {"train_error": (0.0, 1.0, True), "test_error": (0.0, 1.0, True)},
    "training": {"train_error": (0.0, 1.0, True), "test_error": (0.0, 1.0, True)},
    # A network analysed only for its gradients has no deletion errors: NaN.
    "depth": {"full_error": (0.0, 1.0, True), "single_mean": (0.0, 1.0, True)},
    "depth_k": {"error": _UNIT},
    "dynamics": {"full_error": (0.0, 1.0, True)},
}
#: A sweep's value column, by its metric: error rates are fractions, losses non-negative,
#: perplexities at least 1.
_METRIC_RANGES = {
    "error": _UNIT,
    "top5": _UNIT,
    "loss": _NONNEGATIVE,
    "kl": _NONNEGATIVE,
    "perplexity": (1.0, math.inf, False),
}


class BadValues(ValueError):
    """A table of a known kind whose measurements cannot be drawn: refused, never skipped."""


def _range_text(lo: float, hi: float) -> str:
    return f"from {lo:g} to {hi:g}" if math.isfinite(hi) else f"a finite number of at least {lo:g}"


def check_values(path: Path, kind: str, frame: pd.DataFrame, meta: Mapping[str, Any]) -> None:
    """Refuse a table whose plotted measurements are not numbers in their range (an infinite,
    negative or non-numeric error), naming the column and the CSV lines (the header is line 1).

    Raises:
        ValueError: one line naming the file, the column, the allowed range and the lines.
    """
    ranges = dict(_VALUE_RANGES.get(kind, {}))
    if kind == "sweep":
        metric = sweep_metric(frame.columns, meta)
        if metric in _METRIC_RANGES:
            ranges[metric] = _METRIC_RANGES[metric]
    for column, (lo, hi, nan_ok) in ranges.items():
        if column not in frame.columns:
            continue
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = ~values.between(lo, hi) & ~(values.isna() & raw.isna() & nan_ok)
        if not bad.any():
            continue
        lines = [int(i) + 2 for i in frame.index[bad.to_numpy()][:5]]
        shown = ", ".join(str(raw[bad].iloc[i])[:12] for i in range(min(3, int(bad.sum()))))
        more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        several = bad.sum() > 1
        raise BadValues(
            f"{path}: {column} must be {_range_text(lo, hi)}, but line{'s' if several else ''} "
            f"{', '.join(map(str, lines))}{more} hold{'' if several else 's'} {shown}; fix or "
            "remove those rows"
        )


def load_tables(paths: Sequence[str | Path]) -> list[LoadedTable]:
    """``load_table`` for every path, refusing the first bad one."""
    return [load_table(p) for p in paths]


def find_tables(places: Sequence[str | Path]) -> list[Path]:
    """The CSV files among ``places``: a file as given, a folder searched through (sorted,
    hidden files and folders left out)."""
    found: list[Path] = []
    for place in map(Path, places):
        if not place.is_dir():
            found.append(place)
            continue
        found += sorted(
            p
            for p in place.rglob("*.csv")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(place).parts)
        )
    return list(dict.fromkeys(found))


def history_as_training(table: LoadedTable) -> pd.DataFrame:
    """A training run's history (``train``'s CKPT.history.csv) as a training table: its variant
    is the sidecar's, else the checkpoint's name."""
    name = table.path.name.removesuffix(".csv").removesuffix(".history")
    variant = str(table.meta.get("variant") or name)
    columns = [c for c in TABLES["training"].columns if c != "variant" and c in table.frame]
    return table.frame[columns].assign(variant=variant)[["variant", *columns]]


def on_dataset(labels: pd.Series, frame: pd.DataFrame) -> pd.Series:
    """``labels`` (one per row of ``frame``), each with " on DATASET" added where ``frame``
    holds runs on several datasets (its ``dataset`` column), so that runs on different data
    are never drawn as one; a label that already says so is kept."""
    labels = labels.astype(str)
    if "dataset" not in frame:
        return labels
    names = frame["dataset"].fillna("").astype(str).replace("", "unnamed data")
    if names.nunique() < 2:
        return labels
    on = " on " + names
    return labels.where([o in label for label, o in zip(labels, on, strict=True)], labels + on)
