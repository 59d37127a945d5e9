"""The CLI's exit codes and its command table."""

from __future__ import annotations

from pipeline.cli import commands
from pipeline.cli.parser import build_parser


def test_exit_codes_are_the_documented_contract():
    assert commands.EXIT_BAD_INPUT == 2
    assert commands.EXIT_VALIDATION == 3


def _subcommands() -> list[str]:
    parser = build_parser()
    (action,) = (a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_subcommand_has_a_cmd_function():
    names = _subcommands()
    assert {"train", "score", "decode", "validate", "run", "demo", "report", "sample"} <= set(names)
    missing = [n for n in names if not callable(getattr(commands, f"cmd_{n}", None))]
    assert missing == []


def test_every_exported_cmd_is_a_subcommand():
    exported = {n.removeprefix("cmd_") for n in commands.__all__}
    assert exported <= set(_subcommands())
