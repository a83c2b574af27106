"""``reproduce`` end to end on tiny synthetic runs: every stage, every figure, skipping on re-run,
surviving SIGKILL, and the ImageNet path (a pretrained torchvision model, no training) on a tiny
fake ImageNet folder.

The measured numbers in summary.md are checked against the hand-written forward pass of
tests/reference.py on the checkpoints the run wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV
from resnet_ensemble.data.datasets import load_dataset
from resnet_ensemble.studies.reproduce import Reproduction, Scale

from .cli_helpers import kill_mid_run, subprocess_env
from .reference import cifar_blocks, cifar_forward, reference_model

ROOT = Path(__file__).resolve().parents[1]
TINY = Scale(
    depth=14,
    epochs=1,
    schedule="cosine",
    train_limit=64,
    test_images=48,
    batch_size=32,
    max_k=2,
    max_swaps=2,
    samples=1,
    gradient_images=4,
    samples_per_length=2,
    sign_draws=2,
    subnetwork_images=16,
    subnetwork_samples=4,
    max_exhaustive=3,
)
TINY_ARGS = [
    "--dataset", "synthetic", "--depth", "14", "--epochs", "1", "--train-limit", "64",
    "--test-images", "48", "--samples", "1", "--gradient-images", "4",
    "--samples-per-length", "2", "--subnetwork-images", "16", "--max-exhaustive", "3",
    "--device", "cpu", "--quick",
]  # fmt: skip
#: ``TINY`` as command-line options: a CLI run with these finds the fixture's stages done.
TINY_CLI = [
    "--dataset", "synthetic", "--depth", "14", "--epochs", "1", "--train-limit", "64",
    "--test-images", "48", "--batch-size", "32", "--max-k", "2", "--max-swaps", "2",
    "--samples", "1", "--gradient-images", "4", "--gradient-batches", "8",
    "--samples-per-length", "2", "--sign-draws", "2", "--subnetwork-images", "16",
    "--subnetwork-samples", "4", "--max-exhaustive", "3", "--device", "cpu", "--quick",
]  # fmt: skip
FIGURES = [
    "fig3_single_block",
    "fig5a_delete_k",
    "fig5b_reorder",
    "fig6a_path_lengths",
    "fig6b_gradient_per_length",
    "fig6c_total_gradient",
    "fig8_stochastic_depth",
    "effective_paths_training",
    "subnetworks",
]


def _reference_error(checkpoint: Path, dataset: str, images: int) -> float:
    model = reference_model(checkpoint)
    data = load_dataset(dataset, "test", limit=images)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    plan = [(blk, True) for blk in cifar_blocks(model)]
    with torch.no_grad():
        return float((cifar_forward(model, x, plan).argmax(1) != y).double().mean())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("summary.md", "stages.json")
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "run"
    Reproduction(out, dataset="synthetic", scale=TINY, device="cpu", log=lambda m: None).run()
    return out


@pytest.mark.slow
def test_every_stage_writes_its_tables_and_every_figure(finished: Path) -> None:
    stages = json.loads((finished / "stages.json").read_text())
    for variant in ("resnet", "plain", "stochastic_depth", "effective_paths"):
        assert f"train_{variant}" in stages
        assert (finished / "checkpoints" / f"{variant}.pt").is_file()
    for name in FIGURES:
        for ext in ("png", "pdf"):
            path = finished / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert (finished / "figures" / "fig3_single_block.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (finished / "figures" / "fig3_single_block.pdf").read_bytes()[:5] == b"%PDF-"
    for table in finished.glob("tables/*.csv"):
        assert json.loads(table.with_suffix(".json").read_text())  # each has its sidecar
    assert not list(finished.rglob("*.tmp*")), "a temporary file was left behind"


@pytest.mark.slow
def test_the_summary_gives_the_hand_computed_errors(finished: Path) -> None:
    summary = (finished / "summary.md").read_text()
    for variant, row in (("resnet", "full-network test error"),):
        expected = 100 * _reference_error(
            finished / "checkpoints" / f"{variant}.pt", "synthetic", TINY.test_images
        )
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"| {row}"))
        assert float(re.findall(r"([\d.]+)%", line)[-1]) == pytest.approx(expected, abs=0.006)
    single = pd.read_csv(finished / "tables" / "single_resnet.csv")
    assert len(single) == 1 + 6  # the baseline and each of ResNet-14's 6 blocks deleted alone
    assert "**Synthetic data: a smoke test" in summary  # labelled as the smoke-test data it is
    assert "| 95% of paths" in summary and "| effective gradient range" in summary


@pytest.mark.slow
def test_a_rerun_skips_every_stage_and_changes_no_output(finished: Path) -> None:
    before = _snapshot(finished)
    logged: list[str] = []
    Reproduction(finished, dataset="synthetic", scale=TINY, device="cpu", log=logged.append).run()
    assert logged and all(line.startswith("[skip]") for line in logged), logged
    assert _snapshot(finished) == before


_KILLED_MID_WRITE = """
import os, signal, sys
from resnet_ensemble.atomic import atomic_write

def die(f):
    f.write(b"half of it")
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], die)
"""


def test_a_new_run_removes_what_a_kill_mid_write_left_in_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "figures").mkdir(parents=True)
    (out / "stages.json").write_text("{}")
    targets = [out / "stages.json", out / "summary.md", out / "figures" / "fig3_single_block.png"]
    for target in targets:  # a real atomic_write, killed between its first byte and its rename
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_MID_WRITE, str(target)], env=subprocess_env()
        )
        assert killed.returncode == -9
    left = sorted(p.name for p in out.rglob("*.tmp"))
    assert len(left) == 3, left
    unrelated = [out / ".notes.tmp", out / "figures" / ".keep"]
    for p in unrelated:
        p.write_text("the user's")
    Reproduction(out, dataset="synthetic", scale=TINY, device="cpu", log=lambda m: None)
    assert sorted(out.rglob("*.tmp*")) == [out / ".notes.tmp"]  # only the killed writes' go
    assert all(p.read_text() == "the user's" for p in unrelated)
    assert (out / "stages.json").read_text() == "{}"  # the whole file the kill interrupted


@pytest.mark.slow
def test_sigkill_costs_only_the_stage_in_flight(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["reproduce", *TINY_ARGS, "--out", str(out)]
    manifest = out / "stages.json"

    def plain_trained() -> bool:
        return manifest.exists() and "finished" in json.loads(manifest.read_text()).get(
            "train_plain", {}
        )

    assert kill_mid_run(args, tmp_path, plain_trained, within=300), "the run ended first"
    records = json.loads(manifest.read_text())
    done = [n for n, rec in records.items() if "finished" in rec]
    in_flight = [n for n, rec in records.items() if "finished" not in rec]  # at most one
    assert len(in_flight) <= 1, records
    kept = {v: (out / "checkpoints" / f"{v}.pt").read_bytes() for v in ("resnet", "plain")}

    rerun = CliRunner().invoke(cli, args, env={DEBUG_ENV: None})  # the same CLI, in-process
    assert rerun.exit_code == 0, rerun.output
    assert "| finding |" in rerun.stdout and "wrote" in rerun.stdout
    for stage in done:
        assert f"[skip] {stage}" in rerun.stderr
    for stage in in_flight:  # resumed, not started again
        assert f"[run]  {stage}: interrupted" in rerun.stderr
    for variant, data in kept.items():  # finished networks were not retrained
        assert (out / "checkpoints" / f"{variant}.pt").read_bytes() == data
    assert (out / "summary.md").is_file()
    assert not list(out.rglob("*.tmp*"))


def _fake_imagenet(root: Path, classes: int = 2, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "val" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i}.JPEG")
    return root


@pytest.mark.slow
def test_the_imagenet_path_analyses_a_torchvision_model_without_training(tmp_path: Path) -> None:
    data = _fake_imagenet(tmp_path / "imagenet")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    out = tmp_path / "run"
    args = [
        "reproduce", "--dataset", "imagenet", "--data-dir", str(data),
        "--model", "torchvision:resnet18", "--weights-file", str(weights), "--out", str(out),
        "--samples", "1", "--gradient-images", "2", "--samples-per-length", "1",
        "--subnetwork-images", "2", "--max-exhaustive", "2", "--subnetwork-samples", "3",
        "--sign-draws", "0", "--device", "cpu", "--quick",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, env={DEBUG_ENV: None})
    assert result.exit_code == 0, result.output
    stages = json.loads((out / "stages.json").read_text())
    assert not any(s.startswith("train_") for s in stages)
    assert not list((out / "checkpoints").glob("*.pt"))
    single = pd.read_csv(out / "tables" / "single_resnet.csv")
    assert len(single) == 1 + 8 and single.images.eq(4).all()  # resnet18: 8 blocks, 4 images
    meta = json.loads((out / "tables" / "single_resnet.json").read_text())
    assert meta["dataset"] == "imagenet" and meta["model_spec"] == "torchvision:resnet18"
    assert (out / "figures" / "fig3_single_block.png").is_file()
    assert (out / "figures" / "fig6c_total_gradient.pdf").is_file()


def test_each_size_option_overrides_its_scale_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``reproduce --NAME N`` reaches ``Scale.NAME`` for every size option, and only that field
    (a stand-in for ``Reproduction`` records the scale instead of running)."""
    import resnet_ensemble.studies.reproduce as reproduce_module
    from resnet_ensemble.cli.reproduce_cmd import _SCALE_OPTIONS
    from resnet_ensemble.studies.reproduce import QUICK

    fields = set(Scale.__dataclass_fields__)
    assert set(_SCALE_OPTIONS) <= fields
    seen: list[Scale] = []
    summary = tmp_path / "summary.md"
    summary.write_text("stand-in")

    class StandIn:
        def __init__(self, *args: object, scale: Scale, **kwargs: object) -> None:
            seen.append(scale)

        def run(self) -> Path:
            return summary

    monkeypatch.setattr(reproduce_module, "Reproduction", StandIn)
    for i, name in enumerate(_SCALE_OPTIONS):
        value = 8 + i  # at least 8: --depth's minimum (8 is a valid depth)
        value += 100 if value == getattr(QUICK, name) else 0  # every value differs from QUICK's
        result = CliRunner().invoke(
            cli, ["reproduce", "--quick", f"--{name.replace('_', '-')}", str(value)]
        )
        assert result.exit_code == 0, result.output
        changed = {f for f in fields if getattr(seen[-1], f) != getattr(QUICK, f)}
        assert getattr(seen[-1], name) == value and changed == {name}
    assert len(seen) == len(_SCALE_OPTIONS)


@pytest.mark.slow
def test_only_runs_the_stages_asked_for_and_a_later_run_adds_the_rest(
    finished: Path, tmp_path: Path
) -> None:
    """``--only gradients`` on a trained network writes the gradient table alone, the same one
    the whole run wrote; ``--only sweeps`` later adds the sweeps and keeps the gradients."""
    from resnet_ensemble.studies.reproduce import STAGE_GROUPS

    out = tmp_path / "parts"
    model = finished / "checkpoints" / "resnet.pt"
    assert model.is_file()
    args = [
        "reproduce", "--model", str(model), "--out", str(out), "--dataset", "synthetic",
        "--test-images", "48", "--samples", "1", "--max-k", "2", "--max-swaps", "2",
        "--gradient-images", "4", "--gradient-batches", "8", "--samples-per-length", "2",
        "--sign-draws", "2",
        "--device", "cpu", "--quick",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--only", "gradients"])
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "stages.json").read_text())) == {"gradients"}
    assert sorted(p.name for p in (out / "tables").glob("*.csv")) == [
        "gradients.csv",
        "gradients_samples.csv",
    ]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "tables" / "gradients.csv"),
        pd.read_csv(finished / "tables" / "gradients.csv"),
    )
    result = CliRunner().invoke(cli, [*args, "--only", "figures"])
    assert result.exit_code == 0, result.output
    figures = out / "figures"
    assert (figures / "fig6b_gradient_per_length.png").is_file()
    assert not (figures / "fig3_single_block.png").exists()
    result = CliRunner().invoke(cli, [*args, "--only", "sweeps"])
    assert result.exit_code == 0, result.output
    stages = set(json.loads((out / "stages.json").read_text()))
    sweeps = {f"sweep_{kind}_resnet" for kind in ("single", "multi", "reorder")}
    assert stages == {"gradients", "figures", *sweeps}
    assert "[skip] gradients: done" in result.output
    # New tables: the figures are drawn again (they were done for the gradients alone) ...
    result = CliRunner().invoke(cli, [*args, "--only", "figures"])
    assert "[run]  figures" in result.output and (figures / "fig3_single_block.png").is_file()
    # ... and skipped once nothing has changed.
    assert "[skip] figures" in CliRunner().invoke(cli, [*args, "--only", "figures"]).output
    # The CLI spells the groups out (its --help imports no torch); they are the library's.
    option = next(p for p in cli.commands["reproduce"].params if p.name == "only")
    assert tuple(option.type.choices) == STAGE_GROUPS
    bad = CliRunner().invoke(cli, [*args, "--only", "plots"])
    assert bad.exit_code == 2 and "plots" in bad.output


def _copy(finished: Path, to: Path) -> Path:
    shutil.copytree(finished, to)
    return to


def _log_of(out: Path, scale: Scale = TINY) -> dict[str, str]:
    """Re-run the reproduction in ``out``: each stage's log line, by stage."""
    logged: list[str] = []
    Reproduction(out, dataset="synthetic", scale=scale, device="cpu", log=logged.append).run()
    return {ln[7:].split(":")[0]: ln for ln in logged if ln.startswith(("[run]", "[skip]"))}


def test_a_deleted_or_edited_table_is_recomputed(finished: Path, tmp_path: Path) -> None:
    """A table that is gone, or is not the file its stage wrote, makes that stage (and the
    figures drawn from it) run again; nothing else runs, and the tables come back the same."""
    out = _copy(finished, tmp_path / "run")
    (out / "tables" / "multi_resnet.csv").unlink()
    single = out / "tables" / "single_resnet.csv"
    single.write_text(single.read_text().replace("\n", "\n", 1) + "\n")  # one byte more
    log = _log_of(out)
    assert log["sweep_multi_resnet"].startswith("[run]  sweep_multi_resnet: tables/multi")
    assert "is missing" in log["sweep_multi_resnet"]
    assert "is not the file it wrote" in log["sweep_single_resnet"]
    ran = {name for name, line in log.items() if line.startswith("[run]")}
    assert ran - {"figures"} == {"sweep_multi_resnet", "sweep_single_resnet"}, log
    same = True
    for name in ("multi_resnet.csv", "single_resnet.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / "tables" / name), pd.read_csv(finished / "tables" / name)
        )
        same &= (out / "tables" / name).read_bytes() == (finished / "tables" / name).read_bytes()
    # The figures are drawn again exactly when a table they read came back different.
    assert ("figures" in ran) == (not same)


def test_a_run_with_other_settings_is_refused_in_one_line_and_changes_nothing(
    finished: Path, tmp_path: Path
) -> None:
    """The outside tester's case: ``--seed 7 --test-images 40 --max-k 1`` into a finished
    folder, as a real process. Refused before anything runs, naming each setting that differs;
    not a file changes (summary.md and stages.json included)."""
    out = _copy(finished, tmp_path / "run")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    args = [*TINY_CLI, "--seed", "7", "--test-images", "40", "--max-k", "1", "--out", str(out)]
    cmd = [sys.executable, "-m", "resnet_ensemble", "reproduce", *args]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in ("seed 0 (now 7)", "test_images 48 (now 40)", "max_k 2 (now 1)", "--overwrite"):
        assert text in lines[0]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_the_same_settings_through_the_cli_skip_every_stage(finished: Path, tmp_path: Path) -> None:
    out = _copy(finished, tmp_path / "run")
    result = CliRunner().invoke(cli, ["reproduce", *TINY_CLI, "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    steps = [ln for ln in result.output.splitlines() if ln.startswith("[")]
    assert len(steps) == 14 and all(ln.startswith("[skip]   ") for ln in steps), steps


def test_overwrite_recomputes_only_the_stages_the_new_settings_affect(
    finished: Path, tmp_path: Path
) -> None:
    out = _copy(finished, tmp_path / "run")
    args = ["reproduce", *TINY_CLI, "--max-k", "1", "--out", str(out), "--overwrite"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    ran = [ln for ln in result.stderr.splitlines() if ln.startswith("[run]")]
    assert ran[0] == "[run]  sweep_multi_resnet: --overwrite: settings changed: max_k 2 (now 1)"
    assert [ln.split(":")[0] for ln in ran] == ["[run]  sweep_multi_resnet", "[run]  figures"]
    assert set(pd.read_csv(out / "tables" / "multi_resnet.csv").k) == {0, 1}  # 0: baseline
    stages = json.loads((out / "stages.json").read_text())
    assert stages["sweep_multi_resnet"]["settings"]["max_k"] == 1
    assert (
        stages["sweep_single_resnet"]
        == json.loads((finished / "stages.json").read_text())["sweep_single_resnet"]
    )
    summary = (out / "summary.md").read_text()
    assert "max_k=1," in summary and "error with k = 1 blocks deleted" in summary


def test_the_summary_says_what_the_tables_were_made_with_not_this_runs_settings(
    finished: Path, tmp_path: Path
) -> None:
    """The first-hour report: summary.md said 10 samples per length against the sidecar's 40,
    and K = 9 of 9 blocks against the 4 used. A run that computes nothing new, under other
    settings, must still quote the sidecars, and K as the effective-path checkpoint records
    it."""
    out = _copy(finished, tmp_path / "run")
    args = ["reproduce", *TINY_CLI, "--samples-per-length", "7", "--max-k", "1", "--only"]
    result = CliRunner().invoke(cli, [*args, "figures", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "[skip] gradients: not among the stages asked for" in result.stderr
    summary = (out / "summary.md").read_text()
    assert "samples_per_length=2," in summary and "max_k=2," in summary
    assert "samples_per_length=7" not in summary and "max_k=1," not in summary
    ckpt = torch.load(out / "checkpoints" / "effective_paths.pt", weights_only=True)
    k = ckpt["metadata"]["recipe"]["active_blocks"]
    row = next(ln for ln in summary.splitlines() if ln.startswith("| effective-path training"))
    assert f"({k} of 6 blocks)" in row


def test_a_clone_with_the_committed_manifest_but_no_checkpoints_runs_every_stage(
    finished: Path, tmp_path: Path
) -> None:
    """What a fresh clone of a committed run holds: stages.json, tables, histories and figures,
    but no checkpoints (git ignores them). The manifest alone must never skip a stage: every
    stage runs for real, and the checkpoints are there afterwards."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(finished, repo / "results" / "tiny")
    (repo / ".gitignore").write_text("/results/**/checkpoints/*.pt\n")  # as this repository's
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "run"], check=True)
    clone = tmp_path / "clone"
    subprocess.run([*git, "clone", "-q", str(repo), str(clone)], check=True)
    out = clone / "results" / "tiny"
    assert (out / "stages.json").is_file() and not list(out.glob("checkpoints/*.pt"))
    committed = {p.name: p.read_bytes() for p in out.glob("tables/*.csv")}
    log = _log_of(out)
    # The networks are trained again; every later stage runs because the checkpoint it
    # evaluated is not the one it reads now (a checkpoint records its own wall time) ...
    ran = {name for name, line in log.items() if line.startswith("[run]")}
    assert len(log) == 14 and ran >= set(log) - {"figures"}, log
    # ... and the figures are drawn again unless every table came back byte for byte (the
    # same weights on the CPU), which the skip proved by sha256, not by the manifest's word.
    again = {p.name: p.read_bytes() for p in out.glob("tables/*.csv")}
    assert ("figures" in ran) == (again != committed), log["figures"]
    assert "checkpoints/resnet.pt is missing" in log["train_resnet"]
    for variant in ("resnet", "plain", "stochastic_depth", "effective_paths"):
        assert (out / "checkpoints" / f"{variant}.pt").is_file()
    assert all(line.startswith("[skip]") for line in _log_of(out).values())
