"""A transcript of the companion at work, made by running it: the docs show real output.

`workshop dev transcript` writes docs/companion-transcript.txt; a test runs the same
commands on a fresh copy of the course and fails when the file differs.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import chdir
from pathlib import Path

import click
from click.testing import CliRunner

from ..checks.verify import starter_copy
from ..course import COMMAND, Course
from ..postgres import resolve_server

TRANSCRIPT = Path("docs") / "companion-transcript.txt"
COMMANDS = (
    ["hint", "01.1"],
    ["hint", "01.1"],
    ["check", "01"],
    ["reset", "01", "--exercise", "01.2"],
)
# What changes from run to run: backup folders' times.
VOLATILE = re.compile(r"backups/\d{8}-\d{6}-\d{6}")


def make(course: Course, root: click.Group) -> str:
    """Run the commands as a learner would, on an untouched copy of the course; `root` is the
    `workshop` command (a command has it as `ctx.find_root().command`)."""
    lines = []
    # The copy uses this course's server, not an embedded server of its own.
    server = resolve_server(course.root).url.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as folder:
        copy = starter_copy(course, Path(folder))
        with chdir(copy.root):
            for command in COMMANDS:
                env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "DATABASE_URL": server}
                result = CliRunner().invoke(root, command, env={**os.environ, **env})
                output = VOLATILE.sub("backups/<time>", result.output.rstrip())
                lines.append(f"$ {COMMAND} {' '.join(command)}\n{output}\n")
    return "\n".join(lines)
