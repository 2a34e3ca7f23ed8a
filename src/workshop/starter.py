"""One source for starter and solution: each step's `app/` is generated from its `solution/`.

In the solution an exercise is a marked block:

    # EXERCISE 04.2: load one item by its primary key
    return await session.get(Item, item_id)
    # END EXERCISE

In the starter the instruction stays and the body becomes the exercise's stub (`stub` in
exercises.toml), by default a `raise NotImplementedError` that names the exercise and its hint.
Lines of the docs' section markers (`# --8<--`) are left out of the starter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .course import Exercise, Step, WorkshopError

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


def default_stub(exercise_id: str) -> str:
    return (
        f'raise NotImplementedError("exercise {exercise_id} - run `workshop hint {exercise_id}`")'
    )


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
            if END.match(line):
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
    # What was left out may leave blank lines behind: keep the file as a formatter would.
    text = re.sub(r"\n{4,}", "\n\n\n", "".join(out))
    return text.rstrip("\n") + "\n"


def solution_files(step: Step) -> list[Path]:
    return sorted(
        p
        for p in step.solution_dir.rglob("*")
        if p.is_file() and not SKIP_PARTS.intersection(p.parts) and p.suffix != ".pyc"
    )


def starter_files(step: Step) -> dict[Path, str]:
    """Every file the step's `app/` should hold, by path relative to it."""
    exercises = {e.id: e for e in step.exercises}
    files = {}
    for path in solution_files(step):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(step.solution_dir)
        files[relative] = render_starter(text, exercises, path) if path.suffix == ".py" else text
    return files


def out_of_sync(step: Step) -> list[Path]:
    """Files of `app/` that differ from what the generator makes (missing and extra included)."""
    expected = starter_files(step)
    actual = {
        p.relative_to(step.app_dir)
        for p in step.app_dir.rglob("*")
        if p.is_file() and not SKIP_PARTS.intersection(p.parts) and p.suffix != ".pyc"
    }
    stale = [
        rel
        for rel, text in expected.items()
        if not (step.app_dir / rel).is_file()
        or (step.app_dir / rel).read_text(encoding="utf-8") != text
    ]
    return sorted(stale + [rel for rel in actual if rel not in expected])


def sync(step: Step) -> list[Path]:
    """Regenerate the step's `app/`; returns what changed."""
    changed = out_of_sync(step)
    expected = starter_files(step)
    for rel in changed:
        target = step.app_dir / rel
        if rel in expected:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected[rel], encoding="utf-8")
        else:
            target.unlink()
    return changed


def markers(step: Step, *, solution: bool = False) -> list[Marker]:
    """The exercise markers in the step's starter (or solution), in file order."""
    base = step.package_dir(solution=solution)
    found: list[Marker] = []
    for path in sorted(base.rglob("*.py")):
        if not SKIP_PARTS.intersection(path.parts):
            found.extend(find_markers(path.read_text(encoding="utf-8"), path))
    return found
