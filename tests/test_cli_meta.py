"""Promises about the command line: every command explains itself with an example, and the README's commands
exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import typer

from observatory.cli import app

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> dict[str, click.Command]:
    root = typer.main.get_command(app)
    out: dict[str, click.Command] = {}

    def walk(cmd: click.Command, prefix: str) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out[prefix] = cmd

    walk(root, "")
    return out


def test_every_command_has_help_with_an_example() -> None:
    commands = _commands()
    assert len(commands) >= 20
    missing = [name for name, cmd in commands.items() if "Example:" not in (cmd.help or "")]
    assert not missing, f"commands without an example in their help: {missing}"


def test_contract_commands_exist() -> None:
    contract = ["ingest", "stats", "export", "classify", "detect", "simulate", "report", "events add", "assess",
                "probe", "helper", "probes add", "probes list", "probes revoke", "serve", "signals import",
                "lab up", "lab run", "lab down", "demo", "ooni sync", "pinger"]
    commands = _commands()
    assert [c for c in contract if c not in commands] == []


def test_readme_commands_exist_and_the_two_commands_are_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _commands()
    used = []
    for line in readme.splitlines():
        line = line.strip()
        if line.startswith("observatory "):
            words = [w for w in shlex.split(line.split("#")[0])[1:] if not w.startswith("-")]
            name = words[0] if words[0] in commands else " ".join(words[:2])
            used.append(name)
            assert name in commands, f"README uses `{line}` but there is no such command"
    assert len(used) >= 10
    assert "make demo" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
