"""The route language has one meaning and stays within bounds (issue 23).

Every text either parses to a route whose indices lie in 0..n-1 and whose length is at most
16 n, or is refused with one short ValueError line, in bounded time and memory; the length of a
range or repeat is checked before it is expanded.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_ensemble.route_language import (
    REPEATS_PER_BLOCK,
    UNKNOWN_MODEL_LIMIT,
    Parallel,
    parse_route,
)

N = 15


def _blocks(route: list) -> list[int]:
    """Every block a parsed route runs, groups' branches included (written out here)."""
    out: list[int] = []
    for item in route:
        if isinstance(item, Parallel):
            out += [i for branch in item.branches for i in branch]
        else:
            out.append(item)
    return out


def test_the_language_by_example() -> None:
    assert parse_route("0-2,4x2,[5|6-7],9", N) == [0, 1, 2, 4, 4, Parallel([5, [6, 7]]), 9]
    assert parse_route("3-1") == [3, 2, 1]
    assert parse_route(" 0 , 1 ,2 ") == [0, 1, 2]
    assert parse_route("none") == [] and parse_route(" none ") == []
    assert parse_route("14x16", N) == [14] * 16


def test_negative_indices_and_names_read_as_the_blocks_they_name() -> None:
    names = {f"b{i}": i for i in range(N)}  # an independent lookup, not resolve_block
    spelled = parse_route("b0,-14,b1x2,b3-b5,[b6|-8],-7--1", N, resolve=names.__getitem__)
    assert spelled == parse_route("0,1,1,1,3-5,[6|7],8-14", N)
    assert parse_route("-1x2,14-0", N) == [14, 14, *range(14, -1, -1)]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3x0", "a block runs at least once"),
        ("3x-2", "expected a repeat count, found '-'"),
        (",,,", "expected a block index, found ','"),
        ("0,,1", "expected a block index, found ','"),
        ("0,", "expected a block index, found the end"),
        ("٣,0-14", "cannot read '٣'"),  # an Arabic-Indic digit: int() would read it
        ("０-１４", "cannot read '０'"),  # fullwidth digits
        ("1_0", "unexpected '_0'"),  # int() would read block 10
        ("-16", "block -16 is out of range: the model has 15 blocks, -15..-1"),
        ("--1", "expected a block index, found '-'"),
        ("layer1.0", "block name 'layer1.0' given, but no model to look it up in"),
        ("0x16000000", "runs more than 240 blocks"),
        ("0-100000000", "block 100000000 is out of range"),
        ("0-1000000000", "is too long"),
        ("0-10000000000000000000000", "is too long"),
        ("15", "block 15 is out of range: the model has 15 blocks, 0..14"),
        ("[1|2", "unclosed parallel group"),
        ("[1|[2|3]]", "a parallel group inside another"),
        ("[|2]", "expected a block index, found '|'"),
        ("1 2", "unexpected '2'"),
        ("0-14," * 16 + "0", "runs more than 240 blocks"),
    ],
)
def test_what_means_nothing_is_refused_in_one_short_line(text: str, said: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_route(text, N)
    message = str(info.value)
    assert said in message and "\n" not in message and len(message) <= 300


def test_an_empty_route_needs_its_explicit_spelling() -> None:
    for text in ("", "   "):
        with pytest.raises(ValueError, match="write none for a route with no blocks"):
            parse_route(text, N)


def test_without_a_model_the_length_is_still_bounded() -> None:
    with pytest.raises(ValueError, match=f"more than {UNKNOWN_MODEL_LIMIT} blocks"):
        parse_route("0-100000")
    with pytest.raises(ValueError, match="characters is longer than any route"):
        parse_route("1," * 100_000, N)


# Texts built mostly from the language's own characters (and a few that must be refused), so
# that the fuzzer reaches ranges, repeats and groups, not only unreadable characters.
_ALPHABET = "0123456789" * 3 + "-x,|[] " + "٣０_+e."
_texts = st.one_of(st.text(alphabet=_ALPHABET, max_size=40), st.text(max_size=20))


@settings(max_examples=400, deadline=500)
@given(text=_texts, n=st.integers(min_value=1, max_value=60))
def test_every_text_parses_within_bounds_or_is_refused(text: str, n: int) -> None:
    try:
        route = parse_route(text, n)
    except ValueError as err:
        message = str(err)
        assert "\n" not in message and len(message) <= 300
        return
    blocks = _blocks(route)
    assert all(isinstance(i, int) and 0 <= i < n for i in blocks)
    assert len(blocks) <= REPEATS_PER_BLOCK * n
    assert route or text.strip(" \t") == "none"
