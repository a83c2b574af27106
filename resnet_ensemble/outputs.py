"""Outputs that never clobber: the one place a command claims the files it is about to write.

Holds:
- ``claim_outputs``: before any work, refuse outputs that cannot be written or must not be
  (``results.check_writable``, which refuses symlinks and anything but regular files through
  ``atomic.check_target``), outputs that are one of the command's inputs, and results that
  exist without ``--overwrite`` (or ``--resume``); then lock them for the whole run
- ``output_lock``: an advisory lock (``fcntl.flock``) on a hidden ``.NAME.lock`` beside a file,
  so that a second writer of the same table is refused at once instead of interleaving with
  the first; ``OutputLocked`` is its refusal
- ``input_paths``: the files and folders a command reads, from its model and data options

Every command that writes a table goes through ``claim_outputs``; ``atomic.atomic_write``
repeats the symlink and file-type check at the moment of writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .results import check_writable

__all__ = ["OutputLocked", "claim_outputs", "input_paths", "lock_path", "output_lock"]


class OutputLocked(ValueError):
    """Another process holds the lock of an output: it is writing that file now."""


def lock_path(path: str | os.PathLike[str]) -> Path:
    """``results/t.csv`` -> ``results/.t.csv.lock``: the lock file of an output."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    made = []
    for p in missing:
        try:
            p.mkdir()
            made.append(p)
        except FileExistsError:
            pass
    return made


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file the holder wrote its pid into; empty where unknown."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        if text.isdigit():
            return f" (pid {int(text)})"
    return ""


#: flock on a file system that cannot lock (some network mounts): run unlocked, as before.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path`` (through ``lock_path(path)``) while the
    body runs; refuse at once, never wait, when another process holds it.

    The lock file is removed on exit, and so are folders made only to hold it, so that a run
    refused or failed before it wrote anything leaves no trace. Removing it is safe because a
    process that locked a file since removed checks that it still holds the file at that path,
    and tries again if not. A process killed with SIGKILL leaves the file; the kernel has
    dropped its lock, so the next run takes it over. Where ``fcntl`` is missing (Windows) or
    the file system cannot lock, the body runs unlocked.

    Raises:
        OutputLocked: another process is writing ``path``; one line naming it and that
            process's pid.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    lock = lock_path(path)
    made: list[Path] = []
    fd: int | None = None
    try:
        for _ in range(100):  # another holder removing the file under us: take it again
            made += _make_folders(lock.parent)
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:  # its folder was removed by a finishing holder
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                fd = None
                raise OutputLocked(
                    f"{path} is being written by another process{holder}; wait for it to "
                    "finish, or write elsewhere"
                ) from None
            except OSError as err:
                if err.errno not in _NO_LOCKING:
                    raise
                break  # cannot lock here: keep the file, run unlocked
            try:
                held = os.stat(lock)
                mine = os.fstat(fd)
                same = (held.st_dev, held.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                break
            os.close(fd)  # the holder removed it between our open and our lock
            fd = None
        else:  # pragma: no cover - a hundred holders in a row
            raise OutputLocked(f"{path} is being written by other processes; try again")
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)  # while still holding it: see the docstring
            os.close(fd)
        for folder in reversed(made):  # only if empty: a folder the run wrote into stays
            with contextlib.suppress(OSError):
                folder.rmdir()


def input_paths(options: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """The files and folders a command reads, each with what it is, from ``open_experiment``'s
    keyword arguments (model_spec, weights_file, dataset, data_dir): a checkpoint file, a
    Hugging Face folder, a weights file, a ``text:`` file, a data folder."""
    found: list[tuple[str, Path]] = []
    spec = options.get("model_spec")
    if isinstance(spec, str) and spec:
        if spec.startswith("hf:"):
            found.append(("the model folder", Path(spec[3:])))
        elif ":" not in spec or Path(spec).exists():
            found.append(("the model checkpoint", Path(spec)))
    if options.get("weights_file"):
        found.append(("the weights file", Path(options["weights_file"])))
    dataset = options.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("text:"):
        found.append(("the text data file", Path(dataset[5:])))
    if options.get("data_dir"):
        found.append(("the data folder", Path(options["data_dir"])))
    return [(what, p.expanduser()) for what, p in found]


def _refuse_input(path: Path, inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse an output that is (or, for a folder, lies inside) one of the inputs. Only an
    existing output can be one; symlinks were refused before, hard links are caught here."""
    if not path.exists():
        return
    for what, source in inputs:
        if not source.exists():
            continue
        if source.is_dir():
            inside = path.resolve().is_relative_to(source.resolve())
            if inside:
                raise ValueError(
                    f"refusing to write {path}: it is inside {what} {source}, which this "
                    "command reads; write the results elsewhere"
                )
        elif os.path.samefile(path, source):
            raise ValueError(
                f"refusing to write {path}: it is {what} this command reads; write the results "
                "elsewhere"
            )


def _existing_message(path: Path, resume: bool | None) -> str:
    if resume is None:  # a command that cannot continue a result
        return f"{path} already exists; pass --overwrite to replace it, or write elsewhere"
    return f"{path} already exists; pass --resume to continue it or --overwrite to start again"


@contextlib.contextmanager
def claim_outputs(
    outputs: Iterable[str | os.PathLike[str] | None],
    *,
    inputs: Iterable[tuple[str, Path]] = (),
    overwrite: bool = False,
    resume: bool | None = None,
    folders: Iterable[str | os.PathLike[str] | None] = (),
) -> Iterator[list[Path]]:
    """Check the files a command will write and hold their locks for the whole run.

    In this order, before any work: each output can be written, and is not a symlink or
    anything but a regular file (``check_writable``); none is one of ``inputs``
    (``input_paths``), whatever ``overwrite`` says; then each is locked (``output_lock``);
    then, under the locks, an existing output is refused unless ``overwrite`` or ``resume``
    (so that of two runs started at once, the second sees the first one's result).

    Args:
        outputs: the files (None entries are skipped): a table, its sidecar, a report.
        inputs: what the command reads, as ``input_paths`` gives it.
        overwrite, resume: the command's flags; ``resume`` None for a command without one
            (its refusal then names only --overwrite).
        folders: folders the command fills (a report's figures): one holding anything counts
            as an existing result; not locked.

    Raises:
        ValueError: one line naming the path and what to do; ``OutputLocked`` for a locked one.
    """
    paths = list(dict.fromkeys(Path(p) for p in outputs if p is not None))
    sources = list(inputs)
    for path in paths:
        check_writable(path)
        _refuse_input(path, sources)
    with contextlib.ExitStack() as locks:
        for path in paths:
            locks.enter_context(output_lock(path))
        if not (overwrite or resume):
            for path in paths:
                if path.exists():
                    raise ValueError(_existing_message(path, resume))
            for folder in (Path(f) for f in folders if f is not None):
                if folder.is_dir() and any(folder.iterdir()):
                    raise ValueError(_existing_message(folder, resume))
        yield paths
