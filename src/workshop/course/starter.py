"""One source for starter and solution: each step's `app/` is generated from its `solution/`.

In the solution an exercise is a marked block:

    # EXERCISE 04.2: load one item by its primary key
    return await session.get(Item, item_id)
    # END EXERCISE

In the starter both markers stay and the body becomes the exercise's stub (`stub` in
exercises.toml), by default a `raise NotImplementedError` that names the exercise and its hint.
Lines of the docs' section markers (`# --8<--`) are left out of the starter.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .model import COMMAND, Exercise, Step, WorkshopError

START = re.compile(r"^(?P<indent>\s*)# EXERCISE (?P<id>\d\d\.\d+): (?P<instruction>.+?)\s*$")
END = re.compile(r"^\s*# END EXERCISE\s*$")
SNIPPET = re.compile(r"^\s*# --8<-- \[(start|end):[\w-]+\]\s*$")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}


@dataclass(frozen=True)
class Marker:
    exercise_id: str
    instruction: str
    path: Path
    line: int  # 1-based


# What a default stub raises; the toolkit recognizes it in tests and in the server's log.
STUB_MESSAGE = re.compile(r"exercise (?P<id>\d\d\.\d+) is yours to do")


def default_stub(exercise_id: str) -> str:
    hint = f"{COMMAND} hint {exercise_id}"
    return f'raise NotImplementedError("exercise {exercise_id} is yours to do: `{hint}`")'


def find_markers(text: str, path: Path) -> list[Marker]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if match := START.match(line):
            found.append(Marker(match["id"], match["instruction"], path, number))
    return found


def render_starter(text: str, exercises: dict[str, Exercise], path: Path) -> str:
    """The starter version of one solution file."""
    out: list[str] = []
    open_block: re.Match[str] | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if SNIPPET.match(line):
            continue
        if open_block is not None:
            if START.match(line):
                raise WorkshopError(
                    f"{path}:{number}: an `# EXERCISE` inside exercise {open_block['id']}, "
                    "which has no `# END EXERCISE` before it."
                )
            if END.match(line):
                out.append(line)  # the starter keeps both markers: your code goes between
                open_block = None
            continue
        if END.match(line):
            raise WorkshopError(f"{path}:{number}: `# END EXERCISE` without an `# EXERCISE`.")
        if match := START.match(line):
            exercise = exercises.get(match["id"])
            if exercise is None:
                raise WorkshopError(
                    f"{path}:{number}: exercise {match['id']} is not in exercises.toml."
                )
            out.append(line)
            stub = default_stub(exercise.id) if exercise.stub is None else exercise.stub
            out.extend(f"{match['indent']}{stub_line}\n" for stub_line in stub.splitlines())
            open_block = match
            continue
        out.append(line)
    if open_block is not None:
        raise WorkshopError(f"{path}: exercise {open_block['id']} has no `# END EXERCISE`.")
    return tidy("".join(out))


def tidy(text: str) -> str:
    """What was left out may leave blank lines behind: keep the text as a formatter would."""
    return re.sub(r"\n{4,}", "\n\n\n", text).rstrip("\n") + "\n"


def package_files(package_dir: Path) -> list[Path]:
    """A step package's files (not caches), sorted."""
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and not SKIP_PARTS.intersection(p.parts) and p.suffix != ".pyc"
    )


def starter_files(step: Step) -> dict[Path, str]:
    """Every file the step's `app/` should hold, by path relative to it."""
    exercises = {e.id: e for e in step.exercises}
    files = {}
    for path in package_files(step.solution_dir):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(step.solution_dir)
        files[relative] = render_starter(text, exercises, path) if path.suffix == ".py" else text
    return files


def markers(step: Step, *, solution: bool = False) -> list[Marker]:
    """The exercise markers in the step's starter (or solution), in file order."""
    base = step.package_dir(solution=solution)
    found: list[Marker] = []
    for path in sorted(base.rglob("*.py")):
        if not SKIP_PARTS.intersection(path.parts):
            found.extend(find_markers(path.read_text(encoding="utf-8"), path))
    return found


def exercise_blocks(path: Path) -> tuple[tuple[str, int, int], ...]:
    """The exercise blocks of a step's module: (id, first line, last line), 1-based, markers
    included."""
    return _blocks(path, path.stat().st_mtime_ns)


@functools.cache  # per version of the file: a failing test asks for each of its frames
def _blocks(path: Path, _version: int) -> tuple[tuple[str, int, int], ...]:
    blocks: list[tuple[str, int, int]] = []
    opened: tuple[str, int] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if match := START.match(line):
            opened = (match["id"], number)
        elif END.match(line) and opened is not None:
            blocks.append((opened[0], opened[1], number))
            opened = None
    return tuple(blocks)


def exercise_at(path: Path, line: int) -> str | None:
    """The exercise whose block holds that line of a step's module, if any."""
    return next((id_ for id_, first, last in exercise_blocks(path) if first <= line <= last), None)


def exercise_in_class(package_dir: Path, name: str) -> str | None:
    """The exercise whose block lies in the class of that name in a step's package: a
    pydantic ValidationError names the model, not a line."""
    for path in package_files(package_dir):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name == name:
                end = node.end_lineno or node.lineno
                for id_, first, _ in exercise_blocks(path):
                    if node.lineno <= first <= end:
                        return id_
    return None
