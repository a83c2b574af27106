"""The paper's lesion experiments as sweeps of routes, written to resumable results tables.

Holds:
- ``RouteSpec``: one configuration (a route and what describes it in the table)
- ``single_deletions`` (paper Fig. 3), ``multi_deletions`` (Fig. 5a), ``random_swaps`` (Fig. 5b):
  the configurations, seeded so that a resumed sweep regenerates exactly the same ones
- ``kendall_tau``: how far an order is from the original, with scipy
- ``format_route``: a route as a compact string, e.g. ``0-2,4,6-8``
- ``run_sweep``: evaluate configurations through the engine in chunks, appending each finished
  chunk to the table; distributed over torchrun ranks by sharding the images
- ``check_rows``: a resumed table's rows are this sweep's own: each configuration once, as this
  sweep describes it, with a value its sum gives
- ``sweep_to_table``: a whole sweep as the ``sweep`` command runs it: check the output, open the
  model and data, make the configurations, resume or start the table, run, mark it complete
- ``study_sweep``: a sweep of a model in memory on any batches, as a DataFrame (a table
  written only when asked)
- ``summarize_sweep``: a short table of what a sweep found (per block, or per k)
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch

from ..blocks.registry import Anatomy, anatomy
from ..blocks.shapes import block_shapes
from ..bounds import check_count
from ..core.distributed import Distributed, from_environment
from ..core.engine import Strategy, measure_routes
from ..core.metrics import MetricName, resolve_metric
from ..data.datasets import dataset_size
from ..names import ELIGIBLE, SWEEP_KINDS, Eligible
from ..outputs import claim_outputs, input_paths
from ..results import (
    SWEEP_COLUMNS,
    ResultsTable,
    SweepKind,
    check_writable,
    read_sidecar,
    read_table,
    run_metadata,
    sidecar_path,
    sweep_columns,
    sweep_rows,
)
from .experiment import Experiment, open_experiment

__all__ = [
    "ELIGIBLE",
    "SWEEP_COLUMNS",
    "SWEEP_KINDS",
    "Eligible",
    "RouteSpec",
    "SweepKind",
    "SweepOutcome",
    "check_rows",
    "format_route",
    "kendall_tau",
    "multi_deletions",
    "random_swaps",
    "stage_first_blocks",
    "run_sweep",
    "study_sweep",
    "single_deletions",
    "summarize_sweep",
    "sweep_columns",
    "sweep_to_table",
]


@dataclass(frozen=True)
class RouteSpec:
    """One configuration of a sweep: its id, route, and the columns that describe it."""

    config: str
    route: tuple[int, ...]
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def format_route(route: Sequence[int]) -> str:
    """Runs of consecutive blocks as ranges: [0, 1, 2, 4, 6, 7, 8] -> "0-2,4,6-8"; "" if empty."""
    parts: list[str] = []
    i = 0
    route = list(route)
    while i < len(route):
        j = i
        while j + 1 < len(route) and route[j + 1] == route[j] + 1:
            j += 1
        parts.append(str(route[i]) if j == i else f"{route[i]}-{route[j]}")
        i = j + 1
    return ",".join(parts)


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's tau between ``order`` and the original order 0..n-1 (1 = unchanged)."""
    if len(order) < 2:
        return 1.0
    return float(scipy.stats.kendalltau(range(len(order)), order).statistic)


def _baseline(n: int, sweep: str) -> RouteSpec:
    return RouteSpec("baseline", tuple(range(n)), {"sweep": sweep, "k": 0, "deleted": ""})


def single_deletions(found: Anatomy) -> list[RouteSpec]:
    """The full network, then each block deleted alone; blocks without a shortcut that change
    the shape (plain networks' downsampling layers) cannot be deleted and are left out."""
    n = len(found.blocks)
    specs = [_baseline(n, "single")]
    for b in found.blocks:
        if b.shortcut is None and b.downsamples:
            continue
        specs.append(
            RouteSpec(
                f"drop={b.index}",
                tuple(i for i in range(n) if i != b.index),
                {
                    "sweep": "single",
                    "k": 1,
                    "deleted": str(b.index),
                    "deleted_name": b.name,
                    "downsampling": b.downsamples,
                },
            )
        )
    return specs


#: The most configurations a sweep may draw: checked before any is drawn, so that a mistyped
#: --samples or --max-k is refused at once instead of filling memory (100,000 routes of
#: ResNet-110 on 10,000 images would take a GPU about a day).
MAX_CONFIGURATIONS = 100_000


def _check_count(counts: int, samples: int, what: str) -> None:
    if counts * samples > MAX_CONFIGURATIONS:
        raise ValueError(
            f"{counts} {what} x {samples} samples is {counts * samples:,} configurations, more "
            f"than the {MAX_CONFIGURATIONS:,} a sweep may have; lower --samples"
        )


#: The most single swaps ``random_swaps`` may draw in all (sample s of k swaps draws k of them):
#: a few seconds of drawing.
MAX_SWAP_DRAWS = 2_000_000


def _rng(seed: int, *keys: int) -> np.random.Generator:
    # One generator per configuration: a resumed sweep draws exactly the same configurations.
    return np.random.default_rng([seed, *keys])


def stage_first_blocks(found: Anatomy) -> set[int]:
    """The first block of every stage (by ``Block.stage``): in a CIFAR ResNet the blocks that
    open each of the three stages, two of them downsampling."""
    first: dict[int, int] = {}
    for b in found.blocks:
        first[b.stage] = min(first.get(b.stage, b.index), b.index)
    return set(first.values())


def _eligible_blocks(found: Anatomy, eligible: Eligible) -> list[int]:
    if eligible not in ELIGIBLE:
        raise ValueError(f"eligible must be one of {', '.join(ELIGIBLE)}; got {eligible!r}")
    deletable = [b for b in found.blocks if not (b.shortcut is None and b.downsamples)]
    if eligible == "non-downsampling":
        return [b.index for b in deletable if not b.downsamples]
    if eligible == "not-stage-first":
        first = stage_first_blocks(found)
        return [b.index for b in deletable if b.index not in first]
    return [b.index for b in deletable]


def multi_deletions(
    found: Anatomy,
    max_k: int = 10,
    samples: int = 5,
    seed: int = 0,
    eligible: Eligible = "non-downsampling",
) -> list[RouteSpec]:
    """k = 1..max_k random blocks deleted together, ``samples`` draws each, drawn from the
    ``eligible`` blocks (``Eligible``; by default those that do not downsample)."""
    n = len(found.blocks)
    check_count("seed", seed, "seed")
    _check_count(max_k, samples, "values of k")
    candidates = _eligible_blocks(found, eligible)
    if max_k > len(candidates):
        raise ValueError(
            f"cannot delete {max_k} blocks: the model has only {len(candidates)} "
            f"{eligible} blocks; lower --max-k"
        )
    specs = [_baseline(n, "multi")]
    for k in range(1, max_k + 1):
        for s in range(samples):
            drop = sorted(_rng(seed, k, s).choice(candidates, size=k, replace=False).tolist())
            specs.append(
                RouteSpec(
                    f"k={k},sample={s}",
                    tuple(i for i in range(n) if i not in drop),
                    {
                        "sweep": "multi",
                        "k": k,
                        "sample": s,
                        "seed": seed,
                        "deleted": format_route(drop),
                    },
                )
            )
    return specs


def swappable_groups(found: Anatomy) -> list[list[int]]:
    """Blocks that keep the shape, grouped by that shape: any two in a group can trade places."""
    shapes = block_shapes(found.model, found)
    groups: dict[tuple[int, ...], list[int]] = {}
    for b in found.blocks:
        if not b.downsamples and shapes.inputs[b.index] == shapes.outputs[b.index]:
            groups.setdefault(shapes.inputs[b.index], []).append(b.index)
    return [g for g in groups.values() if len(g) >= 2]


def random_swaps(
    found: Anatomy,
    max_swaps: int = 10,
    samples: int = 5,
    seed: int = 0,
    keep_stage_first: bool = False,
) -> list[RouteSpec]:
    """k = 1..max_swaps random swaps of same-shape blocks, ``samples`` draws each, with the
    Kendall tau of the resulting order. ``keep_stage_first``: no swap moves the first block of
    a stage (the authors' protocol; in a CIFAR ResNet that leaves block 0 in place)."""
    n = len(found.blocks)
    check_count("seed", seed, "seed")
    _check_count(max_swaps, samples, "swap counts")
    draws = samples * max_swaps * (max_swaps + 1) // 2
    if draws > MAX_SWAP_DRAWS:
        raise ValueError(
            f"--max-swaps {max_swaps} x --samples {samples} draw {draws:,} single swaps, more "
            f"than the {MAX_SWAP_DRAWS:,} a sweep may draw; lower --max-swaps or --samples"
        )
    groups = swappable_groups(found)
    if keep_stage_first:
        first = stage_first_blocks(found)
        groups = [g for g in ([i for i in g if i not in first] for g in groups) if len(g) >= 2]
    if not groups:
        what = "other than the first of a stage " if keep_stage_first else ""
        raise ValueError(f"the model has no two blocks {what}of the same shape to swap")
    sizes = np.array([len(g) * (len(g) - 1) / 2 for g in groups])
    specs = [_baseline(n, "reorder")]
    specs[0].fields["kendall_tau"] = 1.0
    for k in range(1, max_swaps + 1):
        for s in range(samples):
            rng = _rng(seed, k, s)
            order = list(range(n))
            for _ in range(k):
                # A uniformly random same-shape pair: pick a group by its number of pairs.
                group = groups[int(rng.choice(len(groups), p=sizes / sizes.sum()))]
                i, j = rng.choice(group, size=2, replace=False).tolist()
                pi, pj = order.index(i), order.index(j)
                order[pi], order[pj] = order[pj], order[pi]
            specs.append(
                RouteSpec(
                    f"swaps={k},sample={s}",
                    tuple(order),
                    {
                        "sweep": "reorder",
                        "k": k,
                        "sample": s,
                        "seed": seed,
                        "kendall_tau": kendall_tau(order),
                    },
                )
            )
    return specs


def run_sweep(
    exp: Experiment,
    specs: Sequence[RouteSpec],
    table: ResultsTable | None,
    *,
    chunk: int = 64,
    dist: Distributed | None = None,
    strategy: Strategy = "auto",
    amp: bool = False,
    channels_last: bool = False,
    progress: Callable[[int], None] | None = None,
    metric: MetricName = "error",
) -> list[dict[str, Any]]:
    """Evaluate every configuration not yet in ``table`` and append its row when its chunk
    finishes. Rows come out in the order of ``specs``, whether or not the sweep was resumed.

    ``table`` is None on ranks other than 0; ranks evaluate disjoint shards of the images and
    sum their counts, so the result equals a single-process run. ``metric`` names the score
    (error, top5, loss); the table's columns follow ``sweep_columns(metric)``.
    """
    dist = dist or Distributed()
    scorer = resolve_metric(metric, exp.anatomy.task)
    problem = None
    if table is not None:
        try:
            check_rows(table, specs, exp, scorer.name)
        except ValueError as err:
            problem = str(err)
    # Every rank learns rank 0's verdict, so that all stop with its message.
    done, problem = dist.from_main((table.done if table is not None else set(), problem))
    if problem:
        raise ValueError(problem)
    todo = [s for s in specs if s.config not in done]
    model_name = exp.describe()["model"]
    written: list[dict[str, Any]] = []
    for start in range(0, len(todo), max(chunk, 1)):
        part = todo[start : start + chunk]
        measured = measure_routes(
            exp.model,
            exp.loader(dist.rank, dist.world),
            [s.route for s in part],
            metric=scorer,
            strategy=strategy,
            amp=amp,
            channels_last=channels_last,
            on_batch=_scaled(progress, len(part)) if progress else None,
        )
        k = len(part)
        totals = dist.sum_(
            torch.cat(
                [
                    measured.sums,
                    measured.counts,
                    torch.tensor([measured.images], dtype=torch.float64),
                ]
            )
        )
        sums, counts, images = totals[:k].tolist(), totals[k : 2 * k].tolist(), int(totals[-1])
        value_key, sum_key = _value_columns(scorer.name)
        rows = [
            {
                **_described(s, model_name, exp.variant),
                value_key: scorer.finish(total, count) if images else math.nan,
                sum_key: int(round(total)) if scorer.counts_mistakes else total,
                "images": images,
            }
            for s, total, count in zip(part, sums, counts, strict=True)
        ]
        if table is not None:
            table.append(rows)
        written.extend(rows)
    return written


def _scaled(progress: Callable[[int], None], routes: int) -> Callable[[int], None]:
    """``progress`` for a chunk of ``routes`` routes: each batch measured is one unit per route."""
    return lambda batches: progress(batches * routes)


def _value_columns(metric: str) -> tuple[str, str]:
    """The columns of a row's measurement: the value (named after the metric) and its sum."""
    return ("error", "wrong") if metric == "error" else (metric, "sum")


def _described(spec: RouteSpec, model: str, variant: str) -> dict[str, Any]:
    """A row's columns that describe its configuration (all but the measurement)."""
    return {
        **spec.fields,
        "model": model,
        "variant": variant,
        "config": spec.config,
        "route": format_route(spec.route),
    }


def _as_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Rows as the text ``ResultsTable`` writes them (every cell a string, "" when empty)."""
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns,
                         dtype=object)  # fmt: skip
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)


def _targets_per_item(exp: Experiment) -> int:
    """How many predictions one item of the data is scored on: 1 image, or the window's
    tokens but the first (each predicted from those before it)."""
    return int(exp.data_identity.get("window", 2)) - 1 if exp.anatomy.task == "language" else 1


def check_rows(
    table: ResultsTable, specs: Sequence[RouteSpec], exp: Experiment, metric: str
) -> None:
    """Refuse a resumed table holding a row this sweep would not have written: a configuration
    not among ``specs``, one that appears twice, one whose describing columns (model, variant,
    route, deleted blocks, k, sample, seed, ...) or number of images differ from what this
    sweep writes for it, or one whose value is not what its sum gives (``error`` is not
    ``wrong / images``: an edited number). The sidecar has already been compared
    (``results.RESUME_KEYS``); this compares the rows themselves.

    Not caught: a row whose value and sum were both edited to agree with each other.

    Raises:
        ValueError: naming the first such row, by its line in the file and its config.
    """
    stored = table.text
    if stored.empty:
        if table.unproven:  # nothing to keep, and nothing proves what it was
            raise ValueError(
                f"cannot resume {table.path}: it holds no rows, and its sidecar, written by an "
                f"older version, records no {', '.join(table.unproven)}; --overwrite to start "
                "again"
            )
        return
    lines = table.lines or list(range(2, len(stored) + 2))
    model, variant = exp.describe()["model"], exp.variant
    value_key, sum_key = _value_columns(metric)
    measured = {value_key, sum_key, "images"}
    columns = [c for c in stored.columns if c not in measured]
    expected = _as_text([_described(s, model, variant) for s in specs], list(stored.columns))
    wanted = {row["config"]: row for row in expected.to_dict("records")}
    images = str(dataset_size(exp.dataset))
    per_item = _targets_per_item(exp)
    # ignore: a Metric's name is any str (a custom one's too); resolve_metric refuses unknown names
    scorer = resolve_metric(metric, exp.anatomy.task)  # type: ignore[arg-type]
    seen: dict[str, int] = {}

    def refuse(line: int, config: str, what: str) -> ValueError:
        return ValueError(
            f"cannot resume {table.path}: line {line} (config {config!r}) {what}; delete that "
            "line (what this sweep lacks is then computed), or --overwrite to start again"
        )

    for line, row in zip(lines, stored.to_dict("records"), strict=True):
        config = row["config"]
        if config not in wanted:
            raise refuse(line, config, f"is not one of this sweep's {len(specs)} configurations")
        if config in seen:
            raise refuse(line, config, f"repeats line {seen[config]}")
        seen[config] = line
        for column in columns:
            if row[column] != wanted[config][column]:
                raise refuse(
                    line,
                    config,
                    f"has {column}={row[column]!r}, where this sweep writes "
                    f"{column}={wanted[config][column]!r}",
                )
        if row["images"] != images:
            raise refuse(line, config, f"has images={row['images']!r}; this sweep has {images}")
        try:
            total, value = float(row[sum_key]), float(row[value_key])
        except ValueError:
            raise refuse(
                line, config, f"has a {value_key} or {sum_key} that is not a number"
            ) from None
        recomputed = scorer.finish(total, dataset_size(exp.dataset) * per_item)
        if not value == recomputed:
            raise refuse(
                line,
                config,
                f"has {value_key}={row[value_key]}, but its {sum_key} {row[sum_key]} over "
                f"{images} {exp.unit} gives {recomputed!r}: the row was changed after it was "
                "written",
            )
    missing = len(specs) - len(seen)
    if table.unproven and missing:
        raise ValueError(
            f"cannot resume {table.path}: its sidecar, written by an older version, records no "
            f"{', '.join(table.unproven)}, so rows computed now could come from other data or "
            f"weights than its {len(seen)} rows; such a table is kept only when complete "
            f"({missing} of {len(specs)} configurations are missing); --overwrite to start again"
        )


@dataclass
class SweepOutcome:
    """What ``sweep_to_table`` did. ``frame`` is the whole table (None on ranks other than 0);
    ``notes`` are what resuming found wrong and did about it."""

    path: Path
    configurations: int
    already_done: int
    frame: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)


def _configurations(
    kind: SweepKind,
    exp: Experiment,
    *,
    max_k: int,
    max_swaps: int,
    samples: int,
    seed: int,
    eligible: Eligible,
    keep_stage_first: bool,
) -> list[RouteSpec]:
    if kind == "single":
        return single_deletions(exp.anatomy)
    if kind == "multi":
        return multi_deletions(
            exp.anatomy, max_k=max_k, samples=samples, seed=seed, eligible=eligible
        )
    return random_swaps(
        exp.anatomy,
        max_swaps=max_swaps,
        samples=samples,
        seed=seed,
        keep_stage_first=keep_stage_first,
    )


def _check_output(
    path: Path,
    resume: bool,
    overwrite: bool,
    dist: Distributed,
    held: contextlib.ExitStack,
    inputs: list[tuple[str, Path]],
) -> None:
    """Refuse, before any work, an output that cannot be written, is one of the inputs, is
    being written by another process or would be overwritten (``claim_outputs``); on rank 0
    its lock goes into ``held``, for the whole sweep. Every rank learns rank 0's verdict, so
    that all stop with its message (not with a lost connection when rank 0 leaves the process
    group)."""
    problem = None
    if dist.is_main:
        try:
            held.enter_context(
                claim_outputs(
                    [path, sidecar_path(path)], inputs=inputs, resume=resume, overwrite=overwrite
                )
            )
        except ValueError as err:
            problem = str(err)
    problem = dist.from_main(problem)
    if problem:
        raise ValueError(problem)


def _check_written(table: ResultsTable) -> None:
    """Refuse to report rows that are not in the file: something other than this run (a
    writer that takes no lock, an editor) changed the table while the sweep held it."""
    on_disk, ours = read_table(table.path), table.frame
    if not on_disk.equals(ours):
        raise ValueError(
            f"{table.path} was changed by another program while this sweep wrote it: it holds "
            f"{len(on_disk)} rows, not the {len(ours)} this sweep wrote; run it again with "
            "--overwrite, or write elsewhere"
        )


def sweep_to_table(
    kind: SweepKind,
    path: str | Path,
    experiment: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_k: int = 8,
    max_swaps: int = 8,
    samples: int = 3,
    seed: int = 0,
    eligible: Eligible = "non-downsampling",
    keep_stage_first: bool = False,
    chunk: int = 64,
    strategy: Strategy = "auto",
    amp: bool = False,
    channels_last: bool = False,
    metric: MetricName = "error",
    on_start: Callable[[str, int], Callable[[int], None] | None] | None = None,
    baseline_only: bool = False,
    extra_metadata: Mapping[str, Any] | None = None,
) -> SweepOutcome:
    """Run one lesion sweep into a results table, resumably; distributed under torchrun.

    Args:
        kind: single (Fig. 3), multi (Fig. 5a) or reorder (Fig. 5b).
        path: the table (CSV; its sidecar goes beside it).
        experiment: ``open_experiment``'s keyword arguments (model, data, device).
        eligible: multi only, which blocks the draws come from (``Eligible``).
        keep_stage_first: reorder only, leave the first block of every stage in place.
        resume, overwrite: continue an earlier table, or replace it; without either an
            existing table is refused.
        on_start: called on rank 0 once the work is known, with a line that says what will run
            and the number of progress units; it may return a function that is told how many
            units have finished since it was last called.
        baseline_only: single only, measure the full network alone (``reproduce``'s baseline of
            the effective-path network).
        extra_metadata: more sidecar fields, over the ones the sweep records (``reproduce`` adds its
            stage and settings); the table is otherwise the one the ``sweep`` command writes.

    Raises:
        ValueError: an output that cannot be written or is one of the inputs, a table another
            process is writing, an existing table without --resume or --overwrite, a table
            from another experiment, or configurations that cannot run.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other")
    path = Path(path)
    with (
        from_environment(experiment.get("device", "auto")) as dist,
        contextlib.ExitStack() as held,  # rank 0: the table's lock, until the sweep ends
    ):
        _check_output(path, resume, overwrite, dist, held, input_paths(experiment))
        exp = open_experiment(**{**experiment, "device": dist.device})
        specs = _configurations(
            kind,
            exp,
            max_k=max_k,
            max_swaps=max_swaps,
            samples=samples,
            seed=seed,
            eligible=eligible,
            keep_stage_first=keep_stage_first,
        )
        if baseline_only:
            specs = specs[:1]
        recipe = (exp.loaded.metadata or {}).get("recipe") or {}
        metadata = {
            **run_metadata(),
            **exp.describe(),
            "table": "sweep",
            "sweep": kind,
            "description": SWEEP_KINDS[kind],
            "seed": seed,
            "samples": samples,
            "max_k": max_k if kind == "multi" else None,
            "max_swaps": max_swaps if kind == "reorder" else None,
            "eligible": eligible if kind == "multi" else None,
            "keep_stage_first": keep_stage_first if kind == "reorder" else None,
            "world_size": dist.world,
            "amp": amp,
            "metric": metric,
            # The K an effective-path network was trained with, as its checkpoint records it.
            **({"active_blocks": recipe["active_blocks"]} if recipe.get("active_blocks") else {}),
            **(extra_metadata or {}),
        }
        if exp.loaded.sha256 is None:  # no file names the weights: their own hash does
            metadata["weights_sha256"] = exp.weights_sha256
        if dist.is_main and overwrite:
            # Only now that the model, the data and the configurations are known to be good:
            # a run refused above must not cost the user the table it was told to replace.
            ResultsTable.overwrite(path)
        table, problem = None, None
        if dist.is_main:
            try:
                table = ResultsTable(path, sweep_columns(metric), metadata=metadata, resume=resume)
                check_rows(table, specs, exp, metric)  # before the start line says what is done
            except ValueError as err:
                problem = str(err)
        problem = dist.from_main(problem)  # a refused resume stops every rank with its line
        if problem:
            raise ValueError(problem)
        start = time.time()
        done = table.done if table is not None else set()
        todo = len([s for s in specs if s.config not in done])
        progress = None
        if dist.is_main and on_start is not None:
            about = exp.describe()
            line = (
                f"{kind} sweep of {about['model']} on {about['dataset']}: {len(specs)} "
                f"configurations ({len(specs) - todo} already done), {about['images']} {exp.unit} "
                f"-> {path}"
            )
            progress = on_start(line, todo * dataset_size(exp.shard(dist.rank, dist.world)))
        run_sweep(
            exp,
            specs,
            table,
            chunk=chunk,
            dist=dist,
            strategy=strategy,
            amp=amp,
            channels_last=channels_last,
            progress=progress,
            metric=metric,
        )
        if table is None:
            return SweepOutcome(path, len(specs), len(specs) - todo, None)
        if todo == 0 and not table.unproven and read_sidecar(path).get("complete"):
            # A finished table resumed: nothing was computed, so its provenance (command,
            # time, machine) stays that of the run that made it.
            table.notes.append(f"{path} is complete: nothing to do; it is left as it was")
        elif table.unproven:  # complete (check_rows saw to it), and left exactly as it was
            table.notes.append(
                f"{path}: its sidecar, written by an older version, records no "
                f"{', '.join(table.unproven)}; the table is complete, so nothing was added and "
                "its sidecar is left as it was"
            )
        else:
            table.write_metadata(complete=True, seconds=round(time.time() - start, 2))
        _check_written(table)
        return SweepOutcome(path, len(specs), len(specs) - todo, table.frame, table.notes)


def summarize_sweep(frame: pd.DataFrame, metric: MetricName = "error") -> pd.DataFrame:
    """What a sweep found, in a few rows: for single deletions the full network and the three
    blocks whose deletion costs most and least (a row says how many others are left out, its
    value NaN), the mean and the median; for multi and reorder the mean, median and range per k.

    Values are in the metric's own unit (error rates as fractions).
    """
    value = metric
    split = sweep_rows(frame)
    full, rest = split.full(value), split.deletions
    if rest.empty:
        return pd.DataFrame({"configuration": ["full network"], value: [full]})
    rest[value] = pd.to_numeric(rest[value], errors="coerce")
    if (rest["sweep"] == "single").all():
        ordered = rest.sort_values(value, ascending=False)
        costliest = ordered.head(3)
        cheapest = ordered.tail(3)
        cheapest = cheapest[~cheapest["config"].isin(costliest["config"])]
        rows = [{"configuration": "full network", value: full}]
        for part in (costliest, None, cheapest):
            if part is None:  # the middle is left out: say so, and where it is
                hidden = len(rest) - len(costliest) - len(cheapest)
                if hidden:
                    blocks = "block" if hidden == 1 else "blocks"
                    left_out = f"... {hidden} other {blocks} not shown (all in the table)"
                    rows.append({"configuration": left_out, value: math.nan})
                continue
            rows += [
                {
                    "configuration": f"without block {int(r['deleted'])} ({r['deleted_name']})",
                    value: r[value],
                }
                for _, r in part.iterrows()
            ]
        rows.append(
            {"configuration": f"mean of {len(rest)} single deletions", value: rest[value].mean()}
        )
        rows.append(
            {
                "configuration": f"median of {len(rest)} single deletions",
                value: rest[value].median(),
            }
        )
        return pd.DataFrame(rows)
    # The median beside the mean: a few draws that touch a fatal block pull the mean up (the
    # authors report medians).
    label = "swaps" if (rest["sweep"] == "reorder").all() else "deleted"
    stats = rest.groupby("k")[value].agg(["mean", "median", "min", "max", "count"]).reset_index()
    stats.insert(0, "configuration", [f"k = {int(k)} {label}" for k in stats["k"]])
    head = pd.DataFrame([{"configuration": "full network", "mean": full, "median": full}])
    head["count"] = 1
    summary = pd.concat([head, stats.drop(columns="k")], ignore_index=True)
    return summary[["configuration", "mean", "median", "min", "max", "count"]]


class _InMemory:
    """A model and batches already in memory, standing in for an ``Experiment`` in ``run_sweep``
    (which reads only these attributes)."""

    unit = "images"

    def __init__(self, model: torch.nn.Module, data: Any, name: str, variant: str) -> None:
        self.model = model
        self.anatomy = anatomy(model)
        # A generator is read once; every chunk of routes walks the data again.
        self._data = list(data) if iter(data) is data else data
        self._name = name
        self.variant = variant

    def loader(self, rank: int = 0, world: int = 1) -> Any:
        return self._data

    def describe(self) -> dict[str, Any]:
        return {
            "model": self._name,
            "variant": self.variant,
            "num_blocks": len(self.anatomy.blocks),
        }


def _variant_of(model: torch.nn.Module, found: Anatomy) -> str:
    """What ``Experiment.variant`` says of a loaded model, read from the module itself."""
    if found.blocks and all(b.shortcut is None for b in found.blocks):
        return "plain"
    if any(getattr(m, "survival", 1.0) < 1.0 for m in model.modules()):
        return "stochastic depth"
    return "residual"


def study_sweep(
    model: torch.nn.Module,
    data: Any,
    kind: SweepKind = "single",
    *,
    name: str | None = None,
    variant: str | None = None,
    max_k: int = 8,
    max_swaps: int = 8,
    samples: int = 3,
    seed: int = 0,
    eligible: Eligible = "non-downsampling",
    keep_stage_first: bool = False,
    chunk: int = 64,
    strategy: Strategy = "auto",
    amp: bool = False,
    channels_last: bool = False,
    metric: MetricName = "error",
    out: str | Path | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """One lesion sweep of a model in memory, as a DataFrame: the notebook's ``sweep`` command.

    The rows and columns are those of the table ``ensemble-lesion sweep KIND`` writes, as
    ``read_table`` reads it back, so a notebook and the command line agree cell for cell.

    Args:
        model: any network ``residual_blocks`` understands, used where it is (its device).
        data: any iterable of (inputs, targets) batches (a DataLoader, a list); a generator is
            read once into memory, since every chunk of configurations walks the data again.
        kind: "single" (Fig. 3), "multi" (Fig. 5a) or "reorder" (Fig. 5b).
        name: the table's ``model`` column; default the model's class name.
        variant: the ``variant`` column; default read from the model ("plain", "stochastic
            depth" or "residual").
        max_k, samples, seed, eligible: multi's draws (``multi_deletions``).
        max_swaps, samples, seed, keep_stage_first: reorder's draws (``random_swaps``).
        chunk, strategy, amp, channels_last, metric: as for the ``sweep`` command.
        out: also write the table (CSV and JSON sidecar) here; nothing is written without it.
        overwrite: replace an existing ``out``; without it an existing table is refused.

    Returns:
        One row per configuration, the full network first (``config == "baseline"``).

    Example:
        >>> table = study_sweep(model, make_loader(load_dataset("embedded", "test")))
        >>> table.sort_values("error").tail(3)
    """
    if kind not in SWEEP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SWEEP_KINDS)}; got {kind!r}")
    if out is not None:
        path = check_writable(out)
        if path.exists() and not overwrite:
            raise ValueError(f"{path} already exists; pass overwrite=True to replace it")
    exp = _InMemory(model, data, name or type(model).__name__, variant or "")
    exp.variant = variant or _variant_of(model, exp.anatomy)
    specs = _configurations(
        kind,
        exp,  # type: ignore[arg-type]  # reads .anatomy alone
        max_k=max_k,
        max_swaps=max_swaps,
        samples=samples,
        seed=seed,
        eligible=eligible,
        keep_stage_first=keep_stage_first,
    )
    settings = {"chunk": chunk, "strategy": strategy, "amp": amp, "channels_last": channels_last}
    # ignores below: _InMemory stands in for the Experiment, and settings mixes value types
    if out is None:
        rows = run_sweep(exp, specs, None, metric=metric, **settings)  # type: ignore[arg-type]
        frame = pd.DataFrame(
            [{c: r.get(c) for c in sweep_columns(metric)} for r in rows],
            columns=sweep_columns(metric),
            dtype=object,
        )
        # Through CSV text, as the command's table is read back: the same cells and dtypes.
        return pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    metadata = {
        **run_metadata(),
        **exp.describe(),
        "model_spec": "in memory",
        "checkpoint_sha256": None,
        "table": "sweep",
        "sweep": kind,
        "description": SWEEP_KINDS[kind],
        "seed": seed,
        "samples": samples,
        "max_k": max_k if kind == "multi" else None,
        "max_swaps": max_swaps if kind == "reorder" else None,
        "eligible": eligible if kind == "multi" else None,
        "keep_stage_first": keep_stage_first if kind == "reorder" else None,
        "world_size": 1,
        "amp": amp,
        "metric": metric,
    }
    if overwrite:
        ResultsTable.overwrite(path)
    table = ResultsTable(path, sweep_columns(metric), metadata=metadata)
    start = time.time()
    run_sweep(exp, specs, table, metric=metric, **settings)  # type: ignore[arg-type]
    table.write_metadata(complete=True, seconds=round(time.time() - start, 2))
    return table.frame
