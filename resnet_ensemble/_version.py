"""The package's version, in one place: pyproject.toml reads it from here when it builds.

Importing it costs nothing (no torch), so the command line's ``--help`` and every results
sidecar can read it without pulling in the library.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
