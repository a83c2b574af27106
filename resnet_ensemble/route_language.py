"""The route language: a route of blocks written as text, with one meaning and within bounds.

A route is comma-separated items:

- ``3``: block 3; ``0-3``: blocks 0, 1, 2, 3; ``3-0``: the same range reversed;
- ``4x2``: block 4 run twice (a repeat count of at least 1);
- ``[2|3|4]``: a parallel group, its branches separated by ``|``, each a comma-separated list of
  the items above (``[2-3|4-5]`` runs two two-unit layers side by side);
- ``none``: the empty route (every block deleted); an empty text is refused;
- a block may also be named: ``-1`` counts from the end (``-1`` the last block), and a name
  (``layer2.1``) is looked up with the ``resolve`` callback ``parse_route`` is given
  (``resolve_block`` against the model's blocks), so ``layer1.0-layer2.1`` and ``-1x2`` read.

Numbers are ASCII digits only (no underscores or other scripts' digits; a leading ``-``
makes an index count from the end, and ``-0`` is refused). Every index
and range is checked against the model's block count, and the route's length (a group counts
its branches' blocks) against ``max_length`` (16 blocks per block of the model by default),
while the text is read and before anything is expanded, so that a route of any text takes
bounded time and memory. Errors are one line that shows the offending token.

Holds ``Parallel`` and ``RouteItem`` (what a route holds), ``parse_route``,
``format_route_item`` and ``route_length_limit``. Torch-free.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

__all__ = [
    "EMPTY_ROUTE",
    "Parallel",
    "RouteItem",
    "format_route_item",
    "parse_route",
    "route_length_limit",
]

EMPTY_ROUTE = "none"
#: A route may run each block this many times on average: enough for any Painters operation.
REPEATS_PER_BLOCK = 16
#: The bound on a route's length when the model (its block count) is not known yet.
UNKNOWN_MODEL_LIMIT = 16_384
_MAX_DIGITS = 9  # no block index or repeat count needs more; a longer number is refused unread
_SHOWN = 40  # characters of the route text quoted in an error
_TOKEN = re.compile(r"[ \t]*(?:([0-9]+)|([A-Za-z_][A-Za-z0-9_.]*)|([-x,|\[\]]))")
_NAME_REPEAT = re.compile(r"(.*[0-9])x([0-9]+)")  # layer1.0x2: a named block run twice


@dataclass(frozen=True)
class Parallel:
    """A parallel group in a route: every branch reads the same input, and the group's output
    is the mean of the branches' outputs, ``h + mean_b f_b(h)`` for residual branches with
    identity shortcuts (Sun et al. 2024, "Transformer Layers as Painters"). A branch is one
    block index or a sequence of them run in order (a whole transformer layer: ``(2i, 2i+1)``).

    Example:
        >>> with route(model, [0, 1, Parallel([2, 3, 4]), 5]):   # blocks 2-4 side by side
        ...     logits = model(x)
    """

    branches: tuple[tuple[int, ...], ...]

    def __init__(self, branches: Iterable[int | Iterable[int]]) -> None:
        items: list[int | tuple[int, ...]] = []
        for b in branches:
            if isinstance(b, numbers.Integral) and not isinstance(b, bool):
                items.append((int(b),))
            elif isinstance(b, str):  # a block's name; plan_route resolves it
                items.append((b,))
            elif isinstance(b, bytes) or not isinstance(b, Iterable):
                raise ValueError(
                    f"a parallel branch must be a block index or a sequence of them, got {b!r}"
                )
            else:
                items.append(tuple(b))  # checked as indices by plan_route
        object.__setattr__(self, "branches", tuple(items))

    def __repr__(self) -> str:
        parts = "|".join(",".join(str(i) for i in br) for br in self.branches)
        return f"[{parts}]"


RouteItem = int | Parallel


def format_route_item(item: RouteItem) -> str:
    return repr(item) if isinstance(item, Parallel) else str(item)


def route_length_limit(n: int | None) -> int:
    """The longest route allowed for a model of ``n`` blocks (``UNKNOWN_MODEL_LIMIT`` when the
    model is not known)."""
    return UNKNOWN_MODEL_LIMIT if n is None else REPEATS_PER_BLOCK * max(n, 1)


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")


class _Reader:
    """Reads the tokens of one route text, keeping count of the blocks it will expand to."""

    def __init__(
        self,
        text: str,
        n: int | None,
        max_length: int,
        resolve: Callable[[str], int] | None = None,
    ) -> None:
        self.text, self.n, self.max_length, self.resolve = text, n, max_length, resolve
        self.pos, self.length = 0, 0
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        while self.pos < len(text):
            match = _TOKEN.match(text, self.pos)
            if match is None:
                rest = text[self.pos :].lstrip(" \t")
                if not rest:
                    break
                self.fail(f"cannot read {rest[0]!r}", self.pos + len(text[self.pos :]) - len(rest))
            number, name, symbol = match.groups()
            if name is not None:
                start = match.start(2)
                if name == "x" and self.tokens and self.tokens[-1][0] != "sym":
                    self.tokens.append(("sym", "x", start))  # "4 x2" spaced
                elif (split := _NAME_REPEAT.fullmatch(name)) is not None and name[0] != "x":
                    head, times = split.groups()
                    self.tokens.append(("name", head, start))
                    self.tokens.append(("sym", "x", start + len(head)))
                    self.tokens.append(("int", times, start + len(head) + 1))
                elif name[0] == "x" and name[1:].isdigit() and self.tokens:
                    self.tokens.append(("sym", "x", start))  # 4x2 reads x2 as a word
                    self.tokens.append(("int", name[1:], start + 1))
                else:
                    self.tokens.append(("name", name, start))
            elif number is not None:
                self.tokens.append(("int", number, match.start(1)))
            else:
                self.tokens.append(("sym", symbol, match.start(3)))
            self.pos = match.end()
        self.i = 0

    def fail(self, what: str, at: int | None = None) -> NoReturn:
        where = f" at character {at + 1}" if at is not None else ""
        raise ValueError(
            f"route {_shown(self.text)}: {what}{where}; write blocks (3, -1 the last, layer2.1), "
            "ranges (0-3, or 3-0 reversed), repeats (4x2), parallel groups ([2|3-4]), "
            "comma-separated, or "
            f"{EMPTY_ROUTE}"
        )

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, symbol: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "sym" and token[1] == symbol:
            self.i += 1
            return True
        return False

    def number(self, what: str) -> int:
        token = self.peek()
        if token is None or token[0] != "int":
            shown = repr(token[1]) if token else "the end"
            self.fail(f"expected {what}, found {shown}", token[2] if token else None)
        assert token is not None
        self.i += 1
        if len(token[1]) > _MAX_DIGITS:
            self.fail(f"the number {token[1][:12]}... is too long", token[2])
        return int(token[1])

    def index(self) -> int:
        at = self.peek()
        if at is not None and at[0] == "name":
            self.i += 1
            if self.resolve is None:
                self.fail(f"block name {at[1]!r} given, but no model to look it up in", at[2])
            try:
                return self.resolve(at[1])
            except ValueError as err:
                self.fail(f"{err}", at[2])
        negative = self.take("-")
        value = self.number("a block index")
        if negative:
            if value == 0:
                self.fail(
                    "block -0: negative indices count from -1, the last block",
                    at[2] if at else None,
                )
            if self.n is None:  # read again once the model's block count is known
                return -value
            if value > self.n:
                self.fail(
                    f"block -{value} is out of range: the model has {self.n} blocks, -{self.n}..-1",
                    at[2] if at else None,
                )
            return self.n - value
        if self.n is not None and value >= self.n:
            self.fail(
                f"block {value} is out of range: the model has {self.n} blocks, 0..{self.n - 1}",
                at[2] if at else None,
            )
        return value

    def count(self, blocks: int, at: int) -> None:
        self.length += blocks
        if self.length > self.max_length:
            per = f" ({REPEATS_PER_BLOCK} per block)" if self.n is not None else ""
            self.fail(f"the route runs more than {self.max_length} blocks{per}", at)

    def atom(self) -> list[int]:
        """``i``, ``i-j`` or ``ixk``: checked and counted before it is expanded."""
        start = self.peek()
        first = self.index()
        if self.take("-"):
            last = self.index()
            self.count(abs(last - first) + 1, start[2] if start else 0)
            step = 1 if first <= last else -1
            return list(range(first, last + step, step))
        if self.take("x"):
            at = self.peek()
            times = self.number("a repeat count")
            if times < 1:
                self.fail(f"repeat count {times}: a block runs at least once", at[2] if at else 0)
            self.count(times, start[2] if start else 0)
            return [first] * times
        self.count(1, start[2] if start else 0)
        return [first]

    def inner_atom(self) -> list[int]:
        """An atom inside a parallel group, where another group cannot start."""
        token = self.peek()
        if token is not None and token[1] == "[":
            self.fail("a parallel group inside another", token[2])
        return self.atom()

    def group(self) -> Parallel:
        branches: list[list[int]] = []
        branch: list[int] = self.inner_atom()
        while True:
            if self.take(","):
                branch += self.inner_atom()
            elif self.take("|"):
                branches.append(branch)
                branch = self.inner_atom()
            elif self.take("]"):
                branches.append(branch)
                return Parallel(branches)
            else:
                token = self.peek()
                self.fail("unclosed parallel group '['", token[2] if token else None)

    def route(self) -> list[RouteItem]:
        out: list[RouteItem] = []
        while True:
            if self.take("["):
                out.append(self.group())
            else:
                out.extend(self.atom())
            token = self.peek()
            if token is None:
                return out
            if not self.take(","):
                self.fail(f"unexpected {token[1]!r}", token[2])


def parse_route(
    text: str,
    n: int | None = None,
    *,
    max_length: int | None = None,
    resolve: Callable[[str], int] | None = None,
) -> list[RouteItem]:
    """A route written as text (the module's docstring gives the language).

    Args:
        text: the route, e.g. ``"0-2,4x2,[5|6-7],9"``, or ``"none"`` for the empty route.
        n: the model's number of blocks; every index is checked against it as it is read.
        max_length: the most blocks the route may run (default ``route_length_limit(n)``).
        resolve: a block's name to its index (``resolve_block`` against the model); without
            it a name is refused. Negative indices need ``n`` (without it they stay negative).
    Raises:
        ValueError: one line, naming the offending token; nothing is expanded before its
            bounds are checked.
    Example:
        >>> parse_route("0-2,4x2,[5|6-7],9")
        [0, 1, 2, 4, 4, [5|6,7], 9]
    """
    if not isinstance(text, str):
        raise ValueError(f"a route is text, got {type(text).__name__}")
    limit = route_length_limit(n) if max_length is None else max_length
    if text.strip(" \t") == EMPTY_ROUTE:
        return []
    if not text.strip(" \t"):
        raise ValueError(f"the route is empty; write {EMPTY_ROUTE} for a route with no blocks")
    if len(text) > 8 * limit + 64:  # no route within the bound is written this long
        raise ValueError(
            f"route {_shown(text)}: {len(text):,} characters is longer than any route of at "
            f"most {limit} blocks"
        )
    return _Reader(text, n, limit, resolve).route()
