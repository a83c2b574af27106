"""The package's version, in one place: the installed distribution's, else the source tree's.

Importing it costs nothing (no torch), so the command line's ``--help`` and every results
sidecar can read it without pulling in the library.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("resnet-ensemble")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"
