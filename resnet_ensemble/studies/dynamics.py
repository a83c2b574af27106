"""Training dynamics: the paper's measures at every kept epoch of one training run.

The paper measured its trained network only. Analysing the snapshots of one run (its
initialisation, some epochs on the way and the end) shows when the ensemble behaviour appears:
robustness to deleting and reordering blocks, and the gradient's concentration on short paths.
Each epoch is a folder ``ROOT/eN`` (N the epoch) holding the tables of ``sweep single``,
``sweep reorder`` and ``gradients`` for that epoch's checkpoint, as
``experiments/training_dynamics.sh`` writes them; this module reads those folders.

Holds:
- ``SWAP_COUNTS``: the numbers of swaps whose median error the table keeps (1, 3 and 10)
- ``collect_dynamics``: one row per epoch (the "dynamics" results kind)
- ``write_dynamics``: the table with its sidecar, its figure and ``summary.md``
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .. import results
from ..outputs import claim_outputs
from ..paths import summarize_paths
from ..results import (
    atomic_write_text,
    is_baseline,
    sidecar_path,
    sweep_rows,
    write_table,
)
from .depth_series import read_analysis

__all__ = ["DYNAMICS_COLUMNS", "SWAP_COUNTS", "collect_dynamics", "write_dynamics"]

DYNAMICS_COLUMNS = list(results.DYNAMICS_COLUMNS)
SWAP_COUNTS = (1, 3, 10)
_EPOCH_FOLDER = re.compile(r"e(\d+)")


def _swap_statistics(reorder: pd.DataFrame | None) -> dict[str, Any]:
    """Median and mean error after each of ``SWAP_COUNTS`` swaps, and the fewest draws behind
    any of them (NaN where a count was not swept)."""
    row: dict[str, Any] = {}
    draws = []
    for k in SWAP_COUNTS:
        errors = (
            reorder.loc[~is_baseline(reorder) & (reorder["k"] == k), "error"]
            if reorder is not None
            else pd.Series(dtype=float)
        )
        row[f"swaps_{k}_median"] = float(errors.median()) if len(errors) else math.nan
        row[f"swaps_{k}_mean"] = float(errors.mean()) if len(errors) else math.nan
        if len(errors):
            draws.append(len(errors))
    row["swap_draws"] = min(draws) if draws else math.nan
    return row


def _epoch_row(folder: Path, epoch: int) -> dict[str, Any] | None:
    single, smeta = read_analysis(folder, "single_resnet")
    reorder, rmeta = read_analysis(folder, "reorder_resnet")
    grads, gmeta = read_analysis(folder, "gradients")
    if single is None and reorder is None and grads is None:
        return None
    meta = smeta or rmeta or gmeta
    n = int(meta.get("num_blocks") or 0)
    full = math.nan
    for table in (single, reorder):
        if table is not None and is_baseline(table).any():
            full = sweep_rows(table).full("error")
            break
    no_rows = pd.Series(dtype=float)
    deleted = sweep_rows(single).deletions["error"] if single is not None else no_rows
    mean = float(deleted.mean()) if len(deleted) else math.nan
    median = float(deleted.median()) if len(deleted) else math.nan
    ranges = gmeta.get("ranges") or {}
    exact = ranges.get("exact_95") or {}
    decay = gmeta.get("single_path_decay") or {}
    paths = summarize_paths(n, 0.95) if n else None
    return {
        "epoch": epoch,
        "model": meta.get("model"),
        "blocks": n,
        "full_error": full,
        "single_mean": mean,
        "single_median": median,
        "single_worst": float(deleted.max()) if len(deleted) else math.nan,
        "single_mean_over_full": mean / full if full > 0 else math.nan,
        "single_median_over_full": median / full if full > 0 else math.nan,
        **_swap_statistics(reorder),
        "keep_stage_first": rmeta.get("keep_stage_first"),
        "effective_lo": gmeta.get("effective_lo", math.nan),
        "effective_hi": gmeta.get("effective_hi", math.nan),
        "effective_path_share": gmeta.get("effective_path_share", math.nan),
        "exact_lo": exact.get("lo", math.nan),
        "exact_hi": exact.get("hi", math.nan),
        "exact_path_share": exact.get("path_share", math.nan),
        "paths95_lo": paths.lo if paths else math.nan,
        "paths95_hi": paths.hi if paths else math.nan,
        "decay_per_block": decay.get("factor_per_block", math.nan),
        "decay_r2": decay.get("r2", math.nan),
        "images": smeta.get("images"),
        "swap_images": rmeta.get("images"),
        "gradient_images": gmeta.get("images"),
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
    }


def collect_dynamics(root: str | Path) -> pd.DataFrame:
    """One row per epoch folder ``eN`` under ``root`` that holds any of the three analyses,
    sorted by epoch.

    Raises:
        ValueError: no such folder, or folders of different networks (block counts).
    """
    rows = []
    for folder in sorted(Path(root).iterdir()):
        match = _EPOCH_FOLDER.fullmatch(folder.name)
        if folder.is_dir() and match:
            row = _epoch_row(folder, int(match.group(1)))
            if row is not None:
                rows.append(row)
    if not rows:
        raise ValueError(
            f"no analysed epochs under {root}: expected folders e0, e5, ... holding the tables of "
            "sweep single, sweep reorder or gradients (experiments/training_dynamics.sh)"
        )
    table = pd.DataFrame(rows, columns=DYNAMICS_COLUMNS).sort_values("epoch")
    if table["blocks"].nunique() > 1:
        raise ValueError(
            f"the epochs under {root} are of networks with different block counts "
            f"({sorted(table['blocks'].unique())}): one training run per folder"
        )
    return table.reset_index(drop=True)


def _pct(x: Any) -> str:
    return "n/a" if x is None or math.isnan(float(x)) else f"{100 * float(x):.2f}%"


def _num(x: Any, fmt: str = ".2f") -> str:
    return "n/a" if x is None or math.isnan(float(x)) else format(float(x), fmt)


def _span(lo: Any, hi: Any) -> str:
    return "n/a" if math.isnan(float(lo)) else f"{int(lo)}–{int(hi)}"


def _summary(table: pd.DataFrame, command: str) -> str:
    swaps = " / ".join(str(k) for k in SWAP_COUNTS)
    lines = [
        "# Training dynamics",
        "",
        f"Made by `{command}` from the epoch folders beside this file: one training run, the "
        "paper's measures at every kept epoch.",
        "",
        f"| epoch | full error | one block deleted: mean / median ÷ full | median error after "
        f"{swaps} swaps | effective range, paper's measure (exact) | single-path norm per "
        "block |",
        "|---:|---:|---|---|---|---|",
    ]
    for r in table.itertuples():
        medians = " / ".join(_pct(getattr(r, f"swaps_{k}_median")) for k in SWAP_COUNTS)
        lines.append(
            f"| {r.epoch} | {_pct(r.full_error)} | {_num(r.single_mean_over_full)} / "
            f"{_num(r.single_median_over_full)} | {medians} | "
            f"{_span(r.effective_lo, r.effective_hi)} ({_span(r.exact_lo, r.exact_hi)}) | "
            f"× {_num(r.decay_per_block, '.3g')} (R² {_num(r.decay_r2)}) |"
        )
    first = table.iloc[0]
    paths95 = _span(first["paths95_lo"], first["paths95_hi"])
    lines += [
        "",
        f"{int(first['blocks'])} blocks; 95% of all paths are {paths95} blocks long. Swaps "
        f"follow the authors' protocol (keep_stage_first = {first['keep_stage_first']}), at "
        f"least {_num(table['swap_draws'].min(), '.0f')} draws per swap count.",
    ]
    return "\n".join(lines) + "\n"


def write_dynamics(
    root: str | Path, out: str | Path | None = None, *, command: str = "", overwrite: bool = False
) -> list[Path]:
    """Collect the epochs under ``root``; write ``dynamics.csv`` (with its sidecar) and
    ``summary.md`` into ``out`` (default ``root``), and the figure into ``out/figures``.
    Returns the files written.

    Outputs that exist are refused without ``overwrite``; they are locked while written
    (``outputs.claim_outputs``)."""
    from ..viz.plots import plot_all  # seaborn is slow to import; only this step draws

    table = collect_dynamics(root)  # refuses before anything is created
    out = Path(out) if out is not None else Path(root)
    path, summary = out / "dynamics.csv", out / "summary.md"
    with claim_outputs(
        [path, sidecar_path(path), summary], overwrite=overwrite, folders=[out / "figures"]
    ):
        out.mkdir(parents=True, exist_ok=True)
        write_table(path, table, "dynamics", {"root": str(root), "epochs": len(table)})
        atomic_write_text(summary, _summary(table, command))
        return [path, summary, *map(Path, plot_all([path], out / "figures"))]
