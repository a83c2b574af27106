"""Files that are either whole or absent: the one place output files are written.

Holds:
- ``atomic_write``: write bytes, text, or whatever a function writes, to a temporary file beside
  the target, fsync it, and rename it over the target; a crash, a kill or a full disk leaves the
  old file (or none), never a part of the new one
- ``check_target``: refuse a target that is a symlink or exists and is not a regular file (a FIFO,
  a device such as /dev/null, a socket, a folder): renaming over it would replace it
- ``stale_temporaries`` / ``remove_stale_temporaries``: the hidden temporary files that a process
  killed mid-write (SIGKILL cannot be caught) left beside a target; a run that owns the target
  removes them before writing
- ``remove_stale_temporaries_in``: the same for every target in a folder a run owns (a
  ``reproduce`` output folder), including targets that were never written whole

Checkpoints (``checkpoints.save_checkpoint``), results tables and sidecars (``results``), training
histories and figures all go through ``atomic_write``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_write",
    "check_target",
    "remove_stale_temporaries",
    "remove_stale_temporaries_in",
    "stale_temporaries",
]

#: ``atomic_write``'s temporary names: ``.NAME.`` + mkstemp's 8 random characters + ``.tmp``.
_TEMPORARY_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def check_target(path: str | os.PathLike[str]) -> os.stat_result | None:
    """Refuse a target that a rename would destroy rather than update: a symlink (the rename
    replaces the link, not the file it points to) or anything but a regular file (a FIFO, a
    character device such as /dev/null, a socket, a folder). Reads nothing and writes nothing.

    Returns:
        The existing file's ``stat`` (so that a rewrite can keep its mode), or None where there
        is no file yet.

    Raises:
        ValueError: one line naming ``path`` and what it is.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:  # e.g. a parent that is a file: the write itself will say so
        return None
    if stat.S_ISLNK(info.st_mode):
        raise ValueError(
            f"refusing to write {path}: it is a symbolic link (to {os.readlink(path)}); give "
            "the real path, or remove the link"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise ValueError(f"refusing to write {path}: it is {kind}, not a regular file")
    return info


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that an ``atomic_write`` of ``path`` killed mid-write (SIGKILL, power
    loss) left beside it: hidden, named ``.NAME.XXXXXXXX.tmp``; never ``path`` itself."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return []
    prefix = _temporary_prefix(path)
    return sorted(
        p
        for p in parent.iterdir()
        if p.name.startswith(prefix) and p.name.endswith(".tmp") and p.is_file()
    )


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete what ``stale_temporaries`` finds; called by a run that owns ``path`` (a resumed
    sweep or training run) before it writes, and returns what it removed."""
    return _unlink_all(stale_temporaries(path))


def remove_stale_temporaries_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete every ``atomic_write`` temporary file directly inside ``folder`` (not below it):
    for a run that owns the whole folder, where a kill may have come before a target's first
    whole write, so there is no target name to look beside. Other hidden files are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in sorted(folder.iterdir()) if _TEMPORARY_NAME.match(p.name) and p.is_file()]
    return _unlink_all(found)


def _unlink_all(paths: list[Path]) -> list[Path]:
    """Delete ``paths``, skipping any that cannot be deleted; returns those deleted."""
    removed = []
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str | Callable[[IO[bytes]], None]
) -> None:
    """Write ``data`` (bytes, text, or a function writing to a binary file) to ``path`` so that
    readers see either the old file or the whole new one, never a part.

    The data go to a temporary file in the same directory, are flushed and fsynced, and the file
    is renamed over ``path``; on any error the temporary file is removed and ``path`` untouched.
    A missing parent folder is created (only now that there is something to put in it). An
    ``OSError`` (a full disk, a read-only folder) is re-raised as an ``OSError`` with the same
    errno and a one-line message naming ``path``.

    A target that is a symlink or not a regular file is refused before anything is written
    (``check_target``); a file that is replaced keeps its permission bits (a private 0600 table
    stays private).

    Raises:
        ValueError: ``path`` is a symlink or not a regular file.
        OSError: the write failed; ``path`` is unchanged.
    """
    path = Path(path)
    earlier = check_target(path)
    parent = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=parent)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600): keep the replaced file's permissions, else
        # give it those a plain open would.
        mode = stat.S_IMODE(earlier.st_mode) if earlier else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        hint = " (free some disk space, or write elsewhere)" if err.errno == errno.ENOSPC else ""
        kept = "it is unchanged" if path.exists() else "nothing was written"
        raise OSError(err.errno, f"cannot write {path}: {reason}{hint}; {kept}") from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX only)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
