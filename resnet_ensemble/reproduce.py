"""Every paper figure, end to end: train (or reuse) the networks, run every analysis, plot, and
summarise the measured numbers beside the paper's.

Holds:
- ``Scale`` and ``QUICK`` / ``PAPER_SCALE``: how big each stage is
- ``Reproduction``: the stages, each skipped when its outputs are complete, so a crash costs only
  the stage in flight; ``run`` performs them in order
- ``write_summary``: ``summary.md`` with the paper's numbers beside ours

Outputs under ``out/``: ``checkpoints/`` (networks and their histories), ``tables/`` (results
tables with JSON sidecars), ``figures/`` (PNG and PDF), ``summary.md`` and ``stages.json``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import paper
from .anatomy import residual_blocks
from .archs import blocks_of_depth, parse_arch
from .data import check_data_dir, load_dataset
from .experiment import Experiment, open_experiment
from .gradient_analysis import analyze_gradients, write_gradient_report
from .paths import path_table, summarize_paths
from .results import (
    TABLES,
    ResultsTable,
    atomic_write_text,
    check_writable,
    history_path,
    read_sidecar,
    run_metadata,
    sweep_rows,
    write_table,
)
from .runtime import resolve_device
from .subnetworks import evaluate_subnetworks
from .sweeps import (
    SWEEP_COLUMNS,
    multi_deletions,
    random_swaps,
    run_sweep,
    single_deletions,
    swappable_groups,
)

__all__ = ["PAPER_SCALE", "QUICK", "STAGE_GROUPS", "Reproduction", "Scale", "stage_group"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Scale:
    """How big each stage is. The paper's scale is the default; ``QUICK`` fits a 2-core CPU."""

    depth: int = 110
    epochs: int = 164
    schedule: str = "step"
    train_limit: int | None = None
    test_images: int | None = None
    batch_size: int = 128
    max_k: int = 20
    max_swaps: int = 20
    samples: int = 10
    gradient_images: int = 128  # per batch
    gradient_batches: int = 8  # random training batches (samples_per_length in each)
    samples_per_length: int = 125  # per batch: 1,000 measurements per length in all
    sign_draws: int = 32
    subnetwork_images: int | None = 1000
    subnetwork_samples: int = 4096
    max_exhaustive: int = 20

    def analysis_only(self) -> str:
        """The fields that matter when a given model is analysed without training."""
        skip = {"depth", "epochs", "schedule", "train_limit", "batch_size"}
        fields = ", ".join(f"{k}={v!r}" for k, v in asdict(self).items() if k not in skip)
        return f"Scale({fields})"


PAPER_SCALE = Scale()
#: What ``--quick`` trains (``Scale.analysis_only`` leaves these fields out): a ResNet-20 for
#: 3 cosine epochs on 30,000 images.
_QUICK_TRAINING = Scale(depth=20, epochs=3, schedule="cosine", train_limit=30000)
#: Under 15 minutes on a 2-core CPU: the quick training, and analyses to match its 9 blocks
#: (all 2^9 sub-networks).
QUICK = replace(
    _QUICK_TRAINING,
    test_images=1000,
    max_k=6,
    max_swaps=6,
    samples=3,
    gradient_images=16,
    gradient_batches=4,
    samples_per_length=10,
    sign_draws=8,
    subnetwork_images=300,
    subnetwork_samples=512,
    max_exhaustive=9,
)
VARIANTS = ("resnet", "plain", "stochastic_depth", "effective_paths")
#: What ``only`` selects: a long analysis can be run a part at a time (on a CPU, the gradients of
#: a 54-block network first, since effective-path training takes its K from them).
STAGE_GROUPS = ("train", "sweeps", "paths", "gradients", "figures")


def stage_group(stage: str) -> str:
    """The group of a stage: ``train_resnet`` -> train, ``sweep_multi_resnet`` -> sweeps."""
    if stage.startswith("train") or stage == "training_table":
        return "train"
    if stage.startswith("sweep_") or stage == "effective_paths_error":
        return "sweeps"
    return stage


def effective_blocks(effective_lo: int, effective_hi: int, n: int) -> int:
    """K for effective-path training, the paper's way: the mean training path length K/2 at
    the centre of the effective range measured on the trained ResNet, so K = lo + hi (the
    paper: 5 + 17 = 22, and it used 23 of 54). Not a share of n: 23/54 of a small network is
    a different experiment."""
    return max(1, min(n, int(effective_lo) + int(effective_hi)))


#: Above this share of all paths the effective range is not "short paths" at all: training on
#: it tests nothing the paper claims (small n, where the range covers most paths).
DEGENERATE_PATH_SHARE = 0.5


def warmup_epochs(depth: int) -> float:
    """He et al. warmed ResNet-110 up at lr 0.01 for about 400 iterations (one CIFAR epoch of
    391): without it deep networks, the plain control above all, may not start to train."""
    return 1.0 if depth >= 110 else 0.0


class Reproduction:
    """The whole reproduction in ``out``; every stage is skipped once its outputs exist."""

    def __init__(
        self,
        out: str | Path,
        *,
        dataset: str,
        data_dir: str | None = None,
        download: bool = False,
        scale: Scale = PAPER_SCALE,
        model: str | None = None,
        weights_file: str | None = None,
        checkpoints: dict[str, str] | None = None,
        device: str = "auto",
        seed: int = 0,
        log: Log = print,
        command: str | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        unknown = sorted(set(only or ()) - set(STAGE_GROUPS))
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGE_GROUPS)}")
        self.only = frozenset(only or STAGE_GROUPS)
        self.out = Path(out)
        self.command = command or " ".join(
            shlex.quote(a) for a in ["ensemble-lesion", *sys.argv[1:]]
        )
        check_writable(self.out / "stages.json")
        self.dataset, self.data_dir, self.download = dataset, data_dir, download
        self.scale, self.device, self.seed, self.log = scale, device, seed, log
        self.model, self.weights_file = model, weights_file
        self.given = dict(checkpoints or {})
        self.tables = self.out / "tables"
        self.figures = self.out / "figures"
        self._preflight()
        for d in (self.tables, self.figures, self.out / "checkpoints"):
            d.mkdir(parents=True, exist_ok=True)
        self._manifest = self.out / "stages.json"
        self._done: dict[str, Any] = (
            json.loads(self._manifest.read_text()) if self._manifest.exists() else {}
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Refuse what would fail later (device, dataset, data files, model, depth) before
        anything is created: a refused run leaves no folder behind."""
        resolve_device(self.device)
        check_data_dir(self.dataset, self.data_dir)
        splits = ("test", "train") if self.trains else ("test",)
        for split in splits:  # reads one image of each split: missing or corrupt files fail now
            load_dataset(
                self.dataset, split, data_dir=self.data_dir, download=self.download, limit=1
            )
        if self.trains:
            parse_arch(f"resnet{self.scale.depth}")
        for spec in [self.model, *self.given.values()]:
            if spec:  # the model must load, fit the data, and have blocks the toolkit finds
                exp = open_experiment(
                    spec,
                    weights_file=self.weights_file if spec == self.model else None,
                    dataset=self.dataset,
                    data_dir=self.data_dir,
                    limit=1,
                    device="cpu",
                )
                residual_blocks(exp.model)

    @property
    def trains(self) -> bool:
        """Pretrained models (e.g. torchvision ImageNet ResNets) skip training and controls."""
        return self.model is None

    def _stage(self, name: str, fn: Callable[[], Any], inputs: list[str] | None = None) -> None:
        """Run ``fn`` unless done; a stage with ``inputs`` runs again when they have changed
        (the figures, once a later ``--only`` run adds tables)."""
        done = self._done.get(name)
        if done is not None and done.get("inputs") == inputs:
            self.log(f"[skip] {name}: done {done['finished']}")
            return
        if stage_group(name) not in self.only:
            self.log(f"[skip] {name}: not among the stages asked for")
            return
        self.log(f"[run]  {name}")
        start = time.time()
        fn()
        self._done[name] = {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.time() - start, 1),
            **({"inputs": inputs} if inputs is not None else {}),
        }
        atomic_write_text(self._manifest, json.dumps(self._done, indent=2))

    def checkpoint(self, variant: str) -> str:
        if variant in self.given:
            return self.given[variant]
        return str(self.out / "checkpoints" / f"{variant}.pt")

    # -- stages --------------------------------------------------------------------------------

    def _train(self, variant: str) -> None:
        from .training import TrainConfig, train

        if variant in self.given:
            self.log(f"       reusing {self.given[variant]}")
            return
        s = self.scale
        arch = f"{'plain' if variant == 'plain' else 'resnet'}{s.depth}"
        n = blocks_of_depth(s.depth)
        config = TrainConfig(
            arch=arch,
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            out=Path(self.checkpoint(variant)),
            epochs=s.epochs,
            batch_size=s.batch_size,
            schedule=s.schedule,  # type: ignore[arg-type]
            warmup_epochs=warmup_epochs(s.depth),
            stochastic_depth=0.5 if variant == "stochastic_depth" else None,
            active_blocks=self.effective_k(n) if variant == "effective_paths" else None,
            seed=self.seed,
            device=self.device,
            resume=True,
            limit=s.train_limit,
            test_limit=s.test_images,
            num_workers=1,
            log=lambda m: self.log(f"       {m}"),
        )
        train(config)

    def effective_k(self, n: int) -> int:
        """K from the effective range that the gradients stage measured on the ResNet."""
        grads = read_sidecar(self.tables / "gradients.csv")
        if "effective_lo" not in grads:
            raise ValueError(
                "effective-path training takes K from the ResNet's gradients: run the gradients "
                "stage first"
            )
        return effective_blocks(grads["effective_lo"], grads["effective_hi"], n)

    def _experiment(self, variant: str, limit: int | None = None) -> Experiment:
        spec = self.model if not self.trains else self.checkpoint(variant)
        limit = limit if limit is not None else self.scale.test_images
        return open_experiment(
            spec,
            weights_file=self.weights_file,
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            limit=limit,
            batch_size=256,
            device=self.device,
        )

    def _sweep(self, kind: str, variant: str) -> None:
        exp = self._experiment(variant)
        s = self.scale
        if kind == "single":
            specs = single_deletions(exp.anatomy)
        elif kind == "baseline":
            specs = single_deletions(exp.anatomy)[:1]
        elif kind == "multi":
            max_k = min(s.max_k, sum(not b.downsamples for b in exp.blocks))
            specs = multi_deletions(exp.anatomy, max_k=max_k, samples=s.samples, seed=self.seed)
        elif not swappable_groups(exp.anatomy):
            self.log("       no two blocks of the same shape: nothing to reorder")
            return
        else:
            specs = random_swaps(
                exp.anatomy, max_swaps=s.max_swaps, samples=s.samples, seed=self.seed
            )
        path = self.tables / f"{kind}_{variant}.csv"
        meta = {
            **run_metadata(),
            **exp.describe(),
            "table": "sweep",
            "sweep": kind,
            "seed": self.seed,
        }
        table = ResultsTable(path, SWEEP_COLUMNS, metadata=meta, resume=True)
        run_sweep(exp, specs, table)
        table.write_metadata(complete=True)

    def _paths(self) -> None:
        exp = self._experiment("resnet", limit=self.scale.subnetwork_images)
        n = len(exp.blocks)
        frame = path_table(n, exp.describe()["model"])
        path = self.tables / "paths.csv"
        numbers = summarize_paths(n, 0.95).numbers()
        write_table(path, frame, "paths", {**exp.describe(), "n": n, **numbers})
        if n > self.scale.max_exhaustive and self.scale.subnetwork_samples == 0:
            self.log(f"       {n} blocks: above --max-exhaustive, and no sub-networks sampled")
            return
        sub = evaluate_subnetworks(
            exp.model,
            exp.loader(),
            max_exhaustive=self.scale.max_exhaustive,
            samples=self.scale.subnetwork_samples,
            seed=self.seed,
        )
        view = sub.attrs["ensemble"]
        sub.insert(0, "model", exp.describe()["model"])
        sub_path = self.tables / "subnetworks.csv"
        meta = {**exp.describe(), "ensemble": view, "exhaustive": n <= self.scale.max_exhaustive}
        write_table(sub_path, sub, "subnetworks", meta)

    def _gradients(self) -> None:
        exp = self._experiment("resnet", limit=self.scale.gradient_images)
        split = exp.gradient_split("auto")  # the paper: random batches of the training set
        batches = exp.random_batches(
            self.scale.gradient_images, self.scale.gradient_batches, split=split, seed=self.seed
        )
        describe = {**exp.describe(), "split": split}
        analysis = analyze_gradients(
            exp.model,
            batches,
            model_name=describe["model"],
            samples_per_length=self.scale.samples_per_length,
            sign_draws=self.scale.sign_draws,
            seed=self.seed,
        )
        path = self.tables / "gradients.csv"
        write_table(path, analysis.table, "gradients", {**describe, **analysis.meta})
        write_gradient_report(
            analysis,
            self.out / "gradients.md",
            describe=describe,
            figures=["figures/fig6b_gradient_per_length.png", "figures/fig6c_total_gradient.png"],
        )

    def _training_table(self) -> None:
        rows = []
        for variant in ("resnet", "effective_paths"):
            history = history_path(self.checkpoint(variant))
            if not history.exists():
                continue
            frame = pd.read_csv(history)
            label = "residual" if variant == "resnet" else "effective paths"
            rows.append(frame.assign(variant=label)[list(TABLES["training"].columns)])
        if rows:
            write_table(self.tables / "training.csv", pd.concat(rows), "training")

    def _plots(self) -> None:
        from .plots import plot_all

        written = plot_all(sorted(self.tables.glob("*.csv")), self.figures)
        self.log(f"       {len(written)} figure files in {self.figures}")

    def run(self) -> Path:
        """Run every stage not yet done, then write ``summary.md``; returns its path."""
        variants = VARIANTS if self.trains else ("resnet",)
        if self.trains:  # effective paths last: its K comes from the ResNet's gradients
            for v in variants[:-1]:
                self._stage(f"train_{v}", lambda v=v: self._train(v))
        for v in variants:
            if v != "effective_paths":
                self._stage(f"sweep_single_{v}", lambda v=v: self._sweep("single", v))
        self._stage("sweep_multi_resnet", lambda: self._sweep("multi", "resnet"))
        self._stage("sweep_reorder_resnet", lambda: self._sweep("reorder", "resnet"))
        self._stage("paths", self._paths)
        self._stage("gradients", self._gradients)
        if self.trains:
            self._stage("train_effective_paths", lambda: self._train("effective_paths"))
            self._stage("effective_paths_error", lambda: self._sweep("baseline", "effective_paths"))
            self._stage("training_table", self._training_table)
        tables = sorted(p.name for p in self.tables.glob("*.csv"))
        self._stage("figures", self._plots, inputs=tables)
        return write_summary(self)


def _table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def write_summary(rep: Reproduction) -> Path:
    """``summary.md``: each measured number beside the paper's, with the command that ran."""
    t = rep.tables
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
    k_eff = effective_blocks(grads["effective_lo"], grads["effective_hi"], n) if grads else None
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
        return rows if rep.trains else ()

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
    synthetic = bool(meta.get("synthetic_data")) or rep.dataset == "synthetic"
    model = meta.get("model", "?")
    images = meta.get("images", "?")
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
        f"Command: `{rep.command}`",
        "",
        f"Model: {model}; dataset: {rep.dataset}"
        f"{' (synthetic, smoke test only)' if synthetic else ''}, {images} test images; "
        f"scale: `{rep.scale if rep.trains else rep.scale.analysis_only()}`",
        "",
        "| finding | paper (ResNet-110, CIFAR-10) | measured here |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Figures are in `figures/` (PNG and PDF), tables in `tables/` (CSV with JSON sidecars), "
        "the gradient report in `gradients.md`.",
        "",
    ]
    path = rep.out / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def scale_for(quick: bool, **overrides: Any) -> Scale:
    base = QUICK if quick else PAPER_SCALE
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
