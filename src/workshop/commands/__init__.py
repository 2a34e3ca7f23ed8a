"""The `workshop` command, assembled from one module per group of commands.

Each group (learn, run, workspace, doctor, db, dev, teach) is a Typer app of its own, added
here with `add_typer`: this module imports the groups, a group never imports it. The
commands may use every layer below: checks, postgres, course (and start or stop the warm
process); nothing imports them but `python -m workshop`.
"""

from __future__ import annotations

import typer

from . import common, db, dev, doctor, learn, run, teach, workspace
from .common import TEACH, TOOLS

app = typer.Typer(
    help="Your companion for the FastAPI + PostgreSQL workshop. Without a command: where you are.",
    callback=learn.where_you_are,
    invoke_without_command=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
for group in (run, learn, workspace, doctor, teach):
    app.add_typer(group.app)  # no name: its commands are the `workshop` command's own
app.add_typer(db.app, name="db", rich_help_panel=TOOLS)
app.add_typer(dev.app, name="dev", rich_help_panel=TEACH)


def main() -> None:
    """The `workshop` command itself (a test's CliRunner calls `app` instead)."""
    common.as_the_command = True
    app()
