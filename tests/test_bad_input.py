"""Bad input, every command: exit 1 (or click's 2) with exactly one line saying what was wrong,
no traceback, and no output file created, changed or half-written.

One table drives it. Each row is a command line with placeholders for the fixture files
(``{F}``: checkpoints that are missing, empty, truncated, random bytes, pickled code, the wrong
shape, NaN or inf; data folders that are a file, empty, or hold corrupt IDX files; tables with
the wrong columns) and for a folder that cannot be written (``{RO}``). Each command runs in an
empty working folder (so default outputs such as ``results/`` would land there) which must still
be exactly as it was afterwards; the fixture files must be byte-for-byte unchanged, and the
pickled code must not have run. A few rows run as real processes, to see what a user sees.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV
from resnet_ensemble.data.datasets import FASHION_MNIST_FILES
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint

from .cli_helpers import invoke
from .cli_helpers import one_error_line as _one_error_line
from .conftest import randomize_batchnorm
from .test_checkpoints import _WritesMarker

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"num_classes": 10, "in_channels": 1}
CUDA = torch.cuda.is_available()


def _idx_images(n: int, have: int) -> bytes:
    """An IDX image file whose header promises ``n`` 28x28 images and holds ``have``."""
    return struct.pack(">IIII", 0x00000803, n, 28, 28) + bytes(28 * 28 * have)


def _idx_labels(n: int, have: int) -> bytes:
    return struct.pack(">II", 0x00000801, n) + bytes(have)


def _save(path: Path, model: torch.nn.Module, arch: str, **extra: object) -> None:
    save_checkpoint(
        path, model, arch=arch, arch_kwargs=KWARGS, dataset="embedded", metadata={}, **extra
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bad (and a few good) inputs, made once."""
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    good = d / "good.pt"  # a ResNet-14 for the embedded 1-channel 28x28 images: 6 blocks
    _save(good, randomize_batchnorm(cifar_resnet(14, **KWARGS), seed=3).eval(), "resnet14")
    _save(d / "r8.pt", cifar_resnet(8, **KWARGS).eval(), "resnet8")  # no two same-shape blocks
    (d / "empty.pt").write_bytes(b"")
    (d / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (d / "random.pt").write_bytes(torch.randint(0, 256, (4096,)).to(torch.uint8).numpy().tobytes())
    raw = load_checkpoint(good)
    raw["arch"] = "resnet20"  # a state dict that does not fit its architecture
    torch.save(raw, d / "misfit.pt")
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        raw = load_checkpoint(good)
        raw["state_dict"]["layer2.0.conv1.weight"][0, 0, 0, 0] = value
        torch.save(raw, d / f"{name}.pt")
    torch.save({"state_dict": _WritesMarker(d / "PWNED")}, d / "evil.pt")
    (d / "evil.pkl").write_bytes(pickle.dumps({"state_dict": _WritesMarker(d / "PWNED")}))
    (d / "afile").write_text("a file, not a folder\n")
    (d / "emptydir").mkdir()
    for kind in ("corrupt", "corruptgz", "truncidx"):
        folder = d / kind
        folder.mkdir()
        for name in FASHION_MNIST_FILES:
            if kind == "corrupt":  # random bytes where the IDX files should be
                (folder / name).write_bytes(os.urandom(1000))
            elif kind == "corruptgz":  # random bytes named .gz
                (folder / f"{name}.gz").write_bytes(os.urandom(1000))
            else:  # whole gzip files of IDX files cut short: headers promise 1000 items
                data = _idx_images(1000, 3) if "images" in name else _idx_labels(1000, 3)
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    (d / "wrongcols.csv").write_text("a,b\n1,2\n")
    (d / "empty.csv").write_text("")
    (d / "random.csv").write_bytes(bytes(range(256)) * 4)
    (d / "sweep.csv").write_text("precious,results\n1,2\n")  # a table a refused run must keep
    return d


@pytest.fixture(scope="module")
def read_only(files: Path) -> Path:
    """A folder in which no file can be created, for root too."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = files / "locked"
        locked.mkdir(exist_ok=True)
        locked.chmod(0o500)
        return locked
    if Path("/proc/self").is_dir():  # root writes anywhere except pseudo file systems
        return Path("/proc/self")
    pytest.skip("no folder here is read-only for this user")


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden temporaries included) and a hash of its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@dataclass(frozen=True)
class Case:
    args: str
    code: int
    needle: str
    seed: dict[str, str] = field(default_factory=dict)  # work file name -> fixture file name
    no_cuda: bool = False  # only meaningful on a machine without CUDA


C = Case
TRAIN = "train --arch resnet8 --dataset synthetic --epochs 1 --limit 8 --batch-size 4 --workers 0"
FMNIST = "--dataset fashion-mnist --data-dir"
SWEEP = "sweep single --model {F}/good.pt --limit 8 --device cpu"

CASES: dict[str, Case] = {
    # -- the main command (lesion) ------------------------------------------------------------
    "lesion-index-not-integer": C(
        "--drop-block 1.5 --model {F}/good.pt", 2, "no block named '1.5'"
    ),
    "lesion-index-text": C("--drop-block three --model {F}/good.pt", 2, "no block named 'three'"),
    "lesion-index-huge": C(
        "--drop-block 99999999999 --model {F}/good.pt --limit 4", 2, "out of range"
    ),
    "lesion-route-unknown-name": C(
        "--route layer1.0,layer9.9 --model {F}/good.pt", 2, "no block named 'layer9.9'"
    ),
    "lesion-route-negative-out-of-range": C(
        "--route 0,-99 --model {F}/good.pt", 2, "block -99 is out of range"
    ),
    "lesion-empty-ckpt": C("--model {F}/empty.pt", 1, "is empty (0 bytes)"),
    "lesion-truncated-ckpt": C("--model {F}/truncated.pt", 1, "truncated or corrupted"),
    "lesion-misfit-ckpt": C("--model {F}/misfit.pt", 1, "does not fit resnet20"),
    "lesion-nan-weights": C("--model {F}/nan.pt", 1, "non-finite weights in layer2.0.conv1"),
    "lesion-inf-weights": C("--model {F}/inf.pt", 1, "non-finite weights in layer2.0.conv1"),
    "lesion-pickled-code": C("--model {F}/evil.pt", 1, "contains pickled code"),
    "lesion-raw-pickle": C("--model {F}/evil.pkl", 1, "contains pickled code"),
    "lesion-ckpt-is-folder": C("--model {F}/emptydir", 1, "is a directory"),
    "lesion-unknown-model": C("--model wideresnet", 1, "unknown model 'wideresnet'"),
    "lesion-bad-depth": C("--model resnet21", 1, "6n + 2"),
    "lesion-unknown-torchvision": C("--model torchvision:resnet19", 1, "unknown torchvision"),
    "lesion-weights-file-missing": C(
        "--model torchvision:resnet18 --weights-file {F}/missing.pt", 1, "no such file"
    ),
    "lesion-weights-file-pickled-code": C(
        "--model torchvision:resnet18 --weights-file {F}/evil.pt", 1, "contains pickled code"
    ),
    "lesion-weights-file-misfit": C(
        "--model torchvision:resnet18 --weights-file {F}/good.pt", 1, "does not fit torchvision"
    ),
    "lesion-weights-file-not-torchvision": C(
        "--model {F}/good.pt --weights-file {F}/good.pt", 1, "only to --model torchvision"
    ),
    "lesion-unknown-dataset": C("--model {F}/good.pt --dataset mnist", 1, "unknown dataset"),
    "lesion-dataset-mismatch": C("--model {F}/good.pt --dataset cifar10", 1, "1-channel"),
    "lesion-random-init-no-dataset": C("--model resnet8", 1, "pass --dataset"),
    "lesion-data-dir-is-file": C(
        f"--model {{F}}/good.pt {FMNIST} {{F}}/afile --limit 4", 1, "is a file, not a folder"
    ),
    "lesion-data-dir-empty": C(
        f"--model {{F}}/good.pt {FMNIST} {{F}}/emptydir --limit 4", 1, "Fashion-MNIST not found"
    ),
    "lesion-data-dir-corrupt-idx": C(
        f"--model {{F}}/good.pt {FMNIST} {{F}}/corrupt --limit 4", 1, "corrupt Fashion-MNIST"
    ),
    "lesion-data-dir-corrupt-gz": C(
        f"--model {{F}}/good.pt {FMNIST} {{F}}/corruptgz --limit 4", 1, "cannot decompress"
    ),
    "lesion-data-dir-truncated-idx": C(
        f"--model {{F}}/good.pt {FMNIST} {{F}}/truncidx --limit 4", 1, "corrupt Fashion-MNIST"
    ),
    "lesion-data-dir-ignored": C(
        "--model {F}/good.pt --data-dir {F}/afile --limit 4", 1, "--data-dir"
    ),
    "lesion-cifar-missing": C(
        "--model resnet8 --dataset cifar10 --data-dir {F}/emptydir", 1, "CIFAR-10 not found"
    ),
    "lesion-imagenet-empty": C(
        "--model torchvision:resnet18 --dataset imagenet --data-dir {F}/emptydir",
        1,
        "no ImageNet images",
    ),
    "lesion-zero-limit": C("--model {F}/good.pt --limit 0", 2, "--limit"),
    "lesion-negative-limit": C("--model {F}/good.pt --limit -5", 2, "--limit"),
    "lesion-zero-batch": C("--model {F}/good.pt --batch-size 0", 2, "--batch-size"),
    "lesion-cuda": C("--model {F}/good.pt --device cuda", 1, "CUDA is not available", no_cuda=True),
    "lesion-unknown-device": C("--model {F}/good.pt --device tpu", 1, "unknown device"),
    "lesion-unknown-option": C("--drop-blocks 3", 2, "No such option"),
    # -- blocks --------------------------------------------------------------------------------
    "blocks-random-bytes": C("blocks --model {F}/random.pt", 1, "not a readable checkpoint"),
    "blocks-pickled-code": C("blocks --model {F}/evil.pt", 1, "contains pickled code"),
    "blocks-missing": C("blocks --model {F}/missing.pt", 1, "no such checkpoint"),
    "blocks-unknown-model": C("blocks --model nosuchnet", 1, "unknown model"),
    "blocks-zero-classes": C("blocks --num-classes 0", 2, "--num-classes"),
    "blocks-negative-channels": C("blocks --in-channels -1", 2, "--in-channels"),
    "blocks-class-mismatch": C("blocks --model {F}/good.pt --num-classes 5", 1, "10 classes"),
    "blocks-channel-mismatch": C(
        "blocks --model torchvision:resnet18 --weights DEFAULT --in-channels 1", 1, "3-channel"
    ),
    "blocks-model-arg-not-key-value": C(
        "blocks --model timm:resnet18 --model-arg img_size", 2, "is not KEY=VALUE"
    ),
    "blocks-model-arg-unknown": C(
        "blocks --model torchvision:resnet18 --model-arg nosuch=1", 1, "check the --model-arg"
    ),
    "blocks-model-arg-checkpoint": C(
        "blocks --model {F}/good.pt --model-arg depth=20", 1, "--model-arg applies to"
    ),
    "blocks-extra-argument": C("blocks resnet20", 2, "unexpected extra argument"),
    # -- train ---------------------------------------------------------------------------------
    "train-zero-epochs": C(f"{TRAIN} --out o.pt --epochs 0", 2, "--epochs"),
    "train-negative-epochs": C(f"{TRAIN} --out o.pt --epochs -2", 2, "--epochs"),
    "train-fractional-epochs": C(f"{TRAIN} --out o.pt --epochs 1.5", 2, "--epochs"),
    "train-zero-batch": C(f"{TRAIN} --out o.pt --batch-size 0", 2, "--batch-size"),
    "train-zero-limit": C(f"{TRAIN} --out o.pt --limit 0", 2, "--limit"),
    "train-negative-test-limit": C(f"{TRAIN} --out o.pt --test-limit -1", 2, "--test-limit"),
    "train-zero-lr": C(f"{TRAIN} --out o.pt --lr 0", 2, "--lr"),
    "train-bad-milestones": C(f"{TRAIN} --out o.pt --milestones half", 2, "--milestones"),
    "train-negative-workers": C(f"{TRAIN} --out o.pt --workers -1", 2, "--workers"),
    "train-unknown-arch": C(f"{TRAIN} --out o.pt --arch densenet", 2, "unknown built-in"),
    "train-unknown-dataset": C(f"{TRAIN} --out o.pt --dataset svhn", 1, "unknown dataset"),
    "train-embedded-has-no-train-split": C(
        f"{TRAIN} --out o.pt --dataset embedded", 1, "no train split"
    ),
    "train-data-dir-is-file": C(
        f"{TRAIN} --out o.pt {FMNIST} {{F}}/afile", 1, "is a file, not a folder"
    ),
    "train-data-dir-empty": C(f"{TRAIN} --out o.pt {FMNIST} {{F}}/emptydir", 1, "not found"),
    "train-data-dir-corrupt-idx": C(
        f"{TRAIN} --out o.pt {FMNIST} {{F}}/corrupt", 1, "corrupt Fashion-MNIST"
    ),
    "train-data-dir-truncated-idx": C(
        f"{TRAIN} --out o.pt {FMNIST} {{F}}/truncidx", 1, "corrupt Fashion-MNIST"
    ),
    "train-data-dir-ignored": C(f"{TRAIN} --out o.pt --data-dir {{F}}/emptydir", 1, "not used"),
    "train-out-parent-is-file": C(f"{TRAIN} --out {{F}}/afile/o.pt", 1, "is a file, not a folder"),
    "train-out-is-folder": C(f"{TRAIN} --out {{F}}/emptydir", 1, "is a directory"),
    "train-out-missing-folder": C(f"{TRAIN} --out nowhere/o.pt", 1, "does not exist"),
    "train-out-read-only": C(f"{TRAIN} --out {{RO}}/o.pt", 1, "not writable"),
    "train-cuda": C(f"{TRAIN} --out o.pt --device cuda", 1, "CUDA is not available", no_cuda=True),
    "train-too-many-active-blocks": C(f"{TRAIN} --out o.pt --active-blocks 4", 1, "more than"),
    "train-plain-stochastic-depth": C(
        f"{TRAIN} --out o.pt --arch plain8 --stochastic-depth 0.5", 1, "needs residual blocks"
    ),
    "train-resume-random-bytes": C(
        f"{TRAIN} --out ckpt.pt --resume", 1, "not a readable checkpoint", {"ckpt.pt": "random.pt"}
    ),
    "train-resume-truncated": C(
        f"{TRAIN} --out ckpt.pt --resume", 1, "truncated", {"ckpt.pt": "truncated.pt"}
    ),
    "train-resume-pickled-code": C(
        f"{TRAIN} --out ckpt.pt --resume", 1, "pickled code", {"ckpt.pt": "evil.pt"}
    ),
    "train-resume-other-model": C(
        f"{TRAIN} --out ckpt.pt --resume", 1, "no optimizer state", {"ckpt.pt": "good.pt"}
    ),
    # -- sweep ---------------------------------------------------------------------------------
    "sweep-unknown-kind": C("sweep double", 2, "'double' is not one of"),
    "sweep-no-kind": C("sweep", 2, "Missing argument"),
    "sweep-random-bytes": C("sweep single --model {F}/random.pt", 1, "not a readable checkpoint"),
    "sweep-pickled-code": C("sweep single --model {F}/evil.pt", 1, "contains pickled code"),
    "sweep-nan-weights": C("sweep multi --model {F}/nan.pt", 1, "non-finite weights"),
    "sweep-zero-max-k": C("sweep multi --model {F}/good.pt --max-k 0", 2, "--max-k"),
    "sweep-too-many-k": C(
        "sweep multi --model {F}/good.pt --limit 8 --device cpu --max-k 50", 1, "lower --max-k"
    ),
    "sweep-zero-samples": C("sweep multi --model {F}/good.pt --samples 0", 2, "--samples"),
    "sweep-negative-samples": C("sweep multi --model {F}/good.pt --samples -3", 2, "--samples"),
    "sweep-zero-swaps": C("sweep reorder --model {F}/good.pt --max-swaps 0", 2, "--max-swaps"),
    "sweep-nothing-to-swap": C(
        "sweep reorder --model {F}/r8.pt --limit 8 --device cpu", 1, "no two blocks"
    ),
    "sweep-zero-chunk": C(f"{SWEEP} --chunk 0", 2, "--chunk"),
    "sweep-unknown-strategy": C(f"{SWEEP} --strategy fastest", 2, "--strategy"),
    "sweep-zero-limit": C("sweep single --model {F}/good.pt --limit 0", 2, "--limit"),
    "sweep-out-parent-is-file": C(f"{SWEEP} --out {{F}}/afile/t.csv", 1, "is a file, not a"),
    "sweep-out-is-folder": C(f"{SWEEP} --out {{F}}/emptydir", 2, "is a directory"),
    "sweep-out-read-only": C(f"{SWEEP} --out {{RO}}/t.csv", 1, "cannot be created"),
    "sweep-cuda": C(f"{SWEEP} --device cuda --out a/b/t.csv", 1, "CUDA", no_cuda=True),
    "sweep-unknown-dataset": C(f"{SWEEP} --dataset nosuch --out t.csv", 1, "unknown dataset"),
    "sweep-corrupt-data": C(
        f"{SWEEP} {FMNIST} {{F}}/corrupt --out t.csv", 1, "corrupt Fashion-MNIST"
    ),
    "sweep-resume-and-overwrite": C(f"{SWEEP} --out t.csv --resume --overwrite", 2, "contradict"),
    "sweep-table-exists": C(f"{SWEEP} --out t.csv", 1, "already exists", {"t.csv": "sweep.csv"}),
    "sweep-overwrite-refused-model-keeps-table": C(
        "sweep single --model {F}/random.pt --out t.csv --overwrite",
        1,
        "not a readable checkpoint",
        {"t.csv": "sweep.csv"},
    ),
    "sweep-resume-wrong-columns": C(
        f"{SWEEP} --out t.csv --resume", 1, "lacks the columns", {"t.csv": "sweep.csv"}
    ),
    "sweep-resume-random-bytes": C(
        f"{SWEEP} --out t.csv --resume", 1, "not a readable CSV", {"t.csv": "random.csv"}
    ),
    # -- paths ---------------------------------------------------------------------------------
    "paths-negative-blocks": C("paths --blocks -1 --out p.csv", 2, "--blocks"),
    "paths-fractional-blocks": C("paths --blocks 2.5 --out p.csv", 2, "--blocks"),
    "paths-zero-share": C("paths --blocks 4 --share 0 --out p.csv", 2, "--share"),
    "paths-share-above-one": C("paths --blocks 4 --share 1.5 --out p.csv", 2, "--share"),
    "paths-negative-max-exhaustive": C("paths --max-exhaustive -1", 2, "--max-exhaustive"),
    "paths-zero-samples": C("paths --samples 0 --out p.csv", 2, "--samples"),
    "paths-exhaustive-without-model": C("paths --blocks 3 --exhaustive --out p.csv", 2, "model"),
    "paths-random-bytes": C("paths --model {F}/random.pt --out p.csv", 1, "not a readable"),
    "paths-pickled-code": C("paths --model {F}/evil.pt --out p.csv", 1, "pickled code"),
    "paths-out-parent-is-file": C("paths --blocks 3 --out {F}/afile/p.csv", 1, "is a file"),
    "paths-out-read-only": C("paths --blocks 3 --out {RO}/p.csv", 1, "cannot be created"),
    "paths-exhaustive-cuda": C(
        "paths --model {F}/good.pt --exhaustive --limit 4 --device cuda --out p.csv",
        1,
        "CUDA is not available",
        no_cuda=True,
    ),
    "paths-cuda-without-exhaustive": C(
        "paths --model {F}/good.pt --device cuda --out p.csv",
        1,
        "CUDA is not available",
        no_cuda=True,
    ),
    "paths-data-without-exhaustive": C(
        "paths --model {F}/good.pt --dataset fashion-mnist --limit 4 --out p.csv",
        2,
        "data options need --exhaustive",
    ),
    "paths-exhaustive-corrupt-data": C(
        f"paths --model {{F}}/good.pt --exhaustive --limit 4 {FMNIST} {{F}}/corrupt --out p.csv",
        1,
        "corrupt Fashion-MNIST",
    ),
    # -- gradients -----------------------------------------------------------------------------
    "gradients-zero-images": C("gradients --images 0 --out g.csv", 2, "--images"),
    "gradients-negative-samples": C(
        "gradients --samples-per-length -1 --out g.csv", 2, "--samples-per-length"
    ),
    "gradients-negative-sign-draws": C("gradients --sign-draws -2 --out g.csv", 2, "--sign-draws"),
    "gradients-random-bytes": C("gradients --model {F}/random.pt --out g.csv", 1, "not a readable"),
    "gradients-nan-weights": C("gradients --model {F}/nan.pt --out g.csv", 1, "non-finite"),
    "gradients-out-parent-is-file": C(
        "gradients --model {F}/good.pt --images 2 --out {F}/afile/g.csv", 1, "is a file"
    ),
    "gradients-report-parent-is-file": C(
        "gradients --model {F}/good.pt --images 2 --out g.csv --report {F}/afile/r.md",
        1,
        "is a file",
    ),
    "gradients-cuda": C(
        "gradients --model {F}/good.pt --images 2 --device cuda --out a/g.csv",
        1,
        "CUDA is not available",
        no_cuda=True,
    ),
    "gradients-data-dir-empty": C(
        f"gradients --model {{F}}/good.pt --images 2 {FMNIST} {{F}}/emptydir --out a/g.csv",
        1,
        "Fashion-MNIST not found",
    ),
    # -- plot ----------------------------------------------------------------------------------
    # -- depth -----------------------------------------------------------------------------------
    "depth-nothing-analysed": C("depth {F}/emptydir", 1, "no analysed networks under"),
    "depth-missing-folder": C("depth {F}/missing", 2, "does not exist"),
    "depth-folder-is-file": C("depth {F}/afile", 2, "is a file"),
    "dynamics-missing-folder": C("dynamics {F}/missing", 2, "does not exist"),
    "dynamics-folder-is-file": C("dynamics {F}/afile", 2, "is a file"),
    "plot-wrong-columns": C("plot {F}/wrongcols.csv --out figs", 1, "not a results table"),
    "plot-empty-table": C("plot {F}/empty.csv --out figs", 1, "not a readable CSV"),
    "plot-random-bytes": C("plot {F}/random.csv --out figs", 1, "not a readable CSV"),
    "plot-a-checkpoint": C("plot {F}/good.pt --out figs/deeper", 1, "not a readable CSV"),
    "plot-missing-table": C("plot {F}/missing.csv --out figs", 2, "does not exist"),
    "plot-table-is-folder": C("plot {F}/emptydir --out figs", 1, "no results tables"),
    "plot-no-tables": C("plot --out figs", 2, "Missing argument"),
    "plot-no-out": C("plot {F}/wrongcols.csv", 2, "Missing option '--out'"),
    "plot-out-is-file": C("plot {F}/wrongcols.csv --out {F}/afile", 1, "is a file"),
    "plot-out-read-only": C("plot {F}/wrongcols.csv --out {RO}/figs", 1, "cannot"),
    "plot-unknown-format": C("plot {F}/wrongcols.csv --out figs --format gif", 2, "--format"),
    "plot-unknown-style": C("plot {F}/wrongcols.csv --out figs --style poster", 2, "--style"),
    # -- reproduce (refused by click before any work) ------------------------------------------
    "reproduce-zero-epochs": C("reproduce --epochs 0", 2, "--epochs"),
    "reproduce-negative-samples": C("reproduce --samples -1", 2, "--samples"),
}


def _argv(template: str, files: Path, read_only: Path) -> list[str]:
    return template.replace("{F}", str(files)).replace("{RO}", str(read_only)).split()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_cleanly_and_writes_nothing(
    name: str, files: Path, read_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    if case.no_cuda and CUDA:
        pytest.skip("this machine has CUDA")
    work = tmp_path / "work"
    work.mkdir()
    for target, source in case.seed.items():
        shutil.copyfile(files / source, work / target)
    monkeypatch.chdir(work)  # default outputs (results/...) would land here
    inputs, before = _digest(files), _digest(work)

    result = invoke(*_argv(case.args, files, read_only))

    assert result.exit_code == case.code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    line = _one_error_line(result.stderr, prefix="error: " if case.code == 1 else "Error: ")
    assert case.needle in line, line
    assert result.stdout == "", result.stdout  # nothing that looks like a result
    assert _digest(work) == before  # no output created, changed, or left half-written
    assert _digest(files) == inputs  # no input touched; the pickled code did not run


def test_every_subcommand_is_in_the_table() -> None:
    commands = {c.args.split()[0] for c in CASES.values() if not c.args.startswith("-")}
    listed = set(cli.list_commands(click.Context(cli)))  # every one, loaded or not yet
    assert commands == listed  # a new subcommand needs its rows here


# ----------------------------------------------------------------------------------------------
# What a user sees: real processes


def _python_m(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop(DEBUG_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name", ["sweep-pickled-code", "train-out-parent-is-file", "plot-wrong-columns"]
)
def test_bad_input_in_a_real_process(
    name: str, files: Path, read_only: Path, tmp_path: Path
) -> None:
    case = CASES[name]
    inputs = _digest(files)
    proc = _python_m(_argv(case.args, files, read_only), cwd=tmp_path)
    assert proc.returncode == case.code, proc.stderr
    assert case.needle in _one_error_line(proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""  # that line and nothing else
    assert list(tmp_path.iterdir()) == []
    assert _digest(files) == inputs


def test_debug_gives_the_traceback_and_still_writes_nothing(
    files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--debug", "sweep", "single", "--model", f"{files}/nan.pt"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "non-finite weights" in errors[0]
    assert list(tmp_path.iterdir()) == []
