"""Hostile input within bounds (issue 23): each case runs as a real process with its heap held
to 2 GiB (RLIMIT_DATA: torch's libraries still load) and a timeout, and must end with exit 1 or
2, one short error line, no traceback, no MemoryError, and nothing written.

``docs/reliability.md`` lists what is bounded and how.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from resnet_ensemble.checkpoints import save_checkpoint
from resnet_ensemble.models import build_builtin

ROOT = Path(__file__).resolve().parents[1]
HEAP = 2 << 30
TIMEOUT = 60  # seconds; each case needs a few (most of it importing torch)


def _limit_heap() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (HEAP, HEAP))


def _refused(args: list[str], cwd: Path) -> str:
    """Run the command line; check that it refused cleanly; return its error line."""
    before = sorted(p.name for p in cwd.iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        preexec_fn=_limit_heap,
    )  # fmt: skip
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout[-300:], proc.stderr[-300:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert len(line) <= 300, line
    assert sorted(p.name for p in cwd.iterdir()) == before  # nothing written
    return line


@pytest.mark.parametrize(
    ("route", "said"),
    [
        ("3x0", "at least once"),
        ("3x-2", "expected a repeat count"),
        (",,,", "expected a block index"),
        ("٣,0-14", "cannot read"),
        ("０-１４", "cannot read"),
        ("1_0", "cannot read '_'"),
        ("0x16000000", "runs more than"),
        ("0-1000000000", "too long"),
        ("0-100000000", "runs more than"),
        ("0-10000000000000000000000", "too long"),
    ],
)
def test_a_route_that_means_nothing_is_refused(route: str, said: str, tmp_path: Path) -> None:
    assert said in _refused(["--route", route], tmp_path)


def test_a_fifo_or_a_device_as_model_is_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    assert "is a FIFO" in _refused(["--model", str(fifo)], tmp_path)
    assert "device or socket" in _refused(["--model", "/dev/zero"], tmp_path)


def test_a_builtin_name_beyond_a_sane_depth_is_refused(tmp_path: Path) -> None:
    assert "beyond the 2000 layers" in _refused(["blocks", "--model", "resnet360002"], tmp_path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    kwargs = {"num_classes": 10, "in_channels": 1}
    good = folder / "good.pt"
    save_checkpoint(good, build_builtin("resnet8", **kwargs), arch="resnet8", arch_kwargs=kwargs,
                    dataset="embedded", metadata={})  # fmt: skip
    raw = torch.load(good, weights_only=True)
    for name, classes in (("classes_3e7.pt", 30_000_000), ("classes_neg.pt", -5)):
        torch.save({**raw, "arch_kwargs": {**kwargs, "num_classes": classes}}, folder / name)
    torch.save({**raw, "arch": "resnet360014"}, folder / "blocks_60002.pt")
    # A zip whose one entry unpacks to 256 MB of zeros from a few hundred kB.
    with zipfile.ZipFile(folder / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", bytes(256 << 20))
    return folder


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("classes_3e7.pt", "num_classes must be a whole number from 1 to 100,000"),
        ("classes_neg.pt", "num_classes must be a whole number from 1 to 100,000, got -5"),
        ("blocks_60002.pt", "beyond the 2000 layers"),
        ("bomb.pt", "zip entries claim 268,435,456 bytes"),
    ],
)
def test_a_checkpoint_that_claims_too_much_is_refused(
    files: Path, name: str, said: str, tmp_path: Path
) -> None:
    before = (files / name).read_bytes()
    assert said in _refused(["blocks", "--model", str(files / name)], tmp_path)
    assert (files / name).read_bytes() == before
