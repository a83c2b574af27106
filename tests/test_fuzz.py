"""Fuzzing the command line: random mixes of valid and invalid options and values.

Whatever the arguments, the contract holds: exit status 0, 1 or 2; no traceback; on failure
exactly one ``error:`` (or click's ``Error:``) line and no file created; never a temporary file
left behind; never a changed input file (and never the code inside a pickled checkpoint run);
and what a successful run writes is a whole, readable table.

Every example is small (tiny models, at most 8 images, one epoch), so the file stays well under
a minute on two CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV
from resnet_ensemble.data.datasets import FASHION_MNIST_FILES
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint

from .test_checkpoints import _WritesMarker

KWARGS = {"num_classes": 10, "in_channels": 1}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz_inputs")
    torch.manual_seed(0)
    good = d / "good.pt"
    save_checkpoint(
        good, cifar_resnet(14, **KWARGS).eval(), arch="resnet14", arch_kwargs=KWARGS,
        dataset="embedded", metadata={},
    )  # fmt: skip
    (d / "random.pt").write_bytes(os.urandom(2048))
    torch.save({"state_dict": _WritesMarker(d / "PWNED")}, d / "evil.pt")
    (d / "evil.pkl").write_bytes(pickle.dumps(_WritesMarker(d / "PWNED")))
    raw = load_checkpoint(good)
    raw["state_dict"]["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(raw, d / "nan.pt")
    (d / "afile").write_text("not a folder\n")
    (d / "emptydir").mkdir()
    (d / "corrupt").mkdir()
    for name in FASHION_MNIST_FILES:
        (d / "corrupt" / f"{name}.gz").write_bytes(os.urandom(300))
    (d / "wrongcols.csv").write_text("a,b\n1,2\n")
    (d / "random.csv").write_bytes(os.urandom(300))
    # Real tables for plot, made by the commands themselves.
    runner = CliRunner()
    for args in (
        ["sweep", "single", "--model", str(good), "--limit", "8", "--out", str(d / "sweep.csv")],
        ["paths", "--blocks", "5", "--out", str(d / "paths.csv")],
    ):
        result = runner.invoke(cli, args, env={DEBUG_ENV: None})
        assert result.exit_code == 0, result.output
    return d


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.endswith((".tmp", ".probe"))]


def _check_contract(args: list[str], files: Path, tmp_path: Path) -> None:
    """Run ``args`` in a fresh working folder and assert the contract."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    resolved = [a.replace("{F}", str(files)) for a in args]
    inputs = _digest(files)
    cwd = os.getcwd()
    os.chdir(work)  # default outputs (results/...) land in this example's own folder
    try:
        result = CliRunner().invoke(cli, resolved, env={DEBUG_ENV: None})
    finally:
        os.chdir(cwd)
    shown = f"ensemble-lesion {' '.join(resolved)}\n{result.output}"
    event(f"exit status {result.exit_code}")  # --hypothesis-show-statistics: the mix reached
    assert result.exit_code in (0, 1, 2), shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert "Traceback" not in result.output, shown
    assert _leftovers(work) == [] and _leftovers(files) == [], shown
    assert _digest(files) == inputs, shown  # inputs untouched, no pickled code run
    if result.exit_code != 0:
        prefix = "error: " if result.exit_code == 1 else "Error: "
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith(prefix)]
        assert len(errors) == 1, shown
        assert list(work.iterdir()) == [], shown  # a refused run creates nothing
        return
    for table in work.rglob("*.csv"):  # whatever a successful run wrote is whole
        frame = pd.read_csv(table)
        assert len(frame.columns) > 1, shown
        sidecar = table.with_suffix(".json")
        if sidecar.exists():
            assert isinstance(json.loads(sidecar.read_text()), dict), shown


# ----------------------------------------------------------------------------------------------
# Strategies. Each option has values that work and values that are wrong in the ways users get
# them wrong; an example makes at most two options wrong (most often none or one), so that it
# reaches past click's checks into loading, data, evaluation and writing.

#: (name, values that work (None: leave it out), wrong values); "" names a positional argument.
Option = tuple[str, tuple[str | None, ...], tuple[str, ...]]

MODEL: Option = (
    "--model",
    (None, "{F}/good.pt"),
    ("resnet8", "{F}/random.pt", "{F}/evil.pt", "{F}/evil.pkl", "{F}/nan.pt", "{F}/missing.pt",
     "{F}/emptydir", "resnet9", "nosuchnet", "torchvision:resnet19"),
)  # fmt: skip
DATASET: Option = ("--dataset", (None, "embedded"), ("synthetic", "fashion-mnist", "cifar10", "x"))
DATA_DIR: Option = ("--data-dir", (None,), ("{F}/afile", "{F}/emptydir", "{F}/corrupt"))
LIMIT: Option = ("--limit", ("1", "4", "8"), ("0", "-2", "x", "2.5"))  # always given: small runs
BATCH: Option = ("--batch-size", (None, "3"), ("0", "-1", "many"))
#: Devices this machine lacks: "cuda" is wrong only without a GPU, "cuda:N" past the last one.
MISSING_DEVICES = ("tpu", f"cuda:{torch.cuda.device_count()}") + (
    () if torch.cuda.is_available() else ("cuda",)
)
DEVICE: Option = ("--device", (None, "cpu", "auto"), MISSING_DEVICES)
JUNK = ("--nope", "extra", "--", "-x", "--limit")


@st.composite
def command(
    draw: st.DrawFn, head: list[str], options: list[Option], flags: tuple[str, ...] = ()
) -> list[str]:
    how_many = draw(st.sampled_from([0, 0, 1, 1, 2]))
    wrong = set(draw(st.permutations(range(len(options))))[:how_many])
    pieces = []
    for i, (name, good, bad) in enumerate(options):
        value = draw(st.sampled_from(bad if i in wrong else good))
        if value is not None:
            pieces.append([name, value] if name else [value])
    if flags:
        pieces += [[flag] for flag in flags if draw(st.booleans())]
    order = draw(st.permutations(range(len(pieces))))
    args = [a for i in order for a in pieces[i]]
    if draw(st.integers(0, 9)) == 0:  # now and then a stray token anywhere
        args.insert(draw(st.integers(0, len(args))), draw(st.sampled_from(JUNK)))
    return head + args


@st.composite
def lesion_args(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):  # valid: distinct blocks of the 6 of good.pt (the default has 15)
        blocks = draw(st.lists(st.integers(0, 5).map(str), unique=True, max_size=2))
    else:
        blocks = draw(st.lists(st.sampled_from(["-1", "15", "99", "1.5", "x", "", "2"]),
                               min_size=1, max_size=2))  # fmt: skip
        blocks += ["2"] if blocks == ["2"] else []  # a block given twice
    rest = draw(command([], [MODEL, DATASET, DATA_DIR, LIMIT, BATCH, DEVICE], ("--json",)))
    return [a for b in blocks for a in ("--drop-block", b)] + rest


blocks_args = command(
    ["blocks"],
    [MODEL, ("--num-classes", (None, "10"), ("0", "5")), ("--in-channels", (None, "1"), ("0",))],
    ("--json",),
)
paths_args = command(
    ["paths"],
    [
        ("--blocks", (None, "0", "4"), ("-1", "1001", "x")),
        MODEL,
        ("--share", (None, "0.5"), ("0", "1.5")),
        ("--out", (None, "p.csv", "sub/p.csv"), ("{F}/afile/p.csv", "{F}/emptydir")),
    ],
)
sweep_args = command(
    ["sweep"],
    [
        ("", ("single", "multi", "reorder"), ("both", "--")),
        ("--model", ("{F}/good.pt",), ("{F}/random.pt", "{F}/evil.pt", "{F}/nan.pt", "resnet8")),
        DATASET,
        DATA_DIR,
        LIMIT,
        BATCH,
        DEVICE,
        ("--out", (None, "t.csv", "sub/t.csv"), ("{F}/afile/t.csv", "{F}/emptydir")),
        ("--max-k", (None, "1", "2"), ("0", "60")),
        ("--samples", (None, "1", "2"), ("0", "-3")),
        ("--max-swaps", (None, "1"), ("0",)),
        ("--chunk", (None, "1", "3"), ("0",)),
        ("--strategy", (None, "prefix"), ("mask", "fast")),
    ],
    ("--resume", "--overwrite", "--amp", "--channels-last"),
)
train_args = command(
    ["train", "--workers", "0", "--limit", "8", "--test-limit", "4"],
    [
        ("--arch", ("resnet8",), ("plain8", "resnet9", "vgg")),
        ("--dataset", ("synthetic",), ("embedded", "nope")),
        DATA_DIR,
        ("--epochs", ("1",), ("0", "-1", "1.5")),
        ("--batch-size", ("4",), ("0", "x")),
        ("--out", ("o.pt",), ("{F}/afile/o.pt", "{F}/emptydir", "nowhere/o.pt")),
        ("--active-blocks", (None, "1"), ("0", "9")),
        ("--stochastic-depth", (None, "0.5"), ("0", "2")),
        ("--lr", (None, "0.01"), ("0", "-1", "1e40")),
        DEVICE,
    ],
    ("--resume", "--quiet"),
)
plot_args = command(
    ["plot"],
    [
        ("", ("{F}/sweep.csv",), ("{F}/wrongcols.csv", "{F}/random.csv", "{F}/missing.csv")),
        ("", (None, "{F}/paths.csv"), ("{F}/good.pt", "{F}/emptydir")),
        ("--out", ("figs", "sub/figs"), ("{F}/afile", "{F}/sweep.csv")),
        ("--format", (None, "png"), ("gif",)),
        ("--style", (None, "talk"), ("poster",)),
    ],
)


@FUZZ
@given(args=lesion_args())
def test_fuzz_the_lesion_command(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


@FUZZ
@given(args=st.one_of(blocks_args, paths_args))
def test_fuzz_blocks_and_paths(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


@FUZZ
@given(args=sweep_args)
def test_fuzz_sweep(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


@settings(FUZZ, max_examples=25)
@given(args=train_args)
def test_fuzz_train(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


@settings(FUZZ, max_examples=25)
@given(args=plot_args)
def test_fuzz_plot(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


gradients_args = command(
    ["gradients"],
    [
        ("--model", ("{F}/good.pt",), ("{F}/random.pt", "{F}/evil.pt", "{F}/nan.pt", "resnet9")),
        DATASET,
        DATA_DIR,
        BATCH,
        DEVICE,
        ("--images", ("2", "4"), ("0", "-1", "x")),
        ("--samples-per-length", ("0", "1"), ("-1", "x")),
        ("--sign-draws", ("0", "2"), ("1", "-1")),
        ("--out", (None, "g.csv", "sub/g.csv"), ("{F}/afile/g.csv", "{F}/emptydir")),
        ("--report", (None, "r.md"), ("{F}/afile/r.md", "r.csv")),
    ],
)


@st.composite
def reproduce_args(draw: st.DrawFn) -> list[str]:
    """Always at least one wrong option: a whole reproduction per example would be too slow, and
    what matters here is that a refused run refuses before it creates anything."""
    options: list[Option] = [
        ("--dataset", ("synthetic",), ("nope", "fashion-mnist")),  # no Fashion-MNIST in {F}
        ("--data-dir", (None,), ("{F}/afile", "{F}/emptydir", "{F}/corrupt")),
        ("--depth", ("8",), ("9", "2", "x")),
        ("--epochs", ("1",), ("0", "-1")),
        ("--samples", ("1",), ("0",)),
        ("--test-images", ("8",), ("0", "x")),
        ("--model", (None,), ("{F}/random.pt", "{F}/evil.pt", "{F}/nan.pt", "nosuchnet")),
        ("--resnet", (None,), ("{F}/missing.pt", "{F}/evil.pt")),
        ("--out", ("run",), ("{F}/afile", "{F}/afile/run")),
        ("--device", ("cpu",), MISSING_DEVICES),
    ]
    wrong = set(draw(st.permutations(range(len(options))))[: draw(st.sampled_from([1, 1, 2]))])
    args = ["reproduce", "--quick", "--train-limit", "16", "--gradient-images", "2",
            "--samples-per-length", "1", "--sign-draws", "0", "--subnetwork-images", "4",
            "--max-exhaustive", "2"]  # fmt: skip
    for i, (name, good, bad) in enumerate(options):
        value = draw(st.sampled_from(bad if i in wrong else good))
        if value is not None:
            args += [name, value]
    return args


@settings(FUZZ, max_examples=25)
@given(args=gradients_args)
def test_fuzz_gradients(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)


@settings(FUZZ, max_examples=30)
@given(args=reproduce_args())
def test_fuzz_reproduce_refusals(args: list[str], files: Path, tmp_path: Path) -> None:
    _check_contract(args, files, tmp_path)
