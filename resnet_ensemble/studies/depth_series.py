"""The depth series: the paper's claims as curves over the number of blocks.

The paper's claims are about a 54-block ResNet-110. With few blocks each block is a large
share of the ensemble and the binomial path counts sit close to the short paths, so a 9- or
15-block network can neither confirm nor refute them; a series of depths shows where they
start to hold. Each network of a series is analysed by ``ensemble-lesion reproduce --model
CKPT --out ROOT/NAME`` (single and k-block deletion, reordering, paths, gradients); this module
reads those folders and puts them side by side.

Holds:
- ``DEPTH_COLUMNS`` and ``DEPTH_K_COLUMNS``: the two tables of a series (the "depth" and
  "depth_k" results kinds)
- ``collect_series``: one row per network (full error, single-deletion mean / median / worst,
  effective range, single-path decay) and one row per (network, k) of the k-deletion curves
- ``read_analysis``: one table of an analysis folder and its sidecar, checked: its columns, a
  baseline row, errors from 0 to 1, a readable sidecar with a bounded ``num_blocks``
- ``write_series``: both tables with their sidecars, the figures and ``summary.md`` beside the
  paper's numbers at n = 54
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .. import paper, results
from ..bounds import MAX_CSV_BYTES, check_count, regular_file_size
from ..outputs import claim_outputs
from ..paths import summarize_paths
from ..results import (
    atomic_write_text,
    chance_level,
    sidecar_path,
    sweep_rows,
    write_table,
)

__all__ = [
    "DEPTH_COLUMNS",
    "DEPTH_K_COLUMNS",
    "collect_series",
    "read_analysis",
    "write_series",
]

# The tables' columns are the results contract's (``results.TABLES``), as lists for pandas.
DEPTH_COLUMNS = list(results.DEPTH_COLUMNS)
DEPTH_K_COLUMNS = list(results.DEPTH_K_COLUMNS)

#: The paper's numbers at its n (ResNet-110 on CIFAR-10), for the summary's last column.
PAPER_AT_54 = {
    "full_error": paper.full_error_text(),
    "single": "no noticeable change, except at downsampling blocks",
    "effective": paper.effective_text(),
    "paths95": paper.paths95_text(),
    "decay": "falls exponentially",
    "k": "rises smoothly with k (to about k = 20)",
    "stochastic_depth": "more robust than the ResNet",
    "effective_training": (
        f"{100 * paper.EFFECTIVE_TRAINING_ERROR:.2f}% ({paper.EFFECTIVE_TRAINING_K} of "
        f"{paper.BLOCKS} blocks per mini-batch), against {paper.full_error_text()}"
    ),
}


#: The columns each analysis table must have for the series to read it.
_ANALYSIS_COLUMNS = {
    "single_resnet": ("config", "error"),
    "multi_resnet": ("config", "error", "k"),
    "reorder_resnet": ("config", "error", "k"),
}


def _strict_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of ``path``: {} when there is none, else a JSON object, or one line naming it
    (a sidecar that says nothing readable would leave the series without block counts)."""
    side = sidecar_path(path)
    if not side.exists():
        return {}
    regular_file_size(side, "sidecar", MAX_CSV_BYTES)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        why = " ".join(str(err).split())[:120]
        raise ValueError(f"{side} is not a readable JSON sidecar ({why})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{side} is not a JSON object but a {type(meta).__name__}")
    if meta.get("num_blocks") is not None:
        check_count("num_blocks", meta["num_blocks"], f"{side}: num_blocks")
    return meta


def read_analysis(
    folder: Path, name: str, columns: tuple[str, ...] = ()
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """``folder/tables/NAME.csv`` and its sidecar, or (None, {}) when it is not there; a table
    that lacks its columns (or the ``columns`` the caller needs), or whose errors are not
    fractions, is refused naming the file."""
    path = folder / "tables" / f"{name}.csv"
    if not path.exists():
        return None, {}
    frame = results.read_table(path, (*_ANALYSIS_COLUMNS.get(name, ()), *columns))
    if "error" in frame.columns:
        from ..viz.plots import check_values  # here: plots imports seaborn

        check_values(path, "subnetworks", frame[["error"]], {})  # errors are fractions, 0..1
    if "config" in frame.columns and not (frame["config"] == "baseline").any():
        raise ValueError(f"{path} has no baseline row (config = baseline): the full network")
    return frame, _strict_sidecar(path)


def _one_network(folder: Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """The row of one reproduce folder and its k-deletion curve; None without a single-block
    sweep or a gradient analysis (a network analysed in parts has NaN for the rest)."""
    single, meta = read_analysis(folder, "single_resnet", ("downsampling",))
    grads, gmeta = read_analysis(folder, "gradients")
    if single is None and grads is None:
        return None
    multi, _ = read_analysis(folder, "multi_resnet")
    meta = meta or gmeta
    n = int(meta.get("num_blocks") or 0)
    if single is None:  # the columns, no rows: every deletion statistic is NaN
        single = pd.DataFrame({"config": ["baseline"], "error": [math.nan], "downsampling": [""]})
    split = sweep_rows(single)
    full, deleted = split.full("error"), split.deletions
    down = deleted["downsampling"]
    classes = meta.get("num_classes")
    paths = summarize_paths(n, 0.95)
    decay = gmeta.get("single_path_decay") or {}
    row = {
        "network": folder.name,
        "model": meta.get("model"),
        "variant": meta.get("variant"),
        "blocks": n,
        "full_error": full,
        "single_mean": float(deleted["error"].mean()),
        "single_median": float(deleted["error"].median()),
        "single_worst": float(deleted["error"].max()),
        "single_mean_over_full": float(deleted["error"].mean()) / full if full > 0 else math.nan,
        "single_downsampling_mean": float(deleted.loc[down, "error"].mean()),
        "single_other_mean": float(deleted.loc[~down, "error"].mean()),
        "chance_error": chance_level("error", classes) or math.nan,
        "effective_lo": gmeta.get("effective_lo", math.nan),
        "effective_hi": gmeta.get("effective_hi", math.nan),
        "effective_share": gmeta.get("effective_share", math.nan),
        "effective_path_share": gmeta.get("effective_path_share", math.nan),
        "paths95_lo": paths.lo,
        "paths95_hi": paths.hi,
        "paths95_share": paths.fraction,
        "paths95_normal_lo": paths.normal_lo,
        "paths95_normal_hi": paths.normal_hi,
        "decay_per_block": decay.get("factor_per_block", math.nan),
        "decay_r2": decay.get("r2", math.nan),
        "decay_measure": decay.get("measure"),
        "images": meta.get("images"),
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
    }
    curve = pd.DataFrame(columns=DEPTH_K_COLUMNS)
    if multi is not None and n:
        by_k = multi.groupby("k")["error"]
        curve = by_k.agg(error="mean", error_sem="sem").reset_index()
        curve.insert(0, "network", folder.name)
        curve.insert(1, "model", row["model"])
        curve.insert(2, "variant", row["variant"])
        curve.insert(3, "blocks", n)
        curve["k_over_n"] = curve["k"] / n
        curve = curve[DEPTH_K_COLUMNS]
    return row, curve


def collect_series(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every reproduce folder under ``root`` holding a single-block sweep or a gradient analysis.

    Returns:
        (one row per network, sorted by variant and blocks; one row per network and k).
    """
    rows, curves = [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        found = _one_network(folder)
        if found is not None:
            rows.append(found[0])
            curves.append(found[1])
    if not rows:
        raise ValueError(
            f"no analysed networks under {root}: expected folders written by "
            "`ensemble-lesion reproduce --model CKPT --out ROOT/NAME`"
        )
    table = pd.DataFrame(rows, columns=DEPTH_COLUMNS).sort_values(["variant", "blocks"])
    curve = pd.concat([c for c in curves if not c.empty] or [pd.DataFrame(columns=DEPTH_K_COLUMNS)])
    return table.reset_index(drop=True), curve.reset_index(drop=True)


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _whole(x: float) -> str:
    """A length read back from a table whose NaNs made it float: ``11.0`` -> ``11``."""
    return "n/a" if math.isnan(float(x)) else str(int(x))


def _ratio(x: float) -> str:
    return "n/a" if math.isnan(float(x)) else f"{float(x):.2f}"


def _trained_variants_at(table: pd.DataFrame, deep: pd.Series) -> list[str]:
    """The paper's rows on training variants (stochastic depth, effective-path training), for
    the networks of those variants as deep as the deepest ResNet ``deep``."""
    same_depth = table[table["blocks"] == deep["blocks"]]
    lines = []
    for _, sd in same_depth[same_depth["variant"] == "stochastic depth"].iterrows():
        lines.append(
            f"| stochastic depth, one block deleted | {PAPER_AT_54['stochastic_depth']} | "
            f"{sd['network']}: mean {_pct(sd['single_mean'])} (× "
            f"{_ratio(sd['single_mean_over_full'])} of its full {_pct(sd['full_error'])}; "
            f"{deep['network']}: × {_ratio(deep['single_mean_over_full'])}), worst "
            f"{_pct(sd['single_worst'])} |"
        )
    for _, ep in same_depth[same_depth["variant"] == "effective paths"].iterrows():
        lines.append(
            f"| effective-path training, full error | {PAPER_AT_54['effective_training']} | "
            f"{ep['network']}: {_pct(ep['full_error'])}, against {_pct(deep['full_error'])} "
            f"for {deep['network']} |"
        )
    return lines


def _summary(table: pd.DataFrame, command: str) -> str:
    """The series as a Markdown table, and the deepest ResNet beside the paper's numbers."""
    one_depth = table["blocks"].nunique() == 1
    lines = [
        "# The networks side by side" if one_depth else "# The depth series",
        "",
        f"Made by `{command}` from the network folders beside this file"
        + (f", every one with {int(table['blocks'].iloc[0])} blocks." if one_depth else "."),
        "",
        "| network | variant | blocks | full error | one block deleted: mean / median / worst "
        "| mean ÷ full | downsampling / other (mean) | effective range (paths) | 95% of paths "
        "| single-path norm per block |",
        "|---|---|---:|---:|---|---:|---|---|---|---|",
    ]
    for r in table.itertuples():
        eff = (
            f"{int(r.effective_lo)}–{int(r.effective_hi)} ({100 * r.effective_path_share:.3g}%)"
            if not math.isnan(float(r.effective_lo))
            else "n/a"
        )
        decay = (
            f"× {r.decay_per_block:.3g} (R² {r.decay_r2:.2f})"
            if not math.isnan(float(r.decay_per_block))
            else "n/a"
        )
        lines.append(
            f"| {r.network} | {r.variant} | {r.blocks} | {_pct(r.full_error)} | "
            f"{_pct(r.single_mean)} / {_pct(r.single_median)} / {_pct(r.single_worst)} | "
            f"{_ratio(r.single_mean_over_full)} | {_pct(r.single_downsampling_mean)} / "
            f"{_pct(r.single_other_mean)} | {eff} | {r.paths95_lo}–{r.paths95_hi} "
            f"({100 * r.paths95_share:.1f}%) | {decay} |"
        )
    resnets = table[table["variant"] == "residual"]
    lines += ["", f"## Against the paper at n = {paper.BLOCKS}", ""]
    if resnets.empty or int(resnets["blocks"].max()) != paper.BLOCKS:
        have = ", ".join(str(b) for b in sorted(resnets["blocks"].unique())) or "none"
        lines.append(
            f"No {paper.BLOCKS}-block ResNet is analysed yet (ResNet blocks here: {have}); the "
            "paper's numbers are compared with the deepest one, and read as a trend over depth."
        )
    if not resnets.empty:
        deep = resnets.loc[resnets["blocks"].idxmax()]
        lines += [
            "",
            f"| finding | paper (ResNet-110, {paper.BLOCKS} blocks, CIFAR-10) | here "
            f"({deep['network']}, {deep['blocks']} blocks) |",
            "|---|---|---|",
            f"| full-network error | {PAPER_AT_54['full_error']} | {_pct(deep['full_error'])} |",
            f"| one block deleted | {PAPER_AT_54['single']} | mean {_pct(deep['single_mean'])} "
            f"(× {_ratio(deep['single_mean_over_full'])} of full), median "
            f"{_pct(deep['single_median'])}, worst {_pct(deep['single_worst'])}; downsampling "
            f"{_pct(deep['single_downsampling_mean'])}, others "
            f"{_pct(deep['single_other_mean'])} |",
            f"| 95% of paths | {PAPER_AT_54['paths95']} | {deep['paths95_normal_lo']}–"
            f"{deep['paths95_normal_hi']} (mean ± 1.96 sd); {deep['paths95_lo']}–"
            f"{deep['paths95_hi']} shortest ({100 * deep['paths95_share']:.1f}%) |",
            f"| effective range | {PAPER_AT_54['effective']} | "
            f"{_whole(deep['effective_lo'])}–{_whole(deep['effective_hi'])} "
            f"({100 * float(deep['effective_path_share']):.3g}% of paths) |",
            f"| single-path gradient against length | {PAPER_AT_54['decay']} | "
            f"× {float(deep['decay_per_block']):.3g} per block (R² "
            f"{float(deep['decay_r2']):.2f}) |",
        ]
        lines += _trained_variants_at(table, deep)
    return "\n".join(lines) + "\n"


def write_series(
    root: str | Path, out: str | Path | None = None, *, command: str = "", overwrite: bool = False
) -> list[Path]:
    """Collect the series under ``root``; write ``depth.csv`` and ``depth_k.csv`` (with
    sidecars) and ``summary.md`` into ``out`` (default ``root``), and the figures into
    ``out/figures``. Returns the files written.

    Outputs that exist are refused without ``overwrite``; they are locked while written
    (``outputs.claim_outputs``)."""
    from ..viz.plots import plot_all  # seaborn is slow to import; only this step draws

    table, curve = collect_series(root)  # refuses before anything is created
    out = Path(out) if out is not None else Path(root)
    tables = [out / "depth.csv", out / "depth_k.csv"]
    summary = out / "summary.md"
    outputs = [*tables, *map(sidecar_path, tables), summary]
    with claim_outputs(outputs, overwrite=overwrite, folders=[out / "figures"]):
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for path, frame, kind in zip(tables, (table, curve), ("depth", "depth_k"), strict=True):
            write_table(path, frame, kind, {"root": str(root), "networks": len(table)})
            written.append(path)
        atomic_write_text(summary, _summary(table, command))
        written.append(summary)
        written += [Path(p) for p in plot_all(written[:2], out / "figures")]
    return written
