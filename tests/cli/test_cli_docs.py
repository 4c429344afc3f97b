"""The docs keep up with the CLI: every registered command (subcommands of groups included) has help text and
a section in docs/cli.md that names each of its options."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from cli_support import REPO_ROOT

from failure_aware.cli import cli

DOC = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group`` by its full name (``db upgrade``), groups included."""
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}".strip()
        yield full, command
        if isinstance(command, click.Group):
            yield from commands(command, full)


def section(name: str) -> str | None:
    """The text of the docs section whose heading starts with `name` in backticks (up to the next heading)."""
    heading = re.compile(rf"^#+ `{re.escape(name)}(?: [^`]*)?`", re.MULTILINE)
    found = heading.search(DOC)
    if found is None:
        return None
    rest = DOC[found.end():]
    following = re.search(r"^#", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


ALL = list(commands())
# Options that every data command takes, described once under "Conventions" rather than per command.
CONVENTIONS = {"--format"}


def test_the_walk_finds_the_commands() -> None:
    names = {name for name, _ in ALL}
    assert {"detect", "report", "events", "show", "annotate", "revive", "bury", "import", "export",
            "db", "db upgrade", "db version", "verify"} <= names


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_every_command_has_help_and_a_documented_section(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`{name}` has no help text"
    if isinstance(command, click.Group):
        assert re.search(rf"^#+ `{re.escape(name)} ", DOC, re.MULTILINE), f"group `{name}` not in docs/cli.md"
        return
    text = section(name)
    assert text is not None, f"docs/cli.md has no '### `{name} ...`' section"
    assert text.strip(), f"the section of `{name}` is empty"
    for param in command.params:
        if isinstance(param, click.Option):
            flag = max(param.opts, key=len)
            if flag in CONVENTIONS:
                assert f"`{flag} " in DOC, f"docs/cli.md's conventions do not describe {flag}"
                continue
            assert flag in text, f"docs/cli.md does not describe {flag} of `{name}`"
            assert (param.help or "").strip(), f"{flag} of `{name}` has no help text"
