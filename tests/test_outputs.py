"""Outputs never clobber, and tables are locked (issue 24, items 1 and 2).

Real processes (``python -m resnet_ensemble``) for what a user does: two writers of one table at
once; ``--out`` over a FIFO, a device node, a symlink; ``--out`` equal to the model checkpoint
or inside the data folder; an existing result without ``--overwrite``; a 0600 table resumed.
Each refusal must be one line naming the path, exit 1, and leave every file as it was. The
system's own ``/dev/null`` is only ever given to the checks that refuse it (``check_target``,
``claim_outputs``), never to anything that could write: a device node made here stands in for
it in the real processes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from resnet_ensemble.atomic import atomic_write, check_target
from resnet_ensemble.outputs import (
    OutputLocked,
    claim_outputs,
    input_paths,
    lock_path,
    output_lock,
)

from .conftest import save_tiny_checkpoint
from .test_cli import _env, _one_error_line

FAST = ("--limit", "8", "--device", "cpu")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused(proc: subprocess.CompletedProcess) -> str:
    """The contract for a refusal: exit 1, nothing on stdout, one error line."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    return _one_error_line(proc.stderr)


def _tree(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under ``folder`` (hidden ones too) with its type and content or target."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(folder.rglob("*")):
        info = os.lstat(p)
        if stat.S_ISLNK(info.st_mode):
            content: bytes | str = os.readlink(p)
        elif stat.S_ISREG(info.st_mode):
            content = p.read_bytes()
        else:
            content = b""
        found[str(p.relative_to(folder))] = (stat.S_IFMT(info.st_mode), content)
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", 14, 3)


# Every command that writes a table, as it would write one to OUT in a fresh folder.
WRITERS = {
    "sweep": lambda m: ["sweep", "single", "--model", str(m), *FAST],
    "paths": lambda m: ["paths", "--model", str(m)],
    "gradients": lambda m: ["gradients", "--model", str(m), "--images", "4", "--batches", "1"],
    "train": lambda m: ["train", "--arch", "resnet8", "--dataset", "synthetic", "--epochs", "1"],
}


# -- the checks themselves ---------------------------------------------------------------------


def test_the_system_null_device_is_refused_by_the_checks(tmp_path: Path) -> None:
    """Only the refusing checks see /dev/null; neither can write, and neither gets that far."""
    before = os.stat("/dev/null")
    with pytest.raises(ValueError, match=r"^refusing to write /dev/null: it is a character dev"):
        check_target("/dev/null")
    with pytest.raises(ValueError, match="character device"), claim_outputs(["/dev/null"]):
        pytest.fail("claimed /dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_atomic_write_refuses_a_fifo_and_a_symlink_and_writes_nothing(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real.csv").write_text("mine\n")
    (tmp_path / "link.csv").symlink_to("real.csv")
    (tmp_path / "dangling.csv").symlink_to("nowhere.csv")
    before = _tree(tmp_path)
    for name, kind in (
        ("fifo", "a FIFO"),
        ("link.csv", "a symbolic link"),
        ("dangling.csv", "a symbolic link"),
    ):
        with pytest.raises(ValueError, match=f"refusing to write .*{name}: it is {kind}"):
            atomic_write(tmp_path / name, b"new")
    assert _tree(tmp_path) == before


def test_atomic_rewrite_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("old\n")
    for mode in (0o600, 0o640, 0o444):
        path.chmod(mode)
        atomic_write(path, f"mode {mode:o}\n")
        assert stat.S_IMODE(path.stat().st_mode) == mode
    fresh = tmp_path / "fresh.csv"
    atomic_write(fresh, "new\n")  # a new file: what a plain open would give it
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_a_lock_is_exclusive_and_leaves_no_trace(tmp_path: Path) -> None:
    table = tmp_path / "new" / "deeper" / "t.csv"
    with output_lock(table):
        held = lock_path(table)
        assert held.read_text().strip() == str(os.getpid())
        held_by = rf"t.csv is being written by another process \(pid {os.getpid()}\)"
        with pytest.raises(OutputLocked, match=held_by), output_lock(table):
            pytest.fail("took a held lock")
    assert not (tmp_path / "new").exists()  # the lock file and the folders made for it
    with output_lock(table):  # free again
        pass


def test_an_existing_lock_file_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    """SIGKILL leaves the file but not the lock: the next run takes it and removes it."""
    table = tmp_path / "t.csv"
    lock_path(table).write_text("999999\n")
    with output_lock(table):
        assert lock_path(table).read_text().strip() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_input_paths_names_every_file_a_command_reads(tmp_path: Path) -> None:
    found = input_paths(
        {
            "model_spec": "m.pt",
            "weights_file": "w.safetensors",
            "dataset": "text:corpus.txt",
            "data_dir": "data",
        }
    )
    assert found == [
        ("the model checkpoint", Path("m.pt")),
        ("the weights file", Path("w.safetensors")),
        ("the text data file", Path("corpus.txt")),
        ("the data folder", Path("data")),
    ]
    assert input_paths({"model_spec": "hf:folder"}) == [("the model folder", Path("folder"))]
    assert input_paths({"model_spec": "torchvision:resnet18"}) == []
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("words\n")
    with pytest.raises(ValueError, match="it is the text data file this command reads"):
        with claim_outputs([corpus], inputs=[("the text data file", corpus)], overwrite=True):
            pytest.fail("claimed an input")
    assert corpus.read_text() == "words\n"


# -- real processes ----------------------------------------------------------------------------


def _wait_for_lock(proc: subprocess.Popen, table: Path) -> None:
    """Until ``proc`` holds the lock of ``table``: the pid is written once it is held."""
    lock = lock_path(table)
    while not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_two_writers_of_one_table_the_second_is_refused_at_once(
    model: Path, tmp_path: Path
) -> None:
    """A `sweep multi` holds t.csv (stopped with SIGSTOP, so that it surely still holds it);
    a `sweep single` into the same file is refused in one line naming the holder, with
    --overwrite and with --resume alike; the first then finishes, and the table holds its rows,
    as many as it says it wrote."""
    table = tmp_path / "t.csv"
    first = subprocess.Popen(
        [sys.executable, "-m", "resnet_ensemble", "sweep", "multi", "--model", str(model)]
        + [*FAST, "--max-k", "2", "--samples", "2", "--out", str(table)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_lock(first, table)
        os.kill(first.pid, signal.SIGSTOP)
        for flag in ("--overwrite", "--resume"):
            second = _cli(*WRITERS["sweep"](model), "--out", str(table), flag, cwd=tmp_path)
            line = _refused(second)
            assert line == (
                f"error: {table} is being written by another process (pid {first.pid}); "
                "wait for it to finish, or write elsewhere"
            )
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    frame = pd.read_csv(table)
    wrote = [ln for ln in out.splitlines() if ln.startswith("wrote ")]
    assert wrote and wrote[0].startswith(f"wrote {len(frame)} rows to {table}")
    assert set(frame["sweep"]) == {"multi"} and len(frame) == 1 + 2 * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.json"]  # no lock left


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_out_over_a_fifo_a_device_or_a_symlink_is_refused(
    command: str, model: Path, tmp_path: Path
) -> None:
    """Never replaced, never opened (a FIFO would block a reader or writer forever)."""
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "real.csv").write_text("keep me\n")
    (tmp_path / "link.csv").symlink_to("real.csv")
    targets = {"fifo.csv": "a FIFO (named pipe)", "link.csv": "a symbolic link (to real.csv)"}
    try:  # a null device of our own: replacing it would harm nothing
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets["null"] = "a character device"
    except PermissionError:
        pass
    before = _tree(tmp_path)
    for name, kind in targets.items():
        proc = _cli(*WRITERS[command](model), "--out", name, cwd=tmp_path)
        line = _refused(proc)
        assert line.startswith(f"error: refusing to write {name}: it is {kind}"), line
        assert _tree(tmp_path) == before


def test_out_that_is_an_input_is_refused_even_with_overwrite(model: Path, tmp_path: Path) -> None:
    """The checkpoint itself, a hard link to it, a file of the data folder: --overwrite or not."""
    (tmp_path / "hard.pt").hardlink_to(model)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).write_bytes(Path("/usr/share/datasets/fashion-mnist", name).read_bytes())
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    before = _tree(tmp_path)
    cases = [
        (["gradients", "--model", str(model), "--images", "4", "--batches", "1"], str(model)),
        (["sweep", "single", "--model", str(model), *FAST], "hard.pt"),
        (["paths", "--model", str(model)], str(model)),
    ]
    for args, out in cases:
        for extra in ([], ["--overwrite"]):
            line = _refused(_cli(*args, "--out", out, *extra, cwd=tmp_path))
            assert line == (
                f"error: refusing to write {out}: it is the model checkpoint this command "
                "reads; write the results elsewhere"
            )
    label = data / "t10k-labels-idx1-ubyte.gz"
    sweep = ["sweep", "single", "--model", str(model), "--dataset", "fashion-mnist", *FAST]
    sweep += ["--data-dir", "data", "--out", str(label), "--overwrite"]
    line = _refused(_cli(*sweep, cwd=tmp_path))
    assert line == (
        f"error: refusing to write {label}: it is inside the data folder data, which this "
        "command reads; write the results elsewhere"
    )
    assert _tree(tmp_path) == before
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest


def test_every_command_refuses_an_existing_result_without_overwrite(
    model: Path, tmp_path: Path
) -> None:
    """paths, gradients and train as sweep does: refused in one line, the file unchanged;
    with --overwrite the run replaces it."""
    for command in sorted(WRITERS):
        folder = tmp_path / command
        folder.mkdir()
        out = folder / ("out.pt" if command == "train" else "out.csv")
        out.write_text("a result the user had\n")
        before = _tree(folder)
        line = _refused(_cli(*WRITERS[command](model), "--out", str(out), cwd=folder))
        assert line.startswith(f"error: {out} already exists; pass "), line
        assert "--overwrite" in line
        assert ("--resume" in line) == (command in ("sweep", "train"))
        assert _tree(folder) == before
    again = [*WRITERS["paths"](model), "--out", str(tmp_path / "paths" / "out.csv")]
    done = _cli(*again, "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(pd.read_csv(tmp_path / "paths" / "out.csv").columns) >= {"length", "paths"}
    figures = tmp_path / "figures"
    plot = ["plot", str(tmp_path / "paths" / "out.csv"), "--out", str(figures)]
    assert _cli(*plot, "--format", "png", cwd=tmp_path).returncode == 0
    before = _tree(figures)
    line = _refused(_cli(*plot, "--format", "png", cwd=tmp_path))
    figure = figures / "fig6a_path_lengths.png"
    assert line.startswith(f"error: {figure} already exists; pass --overwrite"), line
    assert _tree(figures) == before
    assert _cli(*plot, "--format", "png", "--overwrite", cwd=tmp_path).returncode == 0


def test_a_private_table_stays_private_after_resume(model: Path, tmp_path: Path) -> None:
    """A 0600 table and sidecar, cut short by two rows, are completed by --resume and keep
    their mode."""
    table = tmp_path / "t.csv"
    args = [*WRITERS["sweep"](model), "--out", str(table)]
    assert _cli(*args, cwd=tmp_path).returncode == 0
    whole = table.read_text()
    rows = list(csv.reader(io.StringIO(whole)))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows[:-2])
    table.write_text(buf.getvalue())
    for p in (table, table.with_suffix(".json")):
        p.chmod(0o600)
    resumed = _cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert table.read_text() == whole
    for p in (table, table.with_suffix(".json")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_a_sweep_whose_table_is_changed_under_it_does_not_claim_the_rows(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that takes no lock adds a row just before the sweep ends: the sweep reads its
    table back and refuses to report rows that are not what it wrote."""
    from resnet_ensemble.results import ResultsTable
    from resnet_ensemble.studies.sweeps import sweep_to_table

    finish = ResultsTable.write_metadata

    def meddle(self: ResultsTable, complete: bool, **extra: object) -> None:
        finish(self, complete, **extra)
        if complete:
            with open(self.path, "a") as f:
                f.write("other,residual,single,drop=99,,,,,,,,,0.5,4,8\n")

    monkeypatch.setattr(ResultsTable, "write_metadata", meddle)
    table = tmp_path / "t.csv"
    experiment = {"model_spec": str(model), "limit": 8, "device": "cpu"}
    # ResNet-14: the full network and its 6 blocks deleted one at a time, 7 rows.
    changed = r"t.csv was changed by another program .* holds 8 rows, not the 7 this sweep"
    with pytest.raises(ValueError, match=changed):
        sweep_to_table("single", table, experiment)
