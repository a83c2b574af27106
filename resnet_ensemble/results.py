"""Results tables: tidy CSV rows appended atomically, a JSON sidecar of metadata, and resume.

Holds:
- ``atomic_write_bytes`` / ``atomic_write_text``: write to a temporary file beside the target,
  fsync, then rename, so a reader never sees a half-written file and a kill loses nothing that
  was already there
- ``ResultsTable``: a CSV that grows one configuration at a time; each append rewrites the file
  atomically, so a sweep killed at any moment leaves a readable table holding every finished
  configuration; ``done`` tells a resumed sweep what to skip
- ``run_metadata``: what every sidecar records (versions, command line, time)
- ``check_writable``: refuse an unwritable output path before any work starts
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_write, remove_stale_temporaries

__all__ = [
    "ResultsTable",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "read_table",
    "run_metadata",
    "sidecar_path",
]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: temp file in the same folder, fsync, rename (see
    ``checkpoints.atomic_write``, the one implementation)."""
    atomic_write(path, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def _nearest_existing(folder: Path) -> Path:
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable(path: str | Path) -> Path:
    """Refuse, before any work, an output path that could not be written at the end: one that is
    a folder, whose folder (or an ancestor of it) is a file, or whose folder cannot be written.

    Creates nothing: a missing folder is made by the first write, so a run that fails before it
    has anything to write leaves no trace.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; give a file name")
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise ValueError(f"cannot write {path}: {existing} is a file, not a folder")
    try:  # os.access is not enough: root passes it on read-only mounts and in /proc
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(
            f"cannot write {path}: files cannot be created in {existing} "
            f"({err.strerror or err}); choose another output path"
        ) from None
    return path


def sidecar_path(table: str | Path) -> Path:
    """``results.csv`` -> ``results.json``."""
    return Path(table).with_suffix(".json")


def run_metadata() -> dict[str, Any]:
    """Versions, platform and command line: enough to say what produced a result."""
    import numpy
    import scipy
    import torch
    import torchvision

    from . import __version__

    prog = Path(sys.argv[0]).name
    if prog == "__main__.py":  # python -m resnet_ensemble (and torchrun -m resnet_ensemble)
        prog = f"python -m {Path(sys.argv[0]).parent.name}"
    return {
        "command": " ".join([prog, *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "resnet_ensemble": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "pandas": pd.__version__,
        },
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def read_table(path: str | Path, required: Iterable[str] = (), **read_csv: Any) -> pd.DataFrame:
    """Read a results CSV, checking that it has the columns a consumer needs; ``read_csv``
    goes to ``pandas.read_csv``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}")
    try:
        df = pd.read_csv(path, **read_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV table ({type(err).__name__})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it has {list(df.columns)}")
    return df


#: Metadata that must be the same for a resumed table to continue the same experiment.
RESUME_KEYS = (
    "model",
    "checkpoint_sha256",
    "dataset",
    "split",
    "images",
    "sweep",
    "seed",
    "samples",
    "max_k",
    "max_swaps",
)


def _check_same_experiment(path: Path, metadata: Mapping[str, Any]) -> None:
    """Refuse to resume a table whose sidecar records another model, data or settings: the
    skipped configurations would silently come from a different experiment."""
    try:
        earlier = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return  # no readable sidecar: nothing to compare with
    for key in RESUME_KEYS:
        if key in earlier and key in metadata and earlier[key] != metadata[key]:
            raise ValueError(
                f"cannot resume {path}: it was made with {key}={earlier[key]!r}, this run has "
                f"{key}={metadata[key]!r}; use the same settings, or --overwrite to start again"
            )


class ResultsTable:
    """A tidy CSV table with a JSON sidecar, grown one finished configuration at a time.

    ``key`` names the column that identifies a configuration (several rows may share it); a
    resumed run asks ``done`` and skips those. Each ``append`` rewrites the whole file
    atomically; tables here hold at most tens of thousands of rows, so this costs little and
    makes a torn row impossible.
    """

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str],
        *,
        key: str = "config",
        metadata: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.path = check_writable(path)
        self.columns = list(columns)
        self.key = key
        self._buffer = io.StringIO()
        self._frame = pd.DataFrame(columns=self.columns)
        if resume and self.path.exists():
            # Kept as the text it was written as: re-inferred dtypes would turn an integer
            # column with gaps into floats ("3" -> "3.0") when the table is written again.
            existing = read_table(
                self.path, required=self.columns, dtype=str, keep_default_na=False
            )
            self._frame = existing[self.columns].astype(object)
            _check_same_experiment(self.path, dict(metadata or {}))
        elif self.path.exists() and not resume:
            raise ValueError(
                f"{self.path} already exists; pass --resume to continue it, or --overwrite to "
                "start again"
            )
        self.metadata = dict(metadata or {})
        for stale in (self.path, sidecar_path(self.path)):  # left by a run killed mid-write
            remove_stale_temporaries(stale)
        # The sidecar is written with the first rows, not now: a run that fails before it has
        # any result (a model whose outputs are NaN, say) leaves no file behind.
        self._sidecar_written = resume and sidecar_path(self.path).exists()

    @classmethod
    def overwrite(cls, path: str | Path) -> None:
        """Remove an earlier table and its sidecar, for a fresh start."""
        for p in (Path(path), sidecar_path(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    @property
    def done(self) -> set[str]:
        return set(self._frame[self.key].astype(str))

    @property
    def frame(self) -> pd.DataFrame:
        """The table as ``read_table`` would return it (types inferred from the CSV)."""
        return pd.read_csv(io.StringIO(self._frame.to_csv(index=False)))

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add the rows of finished configurations and persist the whole table atomically."""
        if not rows:
            return
        unknown = set().union(*(r.keys() for r in rows)) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}")
        # Object columns keep each value's own type, so the CSV text of a row does not depend
        # on which other rows share its chunk (an int column with a gap would become float).
        new = pd.DataFrame(
            [{c: r.get(c) for c in self.columns} for r in rows], columns=self.columns, dtype=object
        )
        frame = new if self._frame.empty else pd.concat([self._frame, new], ignore_index=True)
        if not self._sidecar_written:  # first, so that a table never exists without one
            self.write_metadata(complete=False)
        atomic_write_text(self.path, frame.to_csv(index=False))
        self._frame = frame

    def write_metadata(self, complete: bool, **extra: Any) -> None:
        self.metadata.update(extra)
        self.metadata["complete"] = complete
        self.metadata["rows"] = len(self._frame)
        atomic_write_text(sidecar_path(self.path), json.dumps(self.metadata, indent=2, default=str))
        self._sidecar_written = True
