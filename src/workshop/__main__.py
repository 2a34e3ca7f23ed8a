"""`python -m workshop` is the `workshop` command: the entry point, above every layer.

A `workshop check` goes to a warm process first (workshop.warm), before anything heavy is
imported; only when none answers are the commands loaded. With `--serve-warm ROOT` this is the
warm process: it loads what every check imports and runs the command in a child per check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workshop import warm


def main() -> None:
    """The `workshop` command: a check goes to the warm process when one answers."""
    if sys.argv[1:2] == ["check"] and (code := warm.ask(Path.cwd(), sys.argv[1:])) is not None:
        sys.exit(code)
    from workshop.commands import main as command

    command()


def serve_warm(root: Path) -> None:
    from workshop.checks.run import CHECK_IMPORTS
    from workshop.commands import main as command
    from workshop.warm.server import serve

    # And what the `workshop` command itself imports (its consoles are made in the child,
    # which has the terminal).
    preload = (*CHECK_IMPORTS, "typer", "rich.console", "rich.table", "rich.syntax")
    serve(root, preload, command)


if __name__ == "__main__":
    if sys.argv[1:2] == [warm.SERVE]:
        serve_warm(Path(sys.argv[2]))
    else:
        main()
