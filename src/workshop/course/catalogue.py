"""Each exercise's catalogue of wrong answers: the mistakes and shortcuts a learner really writes.

A check is only as good as the wrong answers it has been shown to reject. Beside its
exercises.toml, a step keeps `wrong-answers.toml`:

    [[wrong]]
    exercise = "04.1"
    name = "insert-built-with-an-f-string"
    mistake = "The INSERT spelled out with an f-string: a quote breaks it, and it is injectable."
    code = '''
    ...the whole exercise block, as a learner could write it...
    '''

or, to change a few lines of the reference instead of writing the block out again,

    [[wrong.edit]]
    old = "await session.commit()"
    new = "await session.flush()"

and `imports = ["from sqlalchemy import Float"]` where it needs a name the file does not import.
A shortcut judged *not* wrong stays in the catalogue with `accepted = "why it is fine"`: the
exercise's tests must pass on it, so the decision is on record and proven.

Each wrong answer replaces the exercise's marked block (the `block`-th one, from 1, when the
exercise has several, counted through the package's files in path order; `block = [1, 2]` lets
its edits reach both, in one file) in a copy of the solution.
That copy becomes a learner's `app/`, and only its exercise's tests are run on it: at least one
of them must fail.
"""

from __future__ import annotations

import re
import shutil
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .model import Step, WorkshopError
from .starter import END, SNIPPET, START, package_files

CATALOGUE = "wrong-answers.toml"
IMPORT = re.compile(r"^(import|from) \S+")


@dataclass(frozen=True)
class Edit:
    old: str
    new: str


@dataclass(frozen=True)
class WrongAnswer:
    exercise: str
    name: str
    mistake: str
    code: str | None = None
    edit: list[Edit] = field(default_factory=list)
    # Which of the exercise's blocks it changes, from 1; a list lets its edits reach several.
    block: int | list[int] = 1
    # Import lines the wrong answer needs, added after the file's own imports.
    imports: list[str] = field(default_factory=list)
    # Why this variant is *not* a wrong answer: then the exercise's tests must pass on it.
    accepted: str | None = None

    @property
    def label(self) -> str:
        return f"{self.exercise} {self.name}"


def catalogue(step: Step, exercise: str | None = None) -> list[WrongAnswer]:
    """The step's wrong answers (only `exercise`'s, when given), in file order ([] when it has
    no catalogue)."""
    path = step.dir / CATALOGUE
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        every = [
            WrongAnswer(**{**entry, "edit": [Edit(**e) for e in entry.get("edit", [])]})
            for entry in data.get("wrong", [])
        ]
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise WorkshopError(f"{path} cannot be read: {exc}") from None
    return [w for w in every if exercise in (None, w.exercise)]


def apply(wrong: WrongAnswer, text: str, path: Path, before: int = 0) -> str | None:
    """`text` (a solution file) with the wrong answer in place of its exercise's block(s), or
    None when the file does not hold them (`before`: the exercise's blocks in earlier files)."""
    lines = text.splitlines(keepends=True)
    starts = [
        (number, match)
        for number, line in enumerate(lines)
        if (match := START.match(line)) and match["id"] == wrong.exercise
    ]
    chosen = [b - before for b in ([wrong.block] if isinstance(wrong.block, int) else wrong.block)]
    if not chosen or min(chosen) < 1 or max(chosen) > len(starts):
        return None
    spans: dict[int, tuple[int, int, str]] = {}  # block -> (first line, END line, indent)
    bodies: dict[int, str] = {}
    for block in chosen:
        begin, match = starts[block - 1]
        end = next(n for n in range(begin + 1, len(lines)) if END.match(lines[n]))
        spans[block] = (begin + 1, end, match["indent"])
        code = "".join(x for x in lines[begin + 1 : end] if not SNIPPET.match(x))
        bodies[block] = textwrap.dedent(code)
    if wrong.code is not None:
        bodies[chosen[0]] = textwrap.dedent(wrong.code).strip("\n") + "\n"
    for edit in wrong.edit:
        found = [b for b in chosen if bodies[b].count(edit.old) == 1]
        if len(found) != 1 or sum(bodies[b].count(edit.old) for b in chosen) != 1:
            raise WorkshopError(
                f"Wrong answer {wrong.label}: {edit.old!r} is not found once in exercise "
                f"{wrong.exercise}'s block(s) {chosen} of {path.name}."
            )
        bodies[found[0]] = bodies[found[0]].replace(edit.old, edit.new)
    for block in sorted(chosen, reverse=True):  # from the bottom: line numbers stay true
        first, end, indent = spans[block]
        body = textwrap.indent(bodies[block], indent, lambda line: bool(line.strip()))
        lines[first:end] = body.splitlines(keepends=True)
    if wrong.imports:
        last = max(n for n, line in enumerate(lines) if IMPORT.match(line))
        while lines[last].rstrip().endswith(("(", ",")):  # an import in parentheses goes on
            last += 1
        lines[last + 1 : last + 1] = [f"{line}\n" for line in wrong.imports]
    return "".join(lines)


def wrong_app(step: Step, wrong: WrongAnswer) -> dict[Path, str]:
    """Every file of an `app/` that is the solution but for this wrong answer."""
    files: dict[Path, str] = {}
    applied = before = 0
    for path in package_files(step.solution_dir):
        text = path.read_text(encoding="utf-8")
        changed = None
        if path.suffix == ".py":
            changed = apply(wrong, text, path, before)
            starts = (START.match(line) for line in text.splitlines())
            before += sum(1 for m in starts if m and m["id"] == wrong.exercise)
        if changed is not None:
            applied += 1
            try:  # a wrong answer is code a learner could run
                compile(changed, str(path), "exec")
            except SyntaxError as exc:
                raise WorkshopError(
                    f"Wrong answer {wrong.label} is not valid Python in {path.name}: {exc.msg} "
                    f"(line {exc.lineno})."
                ) from None
            text = changed
        files[path.relative_to(step.solution_dir)] = text
    if applied == 0:
        raise WorkshopError(
            f"Wrong answer {wrong.label}: step {step.number}'s solution has no block "
            f"{wrong.block} of exercise {wrong.exercise}."
        )
    return files


def copy_for(step: Step, wrong: WrongAnswer, index: int, steps_dir: Path) -> Step:
    """A copy of the step whose `app/` holds the wrong answer: `NN-wrong-K-name/`."""
    target = steps_dir / f"{step.number}-wrong-{index:02d}-{wrong.name}"
    ignore = shutil.ignore_patterns("app", "solution", "__pycache__")
    shutil.copytree(step.dir, target, ignore=ignore)
    for relative, text in wrong_app(step, wrong).items():
        (target / "app" / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / "app" / relative).write_text(text, encoding="utf-8")
    return Step(target)
