"""Sub-networks of the unraveled view: evaluate them, and read them as one ensemble.

A sub-network keeps a subset of the residual blocks and deletes the rest; with n blocks there
are 2^n of them, evaluated together through the engine's shared-prefix tree.

Holds:
- ``evaluate_subnetworks``: top-1 error of every subnetwork (subset of kept blocks), exhaustive
  for small n and sampled otherwise, through the shared-prefix engine
- ``EnsembleView`` and ``ensemble_view``: the subnetworks' averaged softmax as an ensemble,
  against the full network and the subnetworks' mean error
- ``PathStudy`` and ``study_paths``: what ``ensemble-lesion paths`` runs, as one call: count a
  model's paths by length and, on request, evaluate its sub-networks, into the "paths" and
  "subnetworks" results tables
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..blocks.registry import Anatomy, anatomy
from ..blocks.runtime import resolve_device
from ..bounds import check_count
from ..core.engine import Strategy, count_route_mistakes
from ..models.specs import load_model
from ..outputs import claim_outputs, input_paths
from ..paths import PathSummary, format_blocks, path_table, summarize_paths
from ..results import sidecar_path, write_table
from .experiment import open_experiment

__all__ = [
    "MAX_EXHAUSTIVE",
    "EnsembleView",
    "PathStudy",
    "SubnetworkPlan",
    "ensemble_view",
    "evaluate_subnetworks",
    "study_paths",
    "subnetworks_path",
]

#: ``max_exhaustive`` when not given: all 2^n subsets up to this n, by device type (minutes
#: either way).
MAX_EXHAUSTIVE = {"cuda": 20, "cpu": 12}


@dataclass(frozen=True)
class EnsembleView:
    """The evaluated subnetworks as one ensemble (top-1 errors as fractions).

    ``ensemble_error``: the average of all evaluated subnetworks' softmax outputs;
    ``full_error``: the full network; ``mean_subnetwork_error``: the average of the individual
    subnetworks' errors.
    """

    ensemble_error: float
    full_error: float
    mean_subnetwork_error: float
    subnetworks: int
    images: int


def _subsets(n: int, max_exhaustive: int, samples: int, seed: int) -> list[tuple[int, ...]]:
    """Subsets of kept blocks, in trie order (by keep pattern, block 0 first)."""
    check_count("max_exhaustive", max_exhaustive, "max_exhaustive")  # 2^n patterns are listed
    check_count("seed", seed, "seed")
    if n <= max_exhaustive:
        patterns = list(product((False, True), repeat=n))
    else:
        check_count("samples", samples, "samples")
        rng = np.random.default_rng(seed)
        drawn = rng.random((samples, n)) < 0.5  # each block kept with probability 1/2
        patterns = sorted({tuple(bool(v) for v in row) for row in drawn})
    return [tuple(i for i, keep in enumerate(p) if keep) for p in patterns]


def _run_subnetworks(
    model: nn.Module,
    data: Iterable,
    max_exhaustive: int,
    samples: int,
    seed: int,
    strategy: Strategy,
    amp: bool,
) -> tuple[pd.DataFrame, EnsembleView]:
    found = anatomy(model)
    n = len(found.blocks)
    plain = [b.index for b in found.blocks if b.shortcut is None]
    if plain:
        raise ValueError(
            f"block(s) {format_blocks(plain)} have no shortcut, so a subnetwork that drops them "
            "is not a subset of paths; subnetworks are defined for residual networks only"
        )
    subsets = _subsets(n, max_exhaustive, samples, seed)
    full = tuple(range(n))
    routes = [list(s) for s in subsets]
    full_index = subsets.index(full) if full in subsets else len(routes)
    if full_index == len(routes):
        routes.append(list(full))  # evaluated for the comparison only, not a row
    num_sub = len(subsets)

    # The engine visits every route of a batch before it reports the batch (on_batch), so the
    # softmax sum of the current batch is complete when on_batch fires.
    state: dict[str, Tensor | int | None] = {"sum": None, "targets": None, "wrong": 0}

    def on_logits(i: int, logits: Tensor, targets: Tensor) -> None:
        if i >= num_sub:
            return
        p = torch.softmax(logits.double(), dim=1)  # (B, classes)
        acc = state["sum"]
        state["sum"] = p if acc is None else acc + p
        state["targets"] = targets

    def on_batch(_: int) -> None:
        acc, targets = state["sum"], state["targets"]
        if acc is not None:
            state["wrong"] = int(state["wrong"]) + int((acc.argmax(1) != targets).sum())  # type: ignore[union-attr,arg-type]
        state["sum"] = state["targets"] = None

    counts = count_route_mistakes(
        model, data, routes, strategy=strategy, amp=amp, on_logits=on_logits, on_batch=on_batch
    )
    errors = counts.errors
    total = counts.total
    frame = pd.DataFrame(
        {
            "kept": [format_blocks(s) for s in subsets],
            "num_kept": [len(s) for s in subsets],
            "error": errors[:num_sub],
            "images": [total] * num_sub,
        }
    )
    view = EnsembleView(
        ensemble_error=int(state["wrong"]) / max(total, 1),  # type: ignore[arg-type]
        full_error=errors[full_index],
        mean_subnetwork_error=float(np.mean(errors[:num_sub])),
        subnetworks=num_sub,
        images=total,
    )
    frame.attrs["ensemble"] = asdict(view)
    return frame, view


def evaluate_subnetworks(
    model: nn.Module,
    data: Iterable,
    *,
    max_exhaustive: int = 12,
    samples: int = 1024,
    seed: int = 0,
    strategy: Strategy = "auto",
    amp: bool = False,
    name: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Top-1 error of subnetworks: each keeps a subset of blocks and deletes the rest.

    With n <= ``max_exhaustive`` blocks all 2^n subsets are evaluated; otherwise ``samples``
    subsets drawn with each block kept with probability 1/2 (duplicates merged, seeded). The
    routes share prefixes in the engine's tree (a binary trie over keep/delete), so each batch
    runs about 2^(n+1) blocks instead of n·2^n. A deleted downsampling block keeps its
    projection, so every subset is a valid network.

    Args:
        name, out: with either, the table is the "subnetworks" table that ``ensemble-lesion
            paths --exhaustive`` writes (its ``model`` column first: ``name``, default the
            model's class name); ``out`` also writes it there (CSV and JSON sidecar, with
            ``results.write_table``). Nothing is written without ``out``.
        overwrite: replace an existing ``out``; without it an existing table is refused.

    Returns:
        One row per subset: ``kept`` (e.g. ``"0-3,5,7"``), ``num_kept``, ``error`` (a fraction)
        and ``images``. ``frame.attrs["ensemble"]`` holds the ``EnsembleView`` as a dict.

    Raises:
        ValueError: a block has no shortcut (a plain network); an ``out`` that exists without
            ``overwrite`` or cannot be written.

    Example:
        >>> table = evaluate_subnetworks(cifar_resnet(20), loader)   # 9 blocks: 512 rows
        >>> table.groupby("num_kept").error.mean()
    """
    outputs = [Path(out), sidecar_path(Path(out))] if out is not None else []
    with claim_outputs(outputs, overwrite=overwrite):  # refused before any work
        frame, view = _run_subnetworks(model, data, max_exhaustive, samples, seed, strategy, amp)
        if name is None and out is None:
            return frame
        frame.insert(0, "model", name or type(model).__name__)
        if out is not None:
            n = len(anatomy(model).blocks)
            every = n <= max_exhaustive
            metadata = {
                "model": name or type(model).__name__,
                "model_spec": "in memory",
                "checkpoint_sha256": None,
                "num_blocks": n,
                "images": view.images,
                "exhaustive": every,
                "max_exhaustive": max_exhaustive,
                "samples": None if every else samples,
                "seed": seed,
                "ensemble": frame.attrs["ensemble"],
            }
            write_table(Path(out), frame, "subnetworks", metadata)
        return frame


def ensemble_view(model: nn.Module, data: Iterable, **options: Any) -> EnsembleView:
    """Treat the subnetworks of ``evaluate_subnetworks`` as an ensemble: average their softmax
    outputs and compare its error with the full network's and the subnetworks' mean error.
    ``options`` are ``evaluate_subnetworks``' (max_exhaustive, samples, seed, strategy, amp).

    Example:
        >>> view = ensemble_view(model, loader)
        >>> view.ensemble_error, view.full_error, view.mean_subnetwork_error
    """
    return EnsembleView(**evaluate_subnetworks(model, data, **options).attrs["ensemble"])


@dataclass(frozen=True)
class SubnetworkPlan:
    """Which sub-networks a study evaluates, known before the slow part starts.

    ``every``: all 2^n subsets (n <= ``max_exhaustive``); otherwise ``samples`` subsets drawn
    by ``seed``, each block kept with probability 1/2, duplicates merged.
    """

    every: bool
    max_exhaustive: int
    samples: int
    seed: int
    images: int
    dataset: str


@dataclass
class PathStudy:
    """What ``study_paths`` found: the path counts, and the sub-networks where evaluated.

    ``describe`` is the results metadata of the model (and data, where evaluated);
    ``subnetworks`` the "subnetworks" table (one row per evaluated subset) with its ensemble
    view in ``subnetworks.attrs["ensemble"]``; ``*_path`` where each table was written.
    """

    describe: dict[str, Any]
    summary: PathSummary
    table: pd.DataFrame  # the "paths" table, one row per length
    table_path: Path | None = None
    plan: SubnetworkPlan | None = None
    subnetworks: pd.DataFrame | None = None
    subnetworks_path: Path | None = None

    @property
    def n(self) -> int:
        return self.summary.n

    @property
    def ensemble(self) -> EnsembleView | None:
        if self.subnetworks is None:
            return None
        return EnsembleView(**self.subnetworks.attrs["ensemble"])

    def error_by_blocks_kept(self) -> pd.DataFrame:
        """Count, mean, min and max error of the evaluated sub-networks per number of blocks
        kept (index ``num_kept``)."""
        if self.subnetworks is None:
            raise ValueError("no sub-networks were evaluated: pass exhaustive=True")
        return self.subnetworks.groupby("num_kept")["error"].agg(["count", "mean", "min", "max"])


def _refuse_plain(found: Anatomy) -> None:
    plain = [b.index for b in found.blocks if b.shortcut is None]
    if plain:
        raise ValueError(
            f"block(s) {format_blocks(plain)} have no shortcut, so the network does not unravel "
            "into 2^n paths; paths are defined for residual networks only"
        )


def describe_model(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """The model's blocks without loading any data (counting paths needs only n)."""
    loaded = load_model(
        experiment.get("model_spec"),
        weights_file=experiment.get("weights_file"),
        weights=experiment.get("weights"),
        device="cpu",
        model_args=experiment.get("model_args"),
    )
    found = anatomy(loaded.model)
    _refuse_plain(found)
    return {
        "model": loaded.arch + (" (random init)" if loaded.random_init else ""),
        "model_spec": loaded.spec,
        "checkpoint_sha256": loaded.sha256,
        "num_blocks": len(found.blocks),
    }


def subnetworks_path(table: str | Path) -> Path:
    """``paths.csv`` -> ``paths.subnetworks.csv``: where the sub-networks of a study go."""
    table = Path(table)
    return table.with_name(f"{table.stem}.subnetworks.csv")


def study_paths(
    experiment: Mapping[str, Any] | None = None,
    *,
    num_blocks: int | None = None,
    share: float = 0.95,
    exhaustive: bool = False,
    max_exhaustive: int | None = None,
    samples: int = 1024,
    seed: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    on_counted: Callable[[PathStudy], None] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> PathStudy:
    """Count a network's 2^n paths by length and, with ``exhaustive``, evaluate its
    sub-networks: what ``ensemble-lesion paths`` runs.

    Counting needs only n: from ``num_blocks``, or from the model of ``experiment`` (loaded on
    the CPU, no data read). With ``exhaustive`` the model and its test data are opened and
    every subset of kept blocks is evaluated (``evaluate_subnetworks``): all 2^n up to
    ``max_exhaustive`` blocks, ``samples`` drawn by ``seed`` above.

    Args:
        experiment: ``open_experiment``'s keyword arguments (model_spec, weights_file,
            weights, dataset, data_dir, download, limit, batch_size, device); its device is
            checked even where only paths are counted, so that an unusable one is refused.
        num_blocks: count the paths of any network with this many blocks instead.
        share: the central share of paths to find a range of lengths for.
        max_exhaustive: default ``MAX_EXHAUSTIVE`` for the model's device.
        out: where the "paths" table goes (CSV with a JSON sidecar); with ``exhaustive`` the
            sub-networks go beside it (``subnetworks_path``). Checked before any work and
            locked for the run (``outputs.claim_outputs``); None writes nothing.
        overwrite: replace tables that exist (without it they are refused).
        on_counted: called with the study once the paths are counted (and written), before
            the sub-networks are evaluated, so that a caller can show the counts first.
        extra_metadata: more sidecar fields for both tables (``reproduce`` adds its stage).

    Returns:
        The ``PathStudy``.

    Raises:
        ValueError: ``num_blocks`` with ``exhaustive``, a block without a shortcut (a plain
            network has no paths), an unusable device, an output path that cannot be written,
            is one of the inputs, exists without ``overwrite`` or is being written by another
            process, or a model and data that do not fit.

    Example:
        >>> study = study_paths({"model_spec": "ckpt.pt"}, exhaustive=True, out="paths.csv")
        >>> study.ensemble.ensemble_error, study.error_by_blocks_kept()
    """
    settings = dict(experiment or {})
    if num_blocks is not None and exhaustive:
        raise ValueError("exhaustive evaluates a model: give its experiment, not num_blocks")
    if not exhaustive:  # a device that cannot be used is refused, not ignored
        resolve_device(settings.get("device", "auto"))
    out_path = Path(out) if out is not None else None
    outputs: list[Path] = []
    if out_path is not None:
        outputs = [out_path, sidecar_path(out_path)]
        if exhaustive:
            outputs += [subnetworks_path(out_path), sidecar_path(subnetworks_path(out_path))]
    inputs = input_paths(settings) if num_blocks is None else []
    with claim_outputs(outputs, inputs=inputs, overwrite=overwrite):
        exp = None
        if num_blocks is not None:
            describe: dict[str, Any] = {"model": "any network", "num_blocks": num_blocks}
        elif exhaustive:
            exp = open_experiment(**settings)
            _refuse_plain(exp.anatomy)
            describe = exp.describe()
        else:
            describe = describe_model(settings)
        summary = summarize_paths(int(describe["num_blocks"]), share)
        study = PathStudy(describe, summary, path_table(summary.n, describe["model"]))
        if out_path is not None:
            metadata = {**describe, "n": summary.n, **summary.numbers(), **(extra_metadata or {})}
            study.table_path = write_table(out_path, study.table, "paths", metadata)
        if exp is not None:
            if max_exhaustive is None:
                max_exhaustive = MAX_EXHAUSTIVE["cuda" if exp.device.type == "cuda" else "cpu"]
            study.plan = SubnetworkPlan(
                every=summary.n <= max_exhaustive,
                max_exhaustive=max_exhaustive,
                samples=samples,
                seed=seed,
                images=int(describe["images"]),
                dataset=exp.dataset_name,
            )
        if on_counted is not None:
            on_counted(study)
        if exp is None or study.plan is None:
            return study

        plan = study.plan
        frame = evaluate_subnetworks(
            exp.model, exp.loader(), max_exhaustive=plan.max_exhaustive, samples=samples, seed=seed
        )
        frame.insert(0, "model", describe["model"])
        study.subnetworks = frame
        if out_path is not None:
            sub_meta = {
                **describe,
                "exhaustive": plan.every,
                "max_exhaustive": plan.max_exhaustive,
                "samples": None if plan.every else samples,
                "seed": seed,
                "ensemble": frame.attrs["ensemble"],
                **(extra_metadata or {}),
            }
            study.subnetworks_path = write_table(
                subnetworks_path(out_path), frame, "subnetworks", sub_meta
            )
        return study
