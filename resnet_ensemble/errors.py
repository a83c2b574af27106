"""An exception as the one line a user reads: ``one_line``, the one formatter behind every
error message that quotes another error (the CLI's ``error: ...``, the data and checkpoint
loaders' "(...)" asides).

Torch-free and importing nothing of the package, so the command line can use it.
"""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(
    err: BaseException, *, typed: bool = False, first: bool = False, limit: int | None = None
) -> str:
    """``err`` as one line: an OSError's own words and file (not ``[Errno 28] ...``), a
    KeyError's key without quotes, whitespace collapsed; the type's name where the message is
    empty or ``typed`` asks for it; with ``first``, the message's first line only; with
    ``limit``, at most that many characters and "...".

    Example:
        >>> one_line(FileNotFoundError(2, "No such file or directory", "x.pt"))
        'No such file or directory: x.pt'
    """
    text = str(err).strip()
    if isinstance(err, OSError) and err.strerror:  # "[Errno 28] ..." says nothing to a user
        text = err.strerror + (f": {err.filename}" if err.filename else "")
    if isinstance(err, KeyError) and text.startswith("'"):
        text = text.strip("'")
    if first and text:
        text = text.splitlines()[0]
    text = " ".join(text.split())
    if typed or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text
