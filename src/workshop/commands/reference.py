"""The docs' reference pages, made from the code: every setting, every command.

`workshop dev reference` writes docs/reference/settings.md (settings_page.py) and
docs/reference/commands.md, each command's own `--help`; a test makes them again and fails
when the committed pages differ.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import click
from click.testing import CliRunner

from ..course import COMMAND, Course
from .settings_page import GENERATED, section, settings_page, table

REFERENCE = Path("docs") / "reference"
SETTINGS_PAGE = REFERENCE / "settings.md"
COMMANDS_PAGE = REFERENCE / "commands.md"
# The CLI's help, as a terminal of this width shows it: 80 columns fit the page unscrolled.
HELP_ENV = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}


# -- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # ("db", "start")
    summary: str  # the first paragraph of its help, as the command list shows it
    panel: str


def first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text or "").split("\n\n")[0].split())


def commands(root: click.Group) -> list[Command]:
    """Every command and sub-command of the CLI, in the order `--help` lists them."""
    found = []

    def walk(group: click.Group, words: tuple[str, ...], panel: str | None) -> None:
        for name, command in group.commands.items():
            if command.hidden:
                continue
            here = panel or command.rich_help_panel or "Commands"
            if hasattr(command, "commands"):
                walk(command, (*words, name), here)
            else:
                found.append(Command((*words, name), first_paragraph(command.help), here))

    walk(root, (), None)
    return found


def help_text(root: click.Group, words: tuple[str, ...]) -> str:
    """What `workshop ... --help` prints, without the trailing spaces of its lines."""
    result = CliRunner().invoke(
        root, [*words, "--help"], env={**os.environ, **HELP_ENV}, prog_name="workshop"
    )
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


COMMANDS_INTRO = """\
Run every command through uv, from anywhere in the repository: `{command} COMMAND`. Each
section below is the command's own `--help`, as `{command} COMMAND --help` prints it."""


def commands_page(root: click.Group) -> str:
    """docs/reference/commands.md: one table per panel of `--help`, then each command's help."""
    found = commands(root)
    panels = list(dict.fromkeys(c.panel for c in found))
    bare = first_paragraph(root.callback.__doc__ if root.callback else "")
    out = ["# Commands", "", GENERATED, "", COMMANDS_INTRO.format(command=COMMAND), ""]
    out += ["```text", f"$ {COMMAND} --help", help_text(root, ()), "```", ""]
    for panel in panels:
        rows = [[f"`{COMMAND} {' '.join(c.words)}`", c.summary] for c in found if c.panel == panel]
        if panel == panels[0]:
            rows.insert(0, [f"`{COMMAND}`", bare])
        out += [f"## {panel}", ""]
        out += section(slug(panel), table(("command", "what it does"), rows))
        out.append("")
        for command in (c for c in found if c.panel == panel):
            out += [f"### `workshop {' '.join(command.words)}`", ""]
            out += ["```text", f"$ {COMMAND} {' '.join(command.words)} --help"]
            out += [help_text(root, command.words), "```", ""]
    return "\n".join(out)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# -- both -----------------------------------------------------------------------------------


def pages(course: Course, root: click.Group) -> dict[Path, str]:
    """Each reference page's path (relative to the course's root) and its text; `root` is the
    `workshop` command (a command has it as `ctx.find_root().command`)."""
    return {SETTINGS_PAGE: settings_page(course), COMMANDS_PAGE: commands_page(root)}


def write(course: Course, root: click.Group) -> list[Path]:
    written = []
    for relative, text in pages(course, root).items():
        path = course.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
