"""``summary.md`` for ``reproduce``: each measured number beside the paper's, read back from the
tables and their sidecars (so a summary rewritten later still says what its numbers come from).

Holds ``write_summary``; ``reproduce.Reproduction.run`` calls it after its stages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import paper
from ..results import atomic_write_text, read_sidecar, sweep_rows

__all__ = ["DEGENERATE_PATH_SHARE", "write_summary"]

#: Above this share of all paths the effective range is not "short paths" at all: training on
#: it tests nothing the paper claims (small n, where the range covers most paths).
DEGENERATE_PATH_SHARE = 0.5


def _provenance_lines(tables: Path, setting_order: Sequence[str]) -> list[str]:
    """The commands and settings that made the tables, as their sidecars record them: a summary
    rewritten by a later run (or under other defaults) still says what its numbers come from."""
    commands: dict[str, list[str]] = {}
    settings: dict[str, dict[str, list[str]]] = {}
    unknown = []
    for table in sorted(tables.glob("*.csv")):
        about = read_sidecar(table).get("reproduce")
        if not isinstance(about, dict):
            unknown.append(table.name)
            continue
        commands.setdefault(str(about.get("command")), []).append(table.stem)
        for key, value in (about.get("settings") or {}).items():
            if key.endswith("_sha256") or value is None:
                continue
            settings.setdefault(key, {}).setdefault(repr(value), []).append(table.stem)
    lines = []
    if len(commands) == 1:
        lines += [f"Command: `{next(iter(commands))}`", ""]
    elif commands:
        lines += ["Commands (the tables come from several runs):", ""]
        lines += [f"- `{cmd}`: {', '.join(names)}" for cmd, names in commands.items()]
        lines += [""]
    order = {key: i for i, key in enumerate(setting_order)}
    parts = []
    for key in sorted(settings, key=lambda k: (order.get(k, len(order)), k)):
        values = settings[key]
        if len(values) == 1:
            parts.append(f"{key}={next(iter(values))}")
        else:
            parts.append(f"{key}=" + " / ".join(f"{v} ({', '.join(n)})" for v, n in values.items()))
    if parts:
        lines += [f"Settings, as the tables' sidecars record them: `{', '.join(parts)}`", ""]
    if unknown:
        lines += [
            f"Tables whose sidecars do not say how they were made: {', '.join(unknown)}.",
            "",
        ]
    return lines


def _table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def write_summary(out: Path, tables: Path, trains: bool, setting_order: Sequence[str]) -> Path:
    """``summary.md``: each measured number beside the paper's, with the command that ran."""
    t = tables
    single = _table(t / "single_resnet.csv")
    plain = _table(t / "single_plain.csv")
    sd = _table(t / "single_stochastic_depth.csv")
    multi = _table(t / "multi_resnet.csv")
    grads, paths = read_sidecar(t / "gradients.csv"), read_sidecar(t / "paths.csv")

    def base(df: pd.DataFrame | None) -> float | None:
        return None if df is None else sweep_rows(df).full("error")

    def deletions(df: pd.DataFrame | None, downsampling: bool) -> pd.Series | None:
        if df is None:
            return None
        rows = sweep_rows(df).deletions
        rows = rows[rows.downsampling == downsampling]
        return rows.error if len(rows) else None

    def mean_worst(df: pd.DataFrame | None, downsampling: bool) -> str:
        errors = deletions(df, downsampling)
        if errors is None:
            return "n/a"
        return f"mean {_pct(float(errors.mean()))}, worst {_pct(float(errors.max()))}"

    def at_k(k: int) -> float | None:
        if multi is None or k not in set(multi.k):
            return None
        return float(multi.loc[multi.k == k, "error"].mean())

    meta = read_sidecar(t / "single_resnet.csv")
    n = int(paths.get("n") or grads.get("num_blocks") or meta.get("num_blocks") or 0)
    classes = meta.get("num_classes")
    chance = f" (chance: {_pct(1 - 1 / classes)})" if classes else ""
    eff = _table(t / "baseline_effective_paths.csv")
    # The K the network was trained with, as its table's sidecar records it (from the
    # checkpoint), never what today's rule would choose.
    k_eff = read_sidecar(t / "baseline_effective_paths.csv").get("active_blocks", "?")
    degenerate = (
        f"; the effective range holds {100 * grads['effective_path_share']:.0f}% of all paths "
        f"here, so training on it is not training on short paths and does not test the paper"
        if grads and grads["effective_path_share"] > DEGENERATE_PATH_SHARE
        else ""
    )
    k_max = int(multi.k.max()) if multi is not None else 0
    k_mid = max(1, k_max // 2)

    def controls(*rows: tuple[str, str, str]) -> tuple[tuple[str, str, str], ...]:
        """Rows about the trained controls: none when a given model was analysed alone."""
        trained = any(x is not None for x in (plain, sd, eff))
        return rows if trains or trained else ()

    rows = [
        ("blocks (n)", str(paper.BLOCKS), str(n or "?")),
        ("full-network test error", paper.full_error_text(), _pct(base(single))),
        (
            "one non-downsampling block deleted",
            "no noticeable change",
            f"{mean_worst(single, False)} (full: {_pct(base(single))})",
        ),
        ("one downsampling block deleted", "a modest rise", mean_worst(single, True)),
        *controls(
            (
                "plain network, one layer deleted",
                "chance level",
                f"{mean_worst(plain, False)}{chance}; its own full error {_pct(base(plain))}",
            ),
            (
                "stochastic depth, one non-downsampling block deleted",
                "more robust than the ResNet",
                f"{mean_worst(sd, False)} (full: {_pct(base(sd))})",
            ),
        ),
        (f"error with k = {k_mid} blocks deleted (mean)", "rises smoothly", _pct(at_k(k_mid))),
        (
            f"error with k = {k_max} blocks deleted (mean)",
            "rises smoothly (k = 10, 20 in Fig. 5a)",
            _pct(at_k(k_max)),
        ),
        (
            "error with k = 10 / k = 20 deleted",
            "Fig. 5a (read off: ~ 20% / ~ 50%, unsure)",
            f"{_pct(at_k(10))} / {_pct(at_k(20))}",
        ),
        (
            "95% of paths (mean ± 1.96 sd)",
            f"{paper.PATHS_95[0]}–{paper.PATHS_95[1]} of {paper.BLOCKS}",
            f"{paths['range_lo']}–{paths['range_hi']} of {n}" if paths else "n/a",
        ),
        (
            "effective gradient range (95% of gradient)",
            paper.effective_text(),
            f"{grads['effective_lo']}–{grads['effective_hi']} "
            f"({100 * grads['effective_path_share']:.3g}% of paths)"
            if grads
            else "n/a",
        ),
        *controls(
            (
                "effective-path training error (K = lo + hi of the effective range; evaluated "
                "with residuals × K/n, an assumption: the paper does not say)",
                f"{100 * paper.EFFECTIVE_TRAINING_ERROR:.2f}% "
                f"({paper.EFFECTIVE_TRAINING_K} of {paper.BLOCKS} blocks)",
                _pct(base(eff))
                + (f" ({k_eff} of {n} blocks){degenerate}" if eff is not None else ""),
            ),
        ),
    ]
    synthetic = bool(meta.get("synthetic_data"))
    model = meta.get("model", "?")
    images = meta.get("images", "?")
    dataset = str(meta.get("dataset", "?"))
    lines = [
        "# Reproduction summary",
        "",
        *(
            [
                "**Synthetic data: a smoke test of the pipeline only; these numbers say nothing "
                "about the paper.**",
                "",
            ]
            if synthetic
            else []
        ),
        *_provenance_lines(t, setting_order),
        f"Model: {model}; dataset: {dataset}, {images} test images.",
        "",
        "| finding | paper (ResNet-110, CIFAR-10) | measured here |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Figures are in `figures/` (PNG and PDF), tables in `tables/` (CSV with JSON sidecars), "
        "the gradient report in `gradients.md`.",
        "",
    ]
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path
