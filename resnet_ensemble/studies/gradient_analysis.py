"""The paper's gradient analysis (Fig. 6) for one model and batch, as a table and a report.

Holds:
- ``GradientAnalysis``: the per-length table (the "gradients" results kind), the effective path
  ranges, and what was measured on
- ``analyze_gradients``: exact decomposition, the paper's sampled estimator and the sign
  estimator on one batch, merged per length
- ``single_path_decay``: the factor by which the single-path norm falls per block of length
- ``write_gradient_report``: a short Markdown report with the table, the effective range and the
  comparison with the paper's numbers
- ``GradientStudy`` and ``study_gradients``: what ``ensemble-lesion gradients`` runs, as one
  call: open the model, draw the batches, analyse, and write the table and report
- ``gradient_outputs``: where a study's table and report go, checked before any work
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy.special import gammaln

from .. import paper
from ..blocks.registry import anatomy
from ..bounds import check_count
from ..core.gradients import (
    MAX_SAMPLED_PATHS,
    MeasuredAt,
    NormKind,
    effective_path_range,
    path_length_gradients,
    path_length_norms,
    sample_path_gradients,
    sign_estimator,
    summarize_sampled,
)
from ..outputs import claim_outputs, input_paths
from ..paths import summarize_paths
from ..results import atomic_write_text, sidecar_path, write_table
from .experiment import open_experiment

__all__ = [
    "AT_LABELS",
    "GRADIENT_COLUMNS",
    "NORM_LABELS",
    "RANGE_LABELS",
    "GradientAnalysis",
    "GradientStudy",
    "analyze_gradients",
    "bootstrap_effective_range",
    "decay_implied_range",
    "samples_table_path",
    "gradient_outputs",
    "gradient_table_outputs",
    "single_path_decay",
    "study_gradients",
    "write_gradient_report",
    "write_gradient_tables",
]

GRADIENT_COLUMNS = [
    "model",
    "length",
    "num_paths",
    "exact_norm",
    "exact_norm_sem",
    "exact_share",
    "sampled_mean",
    "sampled_std",
    "sampled_sem",
    "samples",
    "sampled_total",
    "sampled_share",
    "rms_single_path",
    "in_effective_range",
    "measured_at",
    "norm",
    "batches",
    "batch_size",
]

# The paper's effective range (``paper``), as this module has always offered it.
PAPER = {
    "effective_lo": paper.EFFECTIVE_LO,
    "effective_hi": paper.EFFECTIVE_HI,
    "effective_path_share": paper.EFFECTIVE_PATH_SHARE,
    "n": paper.BLOCKS,
}

#: How each choice of ``at`` and ``norm`` is named on axes and in reports.
AT_LABELS = {"image": "at the image", "blocks": "at the input of the first residual block"}
NORM_LABELS = {
    "batch": "norm of the mean-loss gradient over the batch",
    "per_image": "mean per-image norm",
}

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class GradientAnalysis:
    table: pd.DataFrame
    n: int
    images: int  # images per batch
    ranges: dict[str, dict[str, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    #: One row per sampled single path (batch, length, sample, norm, blocks): what the
    #: sampled columns of ``table`` average, kept so that their spread can be resampled.
    samples: pd.DataFrame | None = None

    @property
    def effective(self) -> dict[str, float]:
        """The headline range: 95% of the paper's measure (sampled totals) where sampled, else
        of the exact per-length norms."""
        return self.ranges.get("sampled_95") or self.ranges["exact_95"]


def _range_dict(r: Any) -> dict[str, float]:
    return {"lo": r.lo, "hi": r.hi, "gradient_share": r.gradient_share, "path_share": r.path_share}


def _sem(values: np.ndarray) -> float:
    """Standard error of the mean over the first axis; NaN with fewer than two values."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def _check_sampled_total(batches: int, samples_per_length: int, blocks: int) -> None:
    """Refuse, before any batch is drawn, more sampled paths than one table may hold: every
    sampled path of every batch is a row kept until the end."""
    total = batches * samples_per_length * (blocks + 1)
    if total > MAX_SAMPLED_PATHS:
        raise ValueError(
            f"{batches:,} batches x {samples_per_length:,} samples x {blocks + 1} lengths is "
            f"{total:,} sampled paths, more than the {MAX_SAMPLED_PATHS:,} a run may hold; "
            "lower --batches or --samples-per-length"
        )


def analyze_gradients(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    *,
    model_name: str = "model",
    samples_per_length: int = 1000,
    sign_draws: int = 16,
    seed: int = 0,
    at: MeasuredAt | None = None,
    norm: NormKind = "batch",
    out: str | Path | None = None,
    overwrite: bool = False,
) -> GradientAnalysis:
    """The paper's protocol over random batches: per batch, the exact per-length gradients,
    ``samples_per_length`` sampled single paths of each length, and the sign estimator.

    The paper "sample[d] 1,000 measurements for each length k using random batches from the
    training set": give ``batches`` drawn that way (``data.random_batches``); every batch
    contributes the same number of measurements, and the error bands (``*_sem``) come from the
    spread across batches (across single measurements when there is one batch).

    Args:
        batches: (inputs, targets) pairs of the same size; any iterable (a DataLoader, a
            list), read once into memory.
        samples_per_length: per batch; 0 skips the sampled estimator.
        sign_draws: per batch; 0 skips the sign estimator; else at least 2. Measured with the
            batch norm only (it estimates sums of squares over the batch).
        seed: the sampled paths and signs of batch g come from (seed, g).
        at, norm: where the gradient is taken and which norm (``gradients.gradient_norms``).
        out: also write ``.table`` here as the "gradients" table the ``gradients`` command
            writes (CSV and JSON sidecar, ``model_name`` its model), and the per-sample norms
            beside it (``samples_table_path``); nothing is written without it.
        overwrite: replace existing outputs; without it they are refused before any work.

    Returns:
        The analysis: ``.table`` (a DataFrame, one row per path length), ``.samples``,
        ``.ranges``, ``.effective`` and ``.meta`` (the sidecar's fields).

    Raises:
        ValueError: no batch, a negative ``samples_per_length``, or ``sign_draws`` of 1 or
            below 0; an ``out`` that exists without ``overwrite`` or cannot be written.

    Example:
        >>> analysis = analyze_gradients(model, random_batches(data, 128, 4), out="g.csv")
        >>> analysis.table[["length", "exact_norm"]]
    """
    out_path = Path(out) if out is not None else None
    with claim_outputs(gradient_table_outputs(out_path, samples_per_length), overwrite=overwrite):
        analysis = _analyze(
            model,
            list(batches),
            model_name=model_name,
            samples_per_length=samples_per_length,
            sign_draws=sign_draws,
            seed=seed,
            at=at,
            norm=norm,
        )
        if out_path is not None:
            metadata = {
                "model": model_name,
                "model_spec": "in memory",
                "checkpoint_sha256": None,
                **analysis.meta,
            }
            write_gradient_tables(out_path, analysis, metadata)
        return analysis


def _analyze(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    *,
    model_name: str,
    samples_per_length: int,
    sign_draws: int,
    seed: int,
    at: MeasuredAt | None,
    norm: NormKind,
) -> GradientAnalysis:
    """``analyze_gradients`` once its outputs are claimed."""
    if samples_per_length < 0:
        raise ValueError(f"samples_per_length must be 0 (skip) or more, got {samples_per_length}")
    if sign_draws == 1 or sign_draws < 0:
        raise ValueError(f"sign_draws must be 0 (skip) or at least 2, got {sign_draws}")
    if not batches:
        raise ValueError("need at least one batch of images")
    check_count("seed", seed, "seed")
    _check_sampled_total(len(batches), samples_per_length, len(anatomy(model).blocks))
    if at is None:  # the image for a classifier, the input embeddings for a language model
        at = "blocks" if anatomy(model).task == "language" else "image"
    sign_draws = sign_draws if norm == "batch" else 0
    exact_rows, sampled_frames, sign_rows = [], [], []
    for g, (x, y) in enumerate(batches):
        batch_seed = int(np.random.SeedSequence([int(seed), g]).generate_state(1)[0])
        per_length = path_length_gradients(model, x, y, at=at)  # (n + 1, B, ...)
        exact_rows.append(path_length_norms(per_length, norm).double().cpu().numpy())
        del per_length
        if samples_per_length > 0:
            frame = sample_path_gradients(
                model, (x, y), samples_per_length, seed=batch_seed, at=at, norm=norm
            )
            sampled_frames.append(frame.assign(batch=g))
        if sign_draws:
            signs = sign_estimator(model, x, y, draws=sign_draws, seed=batch_seed, at=at)
            sign_rows.append(signs["mean_sq"].to_numpy())
    exact = np.stack(exact_rows)  # (G, n + 1)
    n = exact.shape[1] - 1
    table = pd.DataFrame({"model": model_name, "length": range(n + 1)})
    table["num_paths"] = [float(math.comb(n, k)) for k in range(n + 1)]
    table["exact_norm"] = exact.mean(axis=0)
    table["exact_norm_sem"] = [_sem(exact[:, k]) for k in range(n + 1)]
    table["exact_share"] = table["exact_norm"] / table["exact_norm"].sum()
    ranges = {
        f"exact_{int(s * 100)}": _range_dict(
            effective_path_range(table["exact_norm"].tolist(), n, s)
        )
        for s in (0.9, 0.95)
    }
    if sampled_frames:
        pooled = pd.concat(sampled_frames, ignore_index=True)
        sampled = summarize_sampled(pooled, n).set_index("length")
        if len(batches) > 1:  # error bands from the spread of the per-batch means
            per_batch = pooled.groupby(["length", "batch"])["norm"].mean().unstack("batch")
            sampled["sem"] = [_sem(per_batch.loc[k].to_numpy()) for k in sampled.index]
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
    if sign_rows:
        mean_sq = np.stack(sign_rows).mean(axis=0)
        table["rms_single_path"] = np.sqrt(np.clip(mean_sq, 0, None))
    for col in GRADIENT_COLUMNS:
        if col not in table:
            table[col] = math.nan
    batch_size = int(batches[0][0].shape[0])
    table["measured_at"], table["norm"] = at, norm
    table["batches"], table["batch_size"] = len(batches), batch_size
    samples = None
    if sampled_frames:
        samples = pooled[["batch", "length", "sample", "norm", "blocks"]].reset_index(drop=True)
    analysis = GradientAnalysis(table, n, batch_size, ranges, samples=samples)
    eff = analysis.effective
    table["in_effective_range"] = table["length"].between(eff["lo"], eff["hi"])
    analysis.table = table[GRADIENT_COLUMNS]
    analysis.meta = {
        "table": "gradients",
        "n": n,
        "images": batch_size * len(batches),
        "batch_size": batch_size,
        "batches": len(batches),
        "measured_at": at,
        "norm": norm,
        "samples_per_length": samples_per_length,
        "measurements_per_length": samples_per_length * len(batches),
        "sign_draws": sign_draws,
        "seed": seed,
        "ranges": ranges,
        "effective_lo": eff["lo"],
        "effective_hi": eff["hi"],
        "effective_share": eff["gradient_share"],
        "effective_path_share": eff["path_share"],
        "single_path_decay": single_path_decay(analysis.table),
        "effective_bootstrap": (
            bootstrap_effective_range(samples, n, seed=seed) if samples is not None else None
        ),
        "decay_implied_range": decay_implied_range(single_path_decay(analysis.table), n),
    }
    return analysis


BOOTSTRAP_DRAWS = 1000


def bootstrap_effective_range(
    samples: pd.DataFrame,
    n: int,
    *,
    share: float = 0.95,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> dict[str, Any] | None:
    """A percentile bootstrap interval for the sampled effective range's ends.

    The paper's measure at length k is the mean single-path norm times C(n, k); its effective
    range is a function of the n + 1 means, so each draw resamples every length's measurements
    with replacement (lengths independently, as they were sampled), recomputes the means, and
    finds the range holding ``share`` of the totals. Returns the 2.5 and 97.5 percentiles of
    ``lo`` and ``hi`` over ``draws`` draws, or None when a length has no measurement.
    """
    groups = [samples.loc[samples["length"] == k, "norm"].to_numpy(float) for k in range(n + 1)]
    if any(len(g) == 0 for g in groups):
        return None
    rng = np.random.default_rng(seed)
    counts = _relative_path_counts(n)
    means = np.stack(  # (draws, n + 1): every length's resampled mean
        [g[rng.integers(0, len(g), size=(draws, len(g)))].mean(axis=1) for g in groups], axis=1
    )
    ends = np.array(
        [
            (r.lo, r.hi)
            for r in (effective_path_range((m * counts).tolist(), n, share) for m in means)
        ]
    )
    lo_ci = np.percentile(ends[:, 0], [2.5, 97.5])
    hi_ci = np.percentile(ends[:, 1], [2.5, 97.5])
    return {
        "share": share,
        "draws": draws,
        "measurements_per_length": min(len(g) for g in groups),
        "lo_95ci": [float(lo_ci[0]), float(lo_ci[1])],
        "hi_95ci": [float(hi_ci[0]), float(hi_ci[1])],
    }


def decay_implied_range(decay: Mapping[str, Any] | None, n: int, share: float = 0.95) -> Any:
    """The effective range implied by the fitted single-path decay alone: totals C(n, k) x f^k
    for the fitted factor f (the paper's exponential fall, with the binomial count of paths).
    It says what the fit predicts, to set beside the range measured length by length; None
    without a fit."""
    if not decay:
        return None
    log_totals = _log_path_counts(n) + np.arange(n + 1) * math.log(float(decay["factor_per_block"]))
    totals = np.exp(log_totals - log_totals.max())
    return _range_dict(effective_path_range(totals.tolist(), n, share))


def _log_path_counts(n: int) -> np.ndarray:
    """log(C(n, k) / C(n, n // 2)) for k = 0..n: the path counts up to a common factor (the
    ranges depend on shares only), finite for any n."""
    k = np.arange(n + 1)
    log_counts = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return log_counts - log_counts.max()


def _relative_path_counts(n: int) -> np.ndarray:
    return np.exp(_log_path_counts(n))


def _batches_text(meta: dict[str, Any]) -> str:
    batches, size = int(meta.get("batches", 1)), int(meta.get("batch_size", meta["images"]))
    if batches == 1:
        return f"one batch of {size} images"
    return f"{batches} random batches of {size} images (drawn by seed {meta.get('seed', 0)})"


def path_range_text(summary: Any) -> str:
    """Both forms of the central range of path lengths, each with the share it holds."""
    return (
        f"lengths {summary.normal_lo}–{summary.normal_hi} as mean ± 1.96 sd (the paper's form; "
        f"{100 * summary.normal_fraction:.1f}% of paths), or {summary.lo}–{summary.hi} as the "
        f"shortest exact range ({100 * summary.fraction:.1f}% of paths)"
    )


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
    estimator's root-mean-square single-path norm. ``factor_per_block`` is exp(slope): the norm
    is multiplied by it for each block added to the path; ``r2`` says how straight the line is
    on a log axis. None with fewer than three positive lengths, or without a single-path
    measure: the exact decomposition's per-length norm divided by the number of paths is the
    norm of the *mean* path gradient, not a single path's, and is never used here.
    """
    candidates = (
        ("sampled_mean", table["sampled_mean"]),
        ("rms_single_path", table["rms_single_path"]),
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
    at_paper = paper.paths95_exact()
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
        f"- data: {describe.get('dataset')} {describe.get('split', 'test')} split, "
        f"{_batches_text(analysis.meta)}",
        f"- measured: the gradient of the mean cross-entropy loss "
        f"{AT_LABELS[analysis.meta.get('measured_at', 'image')]}; "
        f"{NORM_LABELS[analysis.meta.get('norm', 'batch')]}"
        + (
            " (absolute values depend on the batch size)"
            if analysis.meta.get("norm", "batch") == "batch"
            else ""
        ),
        f"- method: exact decomposition (one polynomial backward pass per batch), averaged over "
        f"the batches; the paper's estimator with {analysis.meta['samples_per_length']} sampled "
        f"paths per length per batch ({analysis.meta.get('measurements_per_length', 0)} in "
        f"all); the sign estimator with {analysis.meta['sign_draws']} draws per batch",
        "",
        "## Effective paths",
        "",
    ]
    for key, label in RANGE_LABELS.items():
        if key in analysis.ranges:
            lines.append(f"- {label}: lengths {_fmt_range(analysis.ranges[key])}")
    lines += [
        f"- for comparison, 95% of all paths: {path_range_text(paths95)}",
    ]
    boot = analysis.meta.get("effective_bootstrap")
    if boot:
        lo_ci, hi_ci = boot["lo_95ci"], boot["hi_95ci"]
        lines.append(
            f"- bootstrap 95% interval of the sampled range's ends ({boot['draws']} draws over "
            f"the {boot['measurements_per_length']} measurements per length): lower end "
            f"{lo_ci[0]:g}–{lo_ci[1]:g}, upper end {hi_ci[0]:g}–{hi_ci[1]:g}"
        )
    if decay is not None:
        lines.append(
            f"- single-path gradient norm ({decay['measure']}): × {decay['factor_per_block']:.3g} "
            f"per block of path length (log-linear fit, R² = {decay['r2']:.3f})"
        )
    implied = analysis.meta.get("decay_implied_range")
    if implied:
        lines.append(
            f"- the range that fitted decay implies (C(n, k) × factor^k holding 95%): lengths "
            f"{_fmt_range(implied)}"
        )
    lines += [
        "",
        f"## Against the paper (ResNet-110, {paper.BLOCKS} blocks)",
        "",
        f"The effective range here is the one holding {RANGE_LABELS[headline]}.",
        "",
        "| | paper | here |",
        "|---|---|---|",
        f"| blocks | {paper.BLOCKS} | {n} |",
        f"| 95% of paths (mean ± 1.96 sd) | {paper.PATHS_95[0]}–{paper.PATHS_95[1]} | "
        f"{paths95.normal_lo}–{paths95.normal_hi} "
        f"({100 * paths95.normal_fraction:.1f}%) |",
        f"| 95% of paths (shortest exact range) | {at_paper.lo}–{at_paper.hi} "
        f"({100 * at_paper.fraction:.1f}%) | {paths95.lo}–{paths95.hi} "
        f"({100 * paths95.fraction:.1f}%) |",
        f"| effective range | {paper.effective_text()} | "
        f"{int(eff['lo'])}–{int(eff['hi'])} ({100 * eff['path_share']:.3g}% of paths) |",
        f"| effective range / n | {paper.EFFECTIVE_LO / paper.BLOCKS:.2f}–"
        f"{paper.EFFECTIVE_HI / paper.BLOCKS:.2f} | "
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


@dataclass
class GradientStudy:
    """What ``study_gradients`` found and wrote.

    ``describe``: the results metadata of the model and data (with the ``split`` the batches
    came from); ``table_path`` / ``report_path`` / ``figures_dir``: what was written, or None.
    """

    analysis: GradientAnalysis
    describe: dict[str, Any]
    table_path: Path | None = None
    report_path: Path | None = None
    figures_dir: Path | None = None


def samples_table_path(table: str | Path) -> Path:
    """Where a gradients table's per-sample norms go: NAME_samples.csv beside NAME.csv."""
    table = Path(table)
    return table.with_name(f"{table.stem}_samples.csv")


def gradient_table_outputs(out: Path | None, samples_per_length: int) -> list[Path]:
    """The files a gradients table is written as: the table and its sidecar, and the
    per-sample norms and theirs when paths are sampled; none without a table."""
    if out is None:
        return []
    files = [out, sidecar_path(out)]
    if samples_per_length > 0:
        files += [samples_table_path(out), sidecar_path(samples_table_path(out))]
    return files


def write_gradient_tables(
    out: Path, analysis: GradientAnalysis, metadata: Mapping[str, Any]
) -> Path:
    """Write the "gradients" table and, where paths were sampled, its per-sample table first
    (the table's sidecar names it); returns the table's path."""
    metadata = dict(metadata)
    if analysis.samples is not None:
        metadata["samples_table"] = samples_table_path(out).name
        write_table(samples_table_path(out), analysis.samples, "gradient_samples", metadata)
    return write_table(out, analysis.table, "gradients", metadata)


def gradient_outputs(
    out: str | Path | None, report: str | Path | None
) -> tuple[Path | None, Path | None]:
    """The table and report paths of a study. With a report and no table the table goes beside
    the report (REPORT_STEM.csv), since the report's figures are drawn from it.

    Creates and checks nothing on disk (``study_gradients`` checks that both can be written).

    Raises:
        ValueError: a report named like a table (.csv, .json), or one that would overwrite
            the table or its sidecar.
    """
    report_path = Path(report) if report else None
    if report_path is not None and report_path.suffix.lower() in (".csv", ".json"):
        raise ValueError("the report is Markdown: give a name such as report.md")
    out_path = Path(out) if out else None
    if out_path is None and report_path is not None:
        out_path = report_path.with_suffix(".csv")
    if report_path is not None and out_path is not None:
        taken = {out_path.resolve(), sidecar_path(out_path).resolve()}
        if report_path.resolve() in taken:
            raise ValueError(f"{report_path} would overwrite the table or its sidecar")
    return out_path, report_path


def study_gradients(
    experiment: Mapping[str, Any],
    *,
    images: int = 128,
    batches: int = 4,
    split: Literal["auto", "train", "test"] = "auto",
    samples_per_length: int = 25,
    sign_draws: int = 8,
    seed: int = 0,
    at: MeasuredAt | Literal["auto"] = "auto",
    norm: NormKind = "batch",
    out: str | Path | None = None,
    report: str | Path | None = None,
    overwrite: bool = False,
    on_start: Callable[[str], None] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> GradientStudy:
    """The gradient per path length of a model, on random batches of its data, into the
    "gradients" table and a Markdown report: what ``ensemble-lesion gradients`` runs.

    Args:
        experiment: ``open_experiment``'s keyword arguments (model_spec, weights_file,
            weights, dataset, data_dir, download, limit, batch_size, device).
        images, batches, split, seed: ``batches`` random batches of ``images`` images of
            ``split`` (``Experiment.gradient_split``: auto is the training split where the data
            have one), drawn by ``seed``.
        samples_per_length, sign_draws, at, norm: ``analyze_gradients``'; ``at="auto"``: the
            image for a classifier, the input embeddings for a language model.
        out, report: the table (CSV with a JSON sidecar) and the report (Markdown, its figures
            in REPORT_STEM_figures/ beside it); see ``gradient_outputs``. Both are checked
            before any work and locked for the run (``outputs.claim_outputs``); None writes
            nothing.
        overwrite: replace a table, report or figures that exist (without it they are
            refused).
        on_start: called once the model and batches are ready, with a line that says what the
            slow part will do.
        extra_metadata: more sidecar fields for the tables (``reproduce`` adds its stage).

    Raises:
        ValueError: see ``gradient_outputs`` and ``analyze_gradients``; an output that cannot
            be written, is one of the inputs, exists without ``overwrite`` or is being written
            by another process, or a model and data that do not fit.

    Example:
        >>> study = study_gradients({"model_spec": "ckpt.pt"}, report="results/gradients.md")
        >>> study.analysis.effective
    """
    out_path, report_path = gradient_outputs(out, report)
    outputs = [*gradient_table_outputs(out_path, samples_per_length), report_path]
    with claim_outputs(
        outputs,
        inputs=input_paths(experiment),
        overwrite=overwrite,
        folders=[_figures_dir(report_path)] if report_path is not None else [],
    ):
        return _study(
            experiment,
            images=images,
            batches=batches,
            split=split,
            samples_per_length=samples_per_length,
            sign_draws=sign_draws,
            seed=seed,
            at=at,
            norm=norm,
            out_path=out_path,
            report_path=report_path,
            on_start=on_start,
            extra_metadata=extra_metadata or {},
        )


def _figures_dir(report: Path) -> Path:
    """``rep.md`` -> ``rep_figures/`` beside it: where the report's figures go."""
    return report.parent / f"{report.stem}_figures"


def _study(
    experiment: Mapping[str, Any],
    *,
    images: int,
    batches: int,
    split: Literal["auto", "train", "test"],
    samples_per_length: int,
    sign_draws: int,
    seed: int,
    at: MeasuredAt | Literal["auto"],
    norm: NormKind,
    out_path: Path | None,
    report_path: Path | None,
    on_start: Callable[[str], None] | None,
    extra_metadata: Mapping[str, Any],
) -> GradientStudy:
    """``study_gradients`` once its outputs are claimed."""
    exp = open_experiment(**experiment)
    _check_sampled_total(batches, samples_per_length, len(exp.blocks))
    chosen = exp.gradient_split(split)
    batch_list = exp.random_batches(images, batches, split=chosen, seed=seed)
    describe = {**exp.describe(), "split": chosen}
    if on_start is not None:
        on_start(
            f"exact decomposition and {samples_per_length} sampled paths for each of the "
            f"{len(exp.blocks) + 1} lengths, on each of {batches} random batches of {images} "
            f"{chosen} images..."
        )
    analysis = analyze_gradients(
        exp.model,
        batch_list,
        model_name=describe["model"],
        samples_per_length=samples_per_length,
        sign_draws=sign_draws,
        seed=seed,
        at=None if at == "auto" else at,
        norm=norm,
    )
    study = GradientStudy(analysis, describe)
    if out_path is None:
        return study
    metadata = {**describe, **analysis.meta, **extra_metadata}
    study.table_path = write_gradient_tables(out_path, analysis, metadata)
    if report_path is None:
        return study
    from ..viz.plots import plot_all  # here, not at the top: seaborn slows every import

    fig_dir = _figures_dir(report_path)
    written = [Path(p) for p in plot_all([out_path], fig_dir)]
    figures = [p.relative_to(report_path.parent).as_posix() for p in written if p.suffix == ".png"]
    write_gradient_report(analysis, report_path, describe=describe, figures=figures)
    study.report_path, study.figures_dir = report_path, fig_dir
    return study
