"""Every command's ``--help`` is whole: each listed command's line is its full one-line help
(click cuts its own at the first full stop, such as the one of "Fig. 3", or at 45 characters
with "..."), and every option has a help text that ends a sentence."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from resnet_ensemble.cli import _SUBCOMMANDS, cli


def commands(cmd: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """(path, command) for the root and every command under it."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from commands(cmd.get_command(ctx, name), (*path, name))


ALL = list(commands())
GROUPS = [(path, cmd) for path, cmd in ALL if isinstance(cmd, click.Group)]


def name_of(value: object) -> str | None:
    """A test id: the command's path ("root" for the top), nothing for the command object."""
    return (" ".join(value) or "root") if isinstance(value, tuple) else ""


def listed(output: str) -> dict[str, str]:
    """The Commands section of a help page: name -> its text, wrapped lines joined."""
    section = output.split("Commands:\n", 1)[1]
    rows: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^  (\S+)\s+(.*)$", line)
        if match:
            name, text = match.groups()
            rows[name] = text
        elif line.strip() and name is not None:
            rows[name] += " " + line.strip()
    return rows


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=name_of)
def test_a_group_lists_each_command_with_its_whole_line(path, group):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    rows = listed(result.output)
    ctx = click.Context(group)
    assert sorted(rows) == sorted(group.list_commands(ctx))
    for name, text in rows.items():
        command = group.get_command(ctx, name)
        whole = _SUBCOMMANDS[name][1] if not path else command.short_help
        assert whole, f"{name}: no one-line help of its own"
        assert text == whole, f"{name}: listed as {text!r}"
        assert text.endswith(".") and not text.endswith("..."), name


@pytest.mark.parametrize(("path", "command"), ALL, ids=name_of)
def test_every_option_has_a_whole_help_text(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        text = (param.help or "").strip()
        assert text, f"{' '.join(path)} {param.opts[0]}: no help"
        assert text.endswith("."), f"{' '.join(path)} {param.opts[0]}: {text[-40:]!r}"
