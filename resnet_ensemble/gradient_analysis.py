"""The paper's gradient analysis (Fig. 6) for one model and batch, as a table and a report.

Holds:
- ``GradientAnalysis``: the per-length table (the "gradients" results kind), the effective path
  ranges, and what was measured on
- ``analyze_gradients``: exact decomposition, the paper's sampled estimator and the sign
  estimator on one batch, merged per length
- ``single_path_decay``: the factor by which the single-path norm falls per block of length
- ``write_gradient_report``: a short Markdown report with the table, the effective range and the
  comparison with the paper's numbers
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .gradients import (
    effective_path_range,
    path_length_gradients,
    path_length_norms,
    sample_path_gradients,
    sign_estimator,
    summarize_sampled,
)
from .paths import summarize_paths
from .results import atomic_write_text

__all__ = [
    "GRADIENT_COLUMNS",
    "RANGE_LABELS",
    "GradientAnalysis",
    "analyze_gradients",
    "single_path_decay",
    "write_gradient_report",
]

GRADIENT_COLUMNS = [
    "model",
    "length",
    "num_paths",
    "exact_norm",
    "exact_share",
    "sampled_mean",
    "sampled_std",
    "sampled_sem",
    "samples",
    "sampled_total",
    "sampled_share",
    "rms_single_path",
    "in_effective_range",
]

PAPER = {"effective_lo": 5, "effective_hi": 17, "effective_path_share": 0.0045, "n": 54}


@dataclass
class GradientAnalysis:
    table: pd.DataFrame
    n: int
    images: int
    ranges: dict[str, dict[str, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def effective(self) -> dict[str, float]:
        """The headline range: 95% of the paper's measure (sampled totals) where sampled, else
        of the exact per-length norms."""
        return self.ranges.get("sampled_95") or self.ranges["exact_95"]


def _range_dict(r: Any) -> dict[str, float]:
    return {"lo": r.lo, "hi": r.hi, "gradient_share": r.gradient_share, "path_share": r.path_share}


def analyze_gradients(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    model_name: str = "model",
    samples_per_length: int = 1000,
    sign_draws: int = 16,
    seed: int = 0,
) -> GradientAnalysis:
    """Exact per-length gradients, the paper's sampled single-path norms and the sign
    estimator's root-mean-square single-path norms, all on the same batch.

    Args:
        samples_per_length: the paper used 1,000; 0 skips the sampled estimator.
        sign_draws: 0 skips the sign estimator; else at least 2 (its standard error).

    Raises:
        ValueError: a negative ``samples_per_length``, or ``sign_draws`` of 1 or below 0.
    """
    if samples_per_length < 0:
        raise ValueError(f"samples_per_length must be 0 (skip) or more, got {samples_per_length}")
    if sign_draws == 1 or sign_draws < 0:
        raise ValueError(f"sign_draws must be 0 (skip) or at least 2, got {sign_draws}")
    per_length = path_length_gradients(model, inputs, targets)  # (n + 1, B, ...)
    exact = path_length_norms(per_length).double().cpu()
    n = exact.numel() - 1
    table = pd.DataFrame({"model": model_name, "length": range(n + 1)})
    table["num_paths"] = [float(math.comb(n, k)) for k in range(n + 1)]
    table["exact_norm"] = exact.numpy()
    table["exact_share"] = table["exact_norm"] / table["exact_norm"].sum()
    ranges = {
        f"exact_{int(s * 100)}": _range_dict(effective_path_range(exact, n, s)) for s in (0.9, 0.95)
    }
    if samples_per_length > 0:
        sampled = summarize_sampled(
            sample_path_gradients(model, (inputs, targets), samples_per_length, seed=seed), n
        ).set_index("length")
        table["sampled_mean"] = table["length"].map(sampled["mean"])
        table["sampled_std"] = table["length"].map(sampled["std"])
        table["sampled_sem"] = table["length"].map(sampled["sem"])
        table["samples"] = table["length"].map(sampled["samples"])
        table["sampled_total"] = table["length"].map(sampled["total"])
        table["sampled_share"] = table["sampled_total"] / table["sampled_total"].sum()
        totals = table["sampled_total"].fillna(0.0).tolist()
        ranges.update(
            {
                f"sampled_{int(s * 100)}": _range_dict(effective_path_range(totals, n, s))
                for s in (0.9, 0.95)
            }
        )
    if sign_draws:
        signs = sign_estimator(model, inputs, targets, draws=sign_draws, seed=seed).set_index(
            "length"
        )
        table["rms_single_path"] = table["length"].map(signs["mean_sq"].clip(lower=0) ** 0.5)
    for col in GRADIENT_COLUMNS:
        if col not in table:
            table[col] = math.nan
    analysis = GradientAnalysis(table, n, int(inputs.shape[0]), ranges)
    eff = analysis.effective
    table["in_effective_range"] = table["length"].between(eff["lo"], eff["hi"])
    analysis.table = table[GRADIENT_COLUMNS]
    analysis.meta = {
        "table": "gradients",
        "n": n,
        "images": int(inputs.shape[0]),
        "samples_per_length": samples_per_length,
        "sign_draws": sign_draws,
        "seed": seed,
        "ranges": ranges,
        "effective_lo": eff["lo"],
        "effective_hi": eff["hi"],
        "effective_share": eff["gradient_share"],
        "effective_path_share": eff["path_share"],
        "single_path_decay": single_path_decay(analysis.table),
    }
    return analysis


def _fmt_range(r: dict[str, float]) -> str:
    return (
        f"{int(r['lo'])}–{int(r['hi'])} ({100 * r['gradient_share']:.1f}% of the gradient, "
        f"{100 * r['path_share']:.3g}% of paths)"
    )


#: The ranges of ``GradientAnalysis.ranges``, headline first, as the report names them.
RANGE_LABELS = {
    "sampled_95": "95% of the paper's measure (mean single-path norm × number of paths)",
    "sampled_90": "90% of the paper's measure",
    "exact_95": "95% of the exact per-length gradient norm",
    "exact_90": "90% of the exact per-length gradient norm",
}


def single_path_decay(table: pd.DataFrame) -> dict[str, Any] | None:
    """How fast the single-path gradient norm falls with length (the paper: exponentially).

    A least-squares line through log(norm) against length, over the lengths with a positive
    value, of the paper's sampled mean single-path norm where measured, else the sign
    estimator's root-mean-square norm, else the exact per-length norm divided by the number of
    paths (the norm of the mean path). ``factor_per_block`` is exp(slope): the norm is
    multiplied by it for each block added to the path; ``r2`` says how straight the line is on
    a log axis. None with fewer than three positive lengths.
    """
    candidates = (
        ("sampled_mean", table["sampled_mean"]),
        ("rms_single_path", table["rms_single_path"]),
        ("exact_norm / num_paths", table["exact_norm"] / table["num_paths"]),
    )
    for measure, raw in candidates:
        values = pd.to_numeric(raw, errors="coerce")
        keep = values.gt(0) & values.notna()
        if int(keep.sum()) < 3:
            continue
        k = table["length"][keep].to_numpy(dtype=float)
        y = np.log(values[keep].to_numpy(dtype=float))
        slope, intercept = np.polyfit(k, y, 1)
        resid = y - (slope * k + intercept)
        spread = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float((resid**2).sum()) / spread if spread > 0 else 1.0
        return {"measure": measure, "factor_per_block": float(np.exp(slope)), "r2": r2}
    return None


def write_gradient_report(
    analysis: GradientAnalysis,
    path: str | Path,
    *,
    describe: dict[str, Any],
    figures: Sequence[str] = (),
) -> Path:
    """A short Markdown report: model, data, per-length table, effective range, and the paper.

    Args:
        describe: ``Experiment.describe()`` (model, model_spec, checkpoint_sha256, dataset,
            split).
        figures: image paths relative to the report's folder, linked under "Figures".
    """
    path = Path(path)
    n = analysis.n
    paths95 = summarize_paths(n, 0.95)
    headline = "sampled_95" if "sampled_95" in analysis.ranges else "exact_95"
    eff = analysis.effective
    decay = single_path_decay(analysis.table)
    lines = [
        f"# Gradient per path length: {describe.get('model', '?')}",
        "",
        f"- model: `{describe.get('model_spec')}` ({describe.get('model')}, {n} residual blocks, "
        f"2^{n} paths), "
        + (
            f"checkpoint sha256 `{describe['checkpoint_sha256']}`"
            if describe.get("checkpoint_sha256")
            else "no checkpoint file"
        ),
        f"- data: {describe.get('dataset')} {describe.get('split', 'test')} split, one batch of "
        f"{analysis.images} images",
        f"- method: exact decomposition (one polynomial backward pass); the paper's estimator "
        f"with {analysis.meta['samples_per_length']} sampled paths per length; the sign "
        f"estimator with {analysis.meta['sign_draws']} draws",
        "",
        "## Effective paths",
        "",
    ]
    for key, label in RANGE_LABELS.items():
        if key in analysis.ranges:
            lines.append(f"- {label}: lengths {_fmt_range(analysis.ranges[key])}")
    lines += [
        f"- for comparison, 95% of all paths have lengths {paths95.normal_lo}–{paths95.normal_hi} "
        f"(mean ± 1.96 sd, as the paper counts; the shortest exact range is "
        f"{paths95.lo}–{paths95.hi})",
    ]
    if decay is not None:
        lines.append(
            f"- single-path gradient norm ({decay['measure']}): × {decay['factor_per_block']:.3g} "
            f"per block of path length (log-linear fit, R² = {decay['r2']:.3f})"
        )
    lines += [
        "",
        "## Against the paper (ResNet-110, 54 blocks)",
        "",
        f"The effective range here is the one holding {RANGE_LABELS[headline]}.",
        "",
        "| | paper | here |",
        "|---|---|---|",
        f"| blocks | 54 | {n} |",
        f"| 95% of paths (mean ± 1.96 sd) | 19–35 | {paths95.normal_lo}–{paths95.normal_hi} |",
        f"| effective range | 5–17 ({100 * PAPER['effective_path_share']:.2f}% of paths) | "
        f"{int(eff['lo'])}–{int(eff['hi'])} ({100 * eff['path_share']:.3g}% of paths) |",
        f"| effective range / n | {5 / 54:.2f}–{17 / 54:.2f} | "
        f"{eff['lo'] / n:.2f}–{eff['hi'] / n:.2f} |",
    ]
    if decay is not None:
        lines.append(
            "| single-path norm against length | falls exponentially | "
            f"× {decay['factor_per_block']:.3g} per block, R² = {decay['r2']:.3f} on a log axis |"
        )
    lines += [
        "",
        "## Per length",
        "",
        analysis.table.drop(columns=["model"]).to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    atomic_write_text(path, "\n".join(lines))
    return path
