"""Every paper figure, end to end: train (or reuse) the networks, run every analysis, plot, and
summarise the measured numbers beside the paper's.

Holds:
- ``Scale`` and ``QUICK`` / ``PAPER_SCALE``: how big each stage is
- ``Reproduction``: the stages, run in order by ``run``; ``plan`` says what each would do
- the stages' work is the commands' own (``sweep_to_table``, ``study_paths``, ...); ``summary``
  writes ``summary.md`` with the paper's numbers beside ours, from the tables' sidecars

Outputs under ``out/``: ``checkpoints/`` (networks and their histories), ``tables/`` (results
tables with JSON sidecars), ``figures/`` (PNG and PDF), ``summary.md`` and ``stages.json``.

When a stage counts as done (``stages.json`` records, per stage, its settings, the inputs it read
and the sha256 of each file it wrote): only when it finished with the same settings (seed, data,
sizes, given models' sha256), read the same inputs (the sha256 of the checkpoint it evaluated,
the K it trained with) and every file it wrote is still there, byte for byte. So a deleted or
edited table is recomputed, a stage whose network was retrained runs again, and a fresh clone
(whose checkpoints git does not hold) runs every stage: ``stages.json`` alone never skips one.
A run with other settings into a folder that holds results of the old ones is refused, naming
the settings, before anything runs; ``overwrite`` recomputes the stages they affect instead.
A stage killed mid-way resumes its own partial outputs when run again with the same settings.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

import pandas as pd

from ..archs import blocks_of_depth, parse_arch
from ..atomic import remove_stale_temporaries_in
from ..blocks.registry import residual_blocks
from ..blocks.runtime import resolve_device
from ..data.datasets import Split, check_data_dir, load_dataset
from ..models.checkpoints import file_sha256
from ..names import SweepKind
from ..results import (
    TABLES,
    atomic_write_text,
    check_writable,
    history_path,
    read_sidecar,
    write_table,
)
from .experiment import Experiment, open_experiment
from .gradient_analysis import samples_table_path, study_gradients, write_gradient_report
from .subnetworks import describe_model, study_paths
from .summary import write_summary
from .sweeps import swappable_groups, sweep_to_table

__all__ = [
    "PAPER_SCALE",
    "QUICK",
    "STAGE_GROUPS",
    "Decision",
    "Reproduction",
    "Scale",
    "Stage",
    "stage_group",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Scale:
    """How big each stage is. The paper's scale is the default; ``QUICK`` fits a 2-core CPU."""

    depth: int = 110
    epochs: int = 164
    schedule: Literal["step", "cosine"] = "step"
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


def warmup_epochs(depth: int) -> float:
    """He et al. warmed ResNet-110 up at lr 0.01 for about 400 iterations (one CIFAR epoch of
    391): without it deep networks, the plain control above all, may not start to train."""
    return 1.0 if depth >= 110 else 0.0


#: The ``Scale`` fields each kind of stage depends on (besides the data and the seed): what a
#: stage's record in ``stages.json`` and its tables' sidecars hold as its settings.
TRAIN_FIELDS = ("depth", "epochs", "schedule", "train_limit", "test_images", "batch_size")
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "single": ("test_images",),
    "baseline": ("test_images",),
    "multi": ("test_images", "max_k", "samples"),
    "reorder": ("test_images", "max_swaps", "samples"),
    "paths": ("subnetwork_images", "subnetwork_samples", "max_exhaustive"),
    "gradients": ("gradient_images", "gradient_batches", "samples_per_length", "sign_draws"),
}
Action = Literal["run", "resume", "skip", "refuse"]


@dataclass
class Stage:
    """One step of the reproduction: what it depends on and what it may write."""

    name: str
    work: Callable[[], Any]  # may return the files it wrote (the figures)
    settings: dict[str, Any]  # what the user chose that this stage's outputs depend on
    outputs: list[str]  # paths under ``out`` it may write
    needs: list[str] = field(default_factory=list)  # earlier stages whose outputs it reads
    inputs: Callable[[], dict[str, Any]] = dict  # what it reads, as it is now (sha256s, K)


@dataclass
class Decision:
    """What a stage will do and why, in words a log line can carry."""

    action: Action
    reason: str
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # setting: (was, now)


def _differences(was: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (was.get(k), now.get(k)) for k in {**was, **now} if was.get(k) != now.get(k)}


def _file_sha(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return file_sha256(path)
    except OSError:
        return "unreadable"


def _recorded_outputs(record: Any) -> list[str]:
    """The files a stage's record says it wrote (none for a record that is not one)."""
    outputs = record.get("outputs") if isinstance(record, dict) else None
    return [str(o) for o in outputs] if isinstance(outputs, dict) else []


def _changed_text(changed: Mapping[str, tuple[Any, Any]]) -> str:
    """``seed 0 (now 7), max_k 6 (now 1)``: what the old results used, and this run."""
    return ", ".join(f"{key} {was!r} (now {now!r})" for key, (was, now) in changed.items())


class _SweepSizes(TypedDict, total=False):
    """The size options a sweep kind's command takes (``sweep_to_table``'s keywords)."""

    max_k: int
    max_swaps: int
    samples: int


#: A reproduction's sweep stages: the lesion sweeps, and "baseline" (the full network alone).
_SweepStage = Literal[SweepKind, "baseline"]


class Reproduction:
    """The whole reproduction in ``out``: a stage is skipped only when its record in
    ``stages.json`` proves it done with these settings (see the module's docstring)."""

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
        overwrite: bool = False,
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
        self.overwrite = overwrite
        self.given = dict(checkpoints or {})
        self.tables = self.out / "tables"
        self.figures = self.out / "figures"
        #: The sha256 of each given model (``--model``, ``--resnet`` ...), read by the preflight.
        self._given_sha: dict[str, str | None] = {}
        self._preflight()
        self._manifest = self.out / "stages.json"
        self._done: dict[str, Any] = self._read_manifest()
        self._current: Stage | None = None
        # What a run killed mid-write (SIGKILL cannot be caught) left in the folders it owns.
        for folder in (self.out, self.tables, self.figures, self.out / "checkpoints"):
            remove_stale_temporaries_in(folder)

    # -- bookkeeping -------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Refuse what would fail later (device, dataset, data files, model, depth) before
        anything is created: a refused run leaves no folder behind."""
        resolve_device(self.device)
        check_data_dir(self.dataset, self.data_dir)
        splits: tuple[Split, ...] = ("test", "train") if self.trains else ("test",)
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
                self._given_sha[spec] = exp.describe()["checkpoint_sha256"]

    def _read_manifest(self) -> dict[str, Any]:
        if not self._manifest.exists():
            return {}
        try:
            done = json.loads(self._manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            if self.overwrite:
                return {}
            raise ValueError(
                f"{self._manifest} cannot be read ({err}), so nothing in {self.out} can be "
                "trusted as done: pass --overwrite to recompute it, or choose another --out"
            ) from None
        if not isinstance(done, dict):
            if self.overwrite:
                return {}
            raise ValueError(
                f"{self._manifest} is not a JSON object: pass --overwrite or another --out"
            )
        return done

    @property
    def trains(self) -> bool:
        """Pretrained models (e.g. torchvision ImageNet ResNets) skip training and controls."""
        return self.model is None

    def checkpoint(self, variant: str) -> str:
        if variant in self.given:
            return self.given[variant]
        return str(self.out / "checkpoints" / f"{variant}.pt")

    def _sha256(self, rel: str) -> str | None:
        """The sha256 of ``out/rel``; None where it is missing, "unreadable" where it cannot be
        read (either way not what a stage wrote)."""
        return _file_sha(self.out / rel)

    # -- the stages: settings, inputs and outputs ----------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "data_dir": self.data_dir, "seed": self.seed}

    def _given_settings(self, variant: str) -> dict[str, Any]:
        """A model the user gave (``--model`` or a reused checkpoint), named and hashed."""
        if self.model:
            return {"model": self.model, "model_sha256": self._given_sha.get(self.model)}
        if variant in self.given:
            spec = self.given[variant]
            return {"checkpoint": spec, "checkpoint_sha256": self._given_sha.get(spec)}
        return {}

    def _settings(self, kind: str, variant: str) -> dict[str, Any]:
        sizes = {f: getattr(self.scale, f) for f in STAGE_FIELDS[kind]}
        return {**self._common(), **self._given_settings(variant), **sizes}

    def _train_settings(self, variant: str) -> dict[str, Any]:
        if variant in self.given:
            return {**self._common(), **self._given_settings(variant)}
        sizes = {f: getattr(self.scale, f) for f in TRAIN_FIELDS}
        return {**self._common(), **sizes}

    def _checkpoint_inputs(self, variant: str) -> Callable[[], dict[str, Any]]:
        """The network a stage evaluates, when this reproduction trained it (a given one is
        among the settings instead)."""

        def inputs() -> dict[str, Any]:
            if not self.trains or variant in self.given:
                return {}
            rel = f"checkpoints/{variant}.pt"
            return {rel: self._sha256(rel)}

        return inputs

    def _needs(self, variant: str) -> list[str]:
        return [f"train_{variant}"] if self.trains and variant not in self.given else []

    def _effective_k_input(self) -> dict[str, Any]:
        if "effective_paths" in self.given:
            return {}
        grads = read_sidecar(self.tables / "gradients.csv")
        n = blocks_of_depth(self.scale.depth)
        ok = "effective_lo" in grads and "effective_hi" in grads
        return {
            "effective_k": effective_blocks(grads["effective_lo"], grads["effective_hi"], n)
            if ok
            else None
        }

    def _history_inputs(self) -> dict[str, Any]:
        """The training histories the training table copies (a given checkpoint's lies beside
        it, outside ``out``: named by its full path)."""
        found = {}
        for variant in ("resnet", "effective_paths"):
            path = history_path(self.checkpoint(variant))
            if path.exists():
                inside = path.is_relative_to(self.out)
                found[str(path.relative_to(self.out) if inside else path)] = _file_sha(path)
        return found

    def _table_inputs(self) -> dict[str, Any]:
        return {
            f"tables/{p.name}": self._sha256(f"tables/{p.name}")
            for p in sorted(self.tables.glob("*.csv"))
        }

    def stages(self) -> list[Stage]:
        """Every stage of this reproduction, in the order they run."""

        def table(name: str) -> list[str]:
            return [f"tables/{name}.csv", f"tables/{name}.json"]

        def sweep(kind: _SweepStage, variant: str, name: str | None = None) -> Stage:
            label = "baseline_effective_paths" if kind == "baseline" else f"{kind}_{variant}"
            return Stage(
                name or f"sweep_{kind}_{variant}",
                lambda: self._sweep(kind, variant),
                self._settings(kind, variant),
                table(label),
                self._needs(variant),
                self._checkpoint_inputs(variant),
            )

        def train(variant: str) -> Stage:
            own = variant not in self.given
            files = [f"checkpoints/{variant}.pt", f"checkpoints/{variant}.history.csv"]
            return Stage(
                f"train_{variant}",
                lambda: self._train(variant),
                self._train_settings(variant),
                [*files, f"checkpoints/{variant}.history.json"] if own else [],
                ["gradients"] if own and variant == "effective_paths" else [],
                self._effective_k_input if variant == "effective_paths" else dict,
            )

        variants = VARIANTS if self.trains else ("resnet",)
        stages: list[Stage] = []
        if self.trains:  # effective paths last: its K comes from the ResNet's gradients
            stages += [train(v) for v in variants[:-1]]
        stages += [sweep("single", v) for v in variants if v != "effective_paths"]
        stages += [sweep("multi", "resnet"), sweep("reorder", "resnet")]
        stages.append(
            Stage(
                "paths",
                self._paths,
                self._settings("paths", "resnet"),
                [*table("paths"), *table("paths.subnetworks")],
                self._needs("resnet"),
                self._checkpoint_inputs("resnet"),
            )
        )
        stages.append(
            Stage(
                "gradients",
                self._gradients,
                self._settings("gradients", "resnet"),
                [*table("gradients"), *table("gradients_samples"), "gradients.md"],
                self._needs("resnet"),
                self._checkpoint_inputs("resnet"),
            )
        )
        if self.trains:
            stages.append(train("effective_paths"))
            stages.append(sweep("baseline", "effective_paths", "effective_paths_error"))
            stages.append(
                Stage(
                    "training_table",
                    self._training_table,
                    self._train_settings("resnet"),
                    table("training"),
                    [s for s in ("train_resnet", "train_effective_paths")],
                    self._history_inputs,
                )
            )
        makers = [s.name for s in stages if any(o.startswith("tables/") for o in s.outputs)]
        stages.append(Stage("figures", self._plots, {}, [], makers, self._table_inputs))
        return stages

    # -- deciding --------------------------------------------------------------------------------

    def _decide(self, stage: Stage, remade: Collection[str] | None = None) -> Decision:
        """What ``stage`` does now. ``remade``: the earlier stages a plan expects to run (their
        outputs are not made yet); None when they have run, so the inputs are read as they are."""
        rec = self._done.get(stage.name)
        recorded = _recorded_outputs(rec)
        present = [o for o in dict.fromkeys([*stage.outputs, *recorded]) if (self.out / o).exists()]
        asked = stage_group(stage.name) in self.only
        upstream = [n for n in stage.needs if remade is not None and n in remade]
        inputs = {} if upstream else stage.inputs()
        missing = [k for k, v in inputs.items() if v is None]

        if not isinstance(rec, dict) or not isinstance(rec.get("settings"), dict):
            if present and rec is not None:
                why = "recorded by an older version that did not note its settings"
            elif present:
                why = f"{present[0]} is there, but {self._manifest.name} does not say what made it"
            else:
                why = ""
            if why and not self.overwrite:
                decision = Decision("refuse", why)
            else:
                decision = Decision("run", f"--overwrite: {why}" if why else "not run yet")
        else:
            changed = _differences(rec["settings"], stage.settings)
            if changed and present and not self.overwrite:
                decision = Decision("refuse", _changed_text(changed), changed)
            elif changed:
                pre = "--overwrite: " if present else ""
                decision = Decision("run", f"{pre}settings changed: {_changed_text(changed)}")
            elif upstream:
                decision = Decision("run", f"its input is remade by {upstream[0]}")
            elif missing:
                decision = Decision("run", f"its input {missing[0]} is missing")
            elif rec.get("inputs") != inputs:
                last_inputs = rec.get("inputs")
                was: dict[str, Any] = last_inputs if isinstance(last_inputs, dict) else {}
                changes = (k for k in {**was, **inputs} if was.get(k) != inputs.get(k))
                key = next(changes, "(its record of inputs)")
                decision = Decision("run", f"its input {key} has changed since it ran")
            elif "finished" not in rec:
                decision = Decision("resume", f"interrupted (started {rec.get('started')})")
            else:
                wrote = rec.get("outputs")
                wrote = wrote if isinstance(wrote, dict) else {"(its list of outputs)": "?"}
                gone = [o for o, sha in wrote.items() if self._sha256(o) != sha]
                if not gone:
                    return Decision("skip", f"done {rec['finished']}")
                lost = not (self.out / gone[0]).exists()
                decision = Decision(
                    "run", f"{gone[0]} {'is missing' if lost else 'is not the file it wrote'}"
                )
        if not asked:
            return Decision("skip", "not among the stages asked for")
        if missing and not upstream and decision.action != "refuse":
            return Decision(
                "refuse",
                f"{stage.name} needs {missing[0]}, which is missing: run the stage that makes it "
                "(leave out --only)",
            )
        return decision

    def plan(self) -> list[tuple[str, Decision]]:
        """What each stage would do and why, in order; runs and writes nothing."""
        remade: list[str] = []
        steps = []
        for stage in self.stages():
            decision = self._decide(stage, remade)
            if decision.action in ("run", "resume"):
                remade.append(stage.name)
            steps.append((stage.name, decision))
        return steps

    def refusal(self, steps: list[tuple[str, Decision]]) -> str | None:
        """One line for every stage the plan refuses, or None."""
        refused = [(name, d) for name, d in steps if d.action == "refuse"]
        if not refused:
            return None
        changed: dict[str, tuple[Any, Any]] = {}
        for _, d in refused:
            changed.update(d.changed)
        names = ", ".join(name for name, _ in refused[:3])
        if len(refused) > 3:
            names += f" and {len(refused) - 3} more"
        if changed:
            return (
                f"{self.out} holds results made with other settings ({_changed_text(changed)}; "
                f"stages {names}): pass --overwrite to recompute the stages they affect, or "
                "choose another --out"
            )
        first = refused[0][1].reason
        if "needs" in first:
            return first
        return (
            f"{self.out}: {first} (stages {names}): pass --overwrite to recompute them, or "
            "choose another --out"
        )

    def _remove_outputs(self, stage: Stage) -> None:
        """A stage that starts afresh first removes what it (or an older run) left: a sweep
        table or a checkpoint would otherwise be resumed from another experiment."""
        recorded = _recorded_outputs(self._done.get(stage.name))
        for rel in dict.fromkeys([*stage.outputs, *recorded]):
            path = self.out / rel
            if path.is_file() or path.is_symlink():
                path.unlink()

    def _record(self, name: str, record: dict[str, Any]) -> None:
        self._done[name] = record
        atomic_write_text(self._manifest, json.dumps(self._done, indent=2))

    def _stage(self, stage: Stage) -> None:
        decision = self._decide(stage)
        if decision.action == "refuse":
            raise ValueError(self.refusal([(stage.name, decision)]))
        if decision.action == "skip":
            self.log(f"[skip] {stage.name}: {decision.reason}")
            return
        self.log(f"[run]  {stage.name}: {decision.reason}")
        if decision.action == "run":
            self._remove_outputs(stage)
        inputs = stage.inputs()
        record = {"settings": stage.settings, "inputs": inputs}
        self._record(stage.name, {**record, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        start = time.time()
        self._current = stage
        try:
            written = stage.work() or []
        finally:
            self._current = None
        files = [*stage.outputs, *(str(Path(p).relative_to(self.out)) for p in written)]
        outputs = {
            rel: self._sha256(rel) for rel in dict.fromkeys(files) if (self.out / rel).is_file()
        }
        self._record(
            stage.name,
            {
                **record,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "seconds": round(time.time() - start, 1),
                "command": self.command,
                "outputs": outputs,
            },
        )

    def _about(self) -> dict[str, Any]:
        """What a table's sidecar says about the stage that made it: the summary reads it."""
        stage = self._current
        if stage is None:
            return {}
        return {
            "reproduce": {"stage": stage.name, "command": self.command, "settings": stage.settings}
        }

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
            schedule=s.schedule,
            warmup_epochs=warmup_epochs(s.depth),
            stochastic_depth=0.5 if variant == "stochastic_depth" else None,
            active_blocks=self.effective_k(n) if variant == "effective_paths" else None,
            seed=self.seed,
            device=self.device,
            resume=True,  # continues only its own interrupted run: a fresh start removed the file
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

    def _experiment_args(self, variant: str, limit: int | None = None) -> dict[str, Any]:
        """``open_experiment``'s arguments for a variant: what the CLI's commands pass too."""
        return {
            "model_spec": self.model if not self.trains else self.checkpoint(variant),
            "weights_file": self.weights_file,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "download": self.download,
            "limit": limit if limit is not None else self.scale.test_images,
            "batch_size": 256,
            "device": self.device,
        }

    def _experiment(self, variant: str, limit: int | None = None) -> Experiment:
        return open_experiment(**self._experiment_args(variant, limit))

    def _sweep(self, kind: _SweepStage, variant: str) -> None:
        """The ``sweep`` command's work (``sweep_to_table``), with this stage in the sidecar."""
        s = self.scale
        extra = self._about()
        max_k = s.max_k
        if kind == "baseline":
            extra = {**extra, "sweep": "baseline", "description": "the full network alone"}
        elif kind in ("multi", "reorder"):
            found = self._experiment(variant).anatomy  # what the model allows, before the work
            max_k = min(s.max_k, sum(not b.downsamples for b in found.blocks))
            if kind == "reorder" and not swappable_groups(found):
                self.log("       no two blocks of the same shape: nothing to reorder")
                return
        # Only the options the kind's command takes: the others keep the command's defaults,
        # which its sidecar records.
        sizes: dict[str, _SweepSizes] = {
            "multi": {"max_k": max_k, "samples": s.samples},
            "reorder": {"max_swaps": s.max_swaps, "samples": s.samples},
        }
        size = sizes.get(kind, _SweepSizes())
        sweep_to_table(
            "single" if kind == "baseline" else kind,
            self.tables / f"{kind}_{variant}.csv",
            {**self._experiment_args(variant), "on_note": lambda m: self.log(f"       {m}")},
            resume=True,  # continues only its own interrupted run: a fresh start removed it
            **size,
            seed=self.seed,
            baseline_only=kind == "baseline",
            extra_metadata=extra,
        )

    def _paths(self) -> None:
        """The ``paths --exhaustive`` command's work (``study_paths``), with this stage in the
        sidecars: ``paths.csv`` and ``paths.subnetworks.csv``."""
        s = self.scale
        experiment = self._experiment_args("resnet", limit=s.subnetwork_images)
        exhaustive = True
        if s.subnetwork_samples == 0:  # count n first: above max_exhaustive nothing is drawn
            n = int(describe_model(experiment)["num_blocks"])
            exhaustive = n <= s.max_exhaustive
            if not exhaustive:
                self.log(f"       {n} blocks: above --max-exhaustive, and no sub-networks sampled")
        study_paths(
            experiment,
            exhaustive=exhaustive,
            max_exhaustive=s.max_exhaustive,
            samples=s.subnetwork_samples,
            seed=self.seed,
            out=self.tables / "paths.csv",
            overwrite=True,  # the stage removed its old outputs; a killed run left partial ones
            extra_metadata=self._about(),
        )

    def _gradients(self) -> None:
        """The ``gradients`` command's work (``study_gradients``: the paper's random training
        batches), with this stage in the sidecars; the report points at the run's figures."""
        s = self.scale
        study = study_gradients(
            self._experiment_args("resnet", limit=s.gradient_images),
            images=s.gradient_images,
            batches=s.gradient_batches,
            split="auto",
            samples_per_length=s.samples_per_length,
            sign_draws=s.sign_draws,
            seed=self.seed,
            out=self.tables / "gradients.csv",
            overwrite=True,
            extra_metadata=self._about(),
        )
        write_gradient_report(
            study.analysis,
            self.out / "gradients.md",
            describe=study.describe,
            figures=["figures/fig6b_gradient_per_length.png", "figures/fig6c_total_gradient.png"],
        )

    def _training_table(self) -> None:
        from ..models.checkpoints import file_sha256

        rows = []
        networks: dict[str, Any] = {}  # per variant: its history's sidecar and checkpoint hash
        for variant in ("resnet", "effective_paths"):
            history = history_path(self.checkpoint(variant))
            if not history.exists():
                continue
            frame = pd.read_csv(history)
            label = "residual" if variant == "resnet" else "effective paths"
            rows.append(frame.assign(variant=label)[list(TABLES["training"].columns)])
            ckpt = Path(self.checkpoint(variant))
            networks[label] = {
                **read_sidecar(history),
                "checkpoint": str(ckpt),
                "checkpoint_sha256": file_sha256(ckpt) if ckpt.is_file() else None,
                "history": str(history),
                "epochs": len(frame),
            }
        if rows:
            meta = {**self._about(), "dataset": self.dataset, "networks": networks}
            write_table(self.tables / "training.csv", pd.concat(rows), "training", meta)

    def _plots(self) -> list[Path]:
        from ..viz.plots import plot_all

        samples = samples_table_path(self.tables / "gradients.csv")  # no figure of its own
        tables = [p for p in sorted(self.tables.glob("*.csv")) if p != samples]
        written = plot_all(tables, self.figures)
        self.log(f"       {len(written)} figure files in {self.figures}")
        return [Path(p) for p in written]

    def run(self) -> Path:
        """Run every stage not proven done, then write ``summary.md``; returns its path.

        Raises:
            ValueError: before anything runs, when a stage would replace results made with
                other settings (without ``overwrite``), or needs an output of a stage not asked
                for that is missing; one line naming the settings or the file.
        """
        refusal = self.refusal(self.plan())
        if refusal:
            raise ValueError(refusal)
        for d in (self.tables, self.figures, self.out / "checkpoints"):
            d.mkdir(parents=True, exist_ok=True)
        for stage in self.stages():
            self._stage(stage)
        return write_summary(self.out, self.tables, self.trains, _SETTING_ORDER)


#: The order settings are listed in the summary: the data, then ``Scale``'s fields.
_SETTING_ORDER = ("dataset", "data_dir", "seed", "model", "checkpoint", "variant", *asdict(Scale()))


def scale_for(quick: bool, **overrides: Any) -> Scale:
    base = QUICK if quick else PAPER_SCALE
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
