"""The README's commands, run as a new user would type them, at tiny settings.

Each command of the README's "What you can do" block runs in one fresh folder, in the README's
order but with ``plot`` last (it draws what the others wrote). ``TINY`` shrinks each one (fewer
images, fewer samples, one epoch on synthetic data instead of a CIFAR-10 download); nothing else
is changed, so a README command that stops working fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from resnet_ensemble.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Per subcommand: (words replaced, words added). The lesion command has no subcommand ("").
TINY: dict[str, tuple[dict[str, str], list[str]]] = {
    "": ({}, ["--limit", "16", "--device", "cpu"]),
    "blocks": ({}, []),
    "train": (
        {"resnet110": "resnet8", "cifar10": "synthetic", "--download": ""},
        ["--epochs", "1", "--limit", "32", "--batch-size", "16", "--device", "cpu", "--quiet"],
    ),
    "sweep": ({}, ["--limit", "16", "--device", "cpu"]),
    "paths": ({}, ["--limit", "8", "--samples", "8", "--device", "cpu"]),
    "gradients": (
        {},
        [
            "--limit",
            "16",
            "--images",
            "4",
            "--batches",
            "1",
            "--samples-per-length",
            "2",
            "--sign-draws",
            "0",
            "--device",
            "cpu",
        ],
    ),  # fmt: skip
    "reproduce": (
        {"fashion-mnist": "synthetic"},
        [
            "--depth",
            "8",
            "--epochs",
            "1",
            "--train-limit",
            "32",
            "--test-images",
            "16",
            "--samples",
            "1",
            "--gradient-images",
            "4",
            "--samples-per-length",
            "2",
            "--subnetwork-images",
            "8",
            "--max-exhaustive",
            "3",
            "--device",
            "cpu",
        ],
    ),  # fmt: skip
    "plot": ({}, ["--format", "png"]),
}


def readme_commands() -> list[list[str]]:
    """The ``ensemble-lesion`` lines of the README's "What you can do" block, as words."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## What you can do\s+```bash\n(.*?)```", text, re.S)
    assert block, "the README lost its 'What you can do' block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "ensemble-lesion":
            commands.append(words[1:])
    return commands


def _subcommand(words: list[str]) -> str:
    return words[0] if words and not words[0].startswith("-") else ""


def _tiny(words: list[str]) -> list[str]:
    replace, add = TINY[_subcommand(words)]
    if _subcommand(words) == "paths" and "--exhaustive" not in words:
        add = []  # counting paths reads no data: data options are refused there
    return [replace.get(w, w) for w in words if replace.get(w, w)] + add


def test_every_readme_command_has_tiny_settings() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    assert {_subcommand(c) for c in commands} <= set(TINY)


def test_the_readme_commands_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    commands.sort(key=lambda c: _subcommand(c) == "plot")  # plot draws what the others wrote
    runner = CliRunner()
    for words in commands:
        result = runner.invoke(cli, _tiny(words))
        assert result.exit_code == 0, f"ensemble-lesion {shlex.join(words)}:\n{result.output}"
    for kind in ("single", "multi", "reorder"):
        assert (tmp_path / "runs" / f"sweep_{kind}.csv").is_file()  # the default --out
    assert (tmp_path / "figures" / "fig3_single_block.png").is_file()
    assert (tmp_path / "g.md").is_file() and (tmp_path / "paths.csv").is_file()


def test_the_embedded_models_error_is_quoted_once_with_its_images():
    """The embedded model's card gives its test error once as the reference (6.89% on the full
    10,000-image test set) beside what other image sets measure; elsewhere the documents quote
    that number with its images, or say on which images another one was measured."""
    root = README.parent
    card = (root / "resnet_ensemble/assets/README.md").read_text()
    assert "**6.89% on the full Fashion-MNIST test set (10,000\nimages)**" in card
    docs = [README, *sorted((root / "docs").glob("*.md"))]
    for path in docs:
        text = " ".join(path.read_text().split())
        assert "7.30%" not in text, f"{path.name}: the subset's error belongs to the card only"
        for match in re.finditer(r"6\.89%", text):
            around = text[match.start() : match.end() + 80]
            assert "10,000" in around, f"{path.name}: 6.89% without its images: {around!r}"
    readme = " ".join(README.read_text().split())
    assert "5.0% (on its 1,000 images; 6.89% on all 10,000)" in readme


def test_the_readme_notebook_sweep_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python block that starts with ``load_dataset``: data, one sweep, one figure."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    snippet = next((b for b in blocks if "study_sweep(" in b), None)
    assert snippet, "the README lost its notebook sweep"
    assert "limit=500" in snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace("limit=500", "limit=16"), "README.md", "exec"), {})  # noqa: S102
    assert (tmp_path / "figures" / "fig3_single_block.png").is_file()


def test_the_readme_reproduce_command_in_a_fresh_clone_runs_every_stage(tmp_path: Path) -> None:
    """A fresh clone holds the committed ``stages.json``, tables and figures of the README's
    reproduce command, but not its checkpoints (git ignores them). That command, exactly as the
    README writes it and as a real process, must then run every stage, never skip one on the
    manifest's word (the first-hour report: every stage skipped in 6 seconds). ``--dry-run``
    keeps this fast; ``test_reproduce.py``'s clone test runs such stages for real."""
    from resnet_ensemble.data.datasets import load_dataset

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is nothing to clone")
    words = next(c for c in readme_commands() if _subcommand(c) == "reproduce")
    dataset = words[words.index("--dataset") + 1]
    try:
        load_dataset(dataset, "test", limit=1)
    except (ValueError, OSError) as err:
        pytest.skip(f"{dataset} is not on this machine ({err})")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    out = clone / words[words.index("--out") + 1]
    assert (out / "stages.json").is_file(), "the README's results folder is not committed"
    assert not list(out.glob("checkpoints/*.pt"))
    env = {**os.environ, "PYTHONPATH": str(clone)}
    result = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *words, "--dry-run"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    steps = [ln for ln in result.stdout.splitlines() if ln.startswith("[")]
    assert len(steps) == 14 and all(ln.startswith("[run]") for ln in steps), steps
    assert "[run]    train_resnet: checkpoints/resnet.pt is missing" in steps
