"""What every command group shares: the consoles, the help panels, the arguments, and the
`command` decorator that turns a WorkshopError into its one sentence and exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..course import WorkshopError

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

LEARN, TOOLS, TEACH = "Learn", "Tools", "Instructors and maintainers"

StepArg = Annotated[str, typer.Argument(help="The step's number, for example 01.")]
SolutionOpt = Annotated[bool, typer.Option("--solution", help="Use the reference solution.")]
OptionalStep = Annotated[
    str | None, typer.Argument(help="The step's number, for example 01 (default: yours).")
]
ExerciseArg = Annotated[str, typer.Argument(help="The exercise, for example 01.2.")]


# True when this process is the `workshop` command itself (not a test's CliRunner): set by
# workshop.commands.main.
as_the_command = False


def command(
    group: typer.Typer, name: str | None = None, panel: str | None = None, **options: Any
) -> Callable[..., Any]:
    """Register a command whose WorkshopError becomes its one sentence and exit code;
    `options` go to Typer's `command()`."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(func)
        def friendly(*args: Any, **kwargs: Any) -> None:
            try:
                func(*args, **kwargs)
            except WorkshopError as exc:
                errors.print(str(exc), soft_wrap=True, markup=False)
                raise typer.Exit(exc.exit_code) from None

        group.command(name, rich_help_panel=panel, **options)(friendly)
        return func

    return register


def relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
