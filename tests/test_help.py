"""Every command's --help speaks to a user: no issue numbers ("issue 3"), no path of the developers' machines
(``../shared/photos``, ``/work/...``)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main

FORBIDDEN = re.compile(r"\bissues? \d+|\.\./shared|\bshared/photos|/work/", re.IGNORECASE)


def commands() -> list[str]:
    ctx = click.Context(main)
    return sorted(main.list_commands(ctx))


def test_every_command_is_listed() -> None:
    assert {"embed", "extract", "validate", "train", "calibrate-detection", "average-checkpoints"} <= set(commands())


@pytest.mark.parametrize("command", ["", *commands()])
def test_help_names_no_issue_and_no_private_path(command: str) -> None:
    res = CliRunner().invoke(main, [*([command] if command else []), "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert FORBIDDEN.findall(res.output) == [], res.output


def test_the_pattern_finds_what_it_forbids() -> None:
    for text in ("the quality bar (issue 3)", "Issue 23's bar", "--data ../shared/photos", "/work/main/x"):
        assert FORBIDDEN.search(text), text
    assert not FORBIDDEN.search("an issue with 3 photos, shared by all")
