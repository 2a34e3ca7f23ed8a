"""For instructors: `workshop verify` (the course is sound) and `workshop bench`."""

from __future__ import annotations

import importlib
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.markup import escape

from ..checks import verify
from ..course import Course
from ..course.catalogue import catalogue
from ..course.loader import load_folder
from .common import (
    TEACH,
    command,
    console,
    relative,
)

app = typer.Typer()


def load_bench(root: Path) -> ModuleType:
    """The benchmark, bench/: a maintainer's tool, kept beside its variants and out of the
    learner's package. Its modules: `.model` (what a run is), `.runner`, `.report`."""
    bench = load_folder(root / "bench", "workshop_bench")
    for module in ("model", "runner", "report"):
        importlib.import_module(f"{bench.__name__}.{module}")
    return bench


@command(app, "bench", panel=TEACH)
def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="One short round, in under a minute: does it run?")
    ] = False,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Rounds of every variant (default 2; quick: 1).")
    ] = None,
    duration: Annotated[
        int | None, typer.Option(min=1, help="Seconds of load per request (default 8; quick: 1).")
    ] = None,
    connections: Annotated[
        str,
        typer.Option(
            help="Client connections wrk keeps open; comma-separated, each variant is loaded "
            "at each (32,1000)."
        ),
    ] = "32",
    variants: Annotated[
        str,
        typer.Option(
            help="Which, comma-separated: raw, fastapi, core, sync, 04, 05, 06, 06-2w, 06-pgb, "
            "06-2w-pgb (default: all)."
        ),
    ] = "",
    requests: Annotated[
        str,
        typer.Option(help="Which, comma-separated: get, list, create, search (default: all)."),
    ] = "",
    loop: Annotated[
        str,
        typer.Option(
            help="uvicorn's event loop for every variant: auto (uvloop where installed), "
            "asyncio, uvloop."
        ),
    ] = "auto",
    output: Annotated[
        Path | None,
        typer.Option(help="Where results.md and results.png go (docs/performance for the docs)."),
    ] = None,
) -> None:
    """Load the step 04, 05 and 06 references beside four baselines with wrk; write
    build/bench/."""
    course = Course()
    bench = load_bench(course.root)
    options = bench.model.Options.make(
        quick=quick,
        rounds=rounds,
        duration=duration,
        connections=numbers(connections, "--connections"),
        variants=[key.strip() for key in variants.split(",") if key.strip()],
        requests=[kind.strip() for kind in requests.split(",") if kind.strip()],
        loop=loop,
    )
    results = bench.runner.run(
        course, options, output=output, say=lambda line: console.print(line, markup=False)
    )
    console.print(bench.report.summary(results))
    for path in results.files:
        console.print(f"written: {relative(path, course.root)}", markup=False)


def numbers(text: str, option: str) -> list[int]:
    """'32,1000' as [32, 1000]; a usage error that names the option for anything else."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise typer.BadParameter(
            f"{text!r}: whole numbers above 0, comma-separated.", param_hint=option
        )
    return values


# The learner's companion commands (status, check, hint, watch, reset, diff, ...) register
# themselves on `app`; imported last, as they use what this module defines.


@command(app, "verify", panel=TEACH)
def verify_course() -> None:
    """Every solution passes, every starter fails just its exercises, all is in sync."""
    course = Course()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, console.status("Verifying the course..."):
        problems = verify.verify(course, Path(scratch))
    for problem in problems:
        console.print(f"[red]problem[/] {escape(problem)}", soft_wrap=True)
    seconds = time.monotonic() - started
    if problems:
        console.print(f"{len(problems)} problem(s) in {seconds:.0f} s.")
        raise typer.Exit(1)
    wrong = sum(len(catalogue(step)) for step in course.steps)
    console.print(
        f"[green]The course is sound[/]: {len(course.steps)} steps, {wrong} wrong answers "
        f"rejected, in {seconds:.0f} s."
    )
