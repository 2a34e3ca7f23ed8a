"""The settings reference page, docs/reference/settings.md, made from the code: every field
of the steps' `Settings` classes and of the toolkit's `ToolkitSettings`, each one's meaning
from the comment above it (see reference.py, which writes the pages)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from ..course import COMMAND, Course, Step, WorkshopError

GENERATED = (
    "<!-- Written by `uv run workshop dev reference` from the code: edit the code, not this page. "
    "A test fails when the page is not what the command writes. -->"
)
# Lines above a field that are markers for the tools, not words for the reader.
MARKER = re.compile(r"#\s*(--8<--|EXERCISE\b|END EXERCISE\b)")


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    variable: str
    type: str
    default: str
    meaning: str


def comments_above(lines: list[str], line: int) -> list[str]:
    """The comment lines right above a line (1-based), markers left out."""
    found: list[str] = []
    for text in reversed(lines[: line - 1]):
        stripped = text.strip()
        if not stripped.startswith("#"):
            break
        if not MARKER.match(stripped):
            found.insert(0, stripped.lstrip("#").strip())
    return found


def class_source(cls: type) -> tuple[list[str], ast.ClassDef]:
    """The lines of the file that defines a class, and the class's syntax tree."""
    text = Path(inspect.getfile(cls)).read_text(encoding="utf-8")
    line = inspect.getsourcelines(cls)[1]  # inspect tells classes of the same name apart
    found = (n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ClassDef))
    return text.splitlines(), next(
        n for n in found if min([n.lineno, *(d.lineno for d in n.decorator_list)]) == line
    )


def meanings(cls: type[BaseSettings]) -> dict[str, str]:
    """Each field's meaning: the comment above it. A field right under another, with no
    comment of its own, shares the comment of the group it belongs to."""
    lines, node = class_source(cls)
    found: dict[str, str] = {}
    previous: tuple[str, int] | None = None  # the last field, and the line it ends on
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            previous = None
            continue
        name = statement.target.id
        comment = " ".join(comments_above(lines, statement.lineno))
        between = lines[previous[1] : statement.lineno - 1] if previous else []
        if not comment and previous and all(MARKER.match(x.strip()) for x in between):
            comment = found[previous[0]]
        found[name] = comment
        previous = (name, statement.end_lineno or statement.lineno)
    return found


def annotation_source(cls: type[BaseSettings]) -> dict[str, str]:
    """Each field's type as the code spells it (`PositiveInt`, not `Annotated[int, Gt]`)."""
    _, node = class_source(cls)
    return {
        s.target.id: ast.unparse(s.annotation)
        for s in node.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }


def constraint(field: FieldInfo) -> str:
    """What the type's constraints allow, in words: `int > 0`."""
    base = field.annotation.__name__ if isinstance(field.annotation, type) else ""
    limits = []
    for rule in field.metadata:
        for kind, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if isinstance(rule, getattr(annotated_types, kind.capitalize())):
                limits.append(f"{sign} {getattr(rule, kind)}")
    return f"{base} {' and '.join(limits)}" if base and limits else ""


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`"


def settings_of(cls: type[BaseSettings]) -> list[Setting]:
    prefix = cls.model_config.get("env_prefix", "")
    spelled = annotation_source(cls)
    meaning = meanings(cls)
    found = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        typed = f"`{spelled[name]}`"
        if words := constraint(field):
            typed += f" ({words})"
        variable = (alias or f"{prefix}{name}").upper()
        if not meaning[name]:
            raise WorkshopError(
                f"{variable} has no meaning: write a comment above `{name}` in "
                f"{inspect.getfile(cls)}, it goes to the settings reference."
            )
        found.append(Setting(variable, typed, default_text(field), meaning[name]))
    return found


def load_config(step: Step) -> ModuleType:
    """A step's `solution/config.py` on its own: it imports nothing of its package."""
    name = f"workshop_reference_{step.number}_config"
    path = step.solution_dir / "config.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    # Registered: pydantic looks a class's module up while it builds it, and the source of
    # a class is found through its module.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def step_span(numbers: list[str]) -> str:
    """`01-05`, `05`, or `01, 03` when a step in between has not got it."""
    runs: list[list[str]] = []
    for number in numbers:
        if runs and int(number) == int(runs[-1][-1]) + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def cell(text: str) -> str:
    """Text for a table cell: its bars escaped, and its stars outside code (`'****'` is not
    emphasis)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("*", "\\*") for i, p in enumerate(parts))


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return lines


def section(name: str, lines: list[str]) -> list[str]:
    """Lines another page can include with `--8<-- "page.md:name"`."""
    return [f"<!-- --8<-- [start:{name}] -->", *lines, f"<!-- --8<-- [end:{name}] -->"]


SETTINGS_INTRO = """\
Every setting is an environment variable. A step's app reads it from the environment first,
then from a `.env` file in the folder you start it from (the repository's root, where you run
`{command}`), then takes the default. `.env.example` lists them all: copy it to `.env`.

`{command} run NN` sets two of them for the app: `DATABASE_URL`, to the workshop's
database (from step 05 on, as the app's own role), and `SECRET_KEY`, when you have not set one,
to a key it makes once and keeps in `.workshop/`."""


def settings_page(course: Course) -> str:
    """docs/reference/settings.md: the apps' settings, by the step that brings them, and the
    toolkit's."""
    from ..postgres import ToolkitSettings

    per_step = {step.number: settings_of(load_config(step).Settings) for step in course.steps}
    first_seen: dict[str, str] = {}
    for number, found in per_step.items():
        for setting in found:
            first_seen.setdefault(setting.variable, number)
    out = ["# Settings", "", GENERATED, "", SETTINGS_INTRO.format(command=COMMAND), ""]
    for step in course.steps:
        added = [s.variable for s in per_step[step.number] if first_seen[s.variable] == step.number]
        if not added:
            continue
        rows = []
        for variable in added:
            having = [n for n, found in per_step.items() if variable in {s.variable for s in found}]
            # What a setting is, as the last step that has it says it.
            latest = next(s for s in per_step[having[-1]] if s.variable == variable)
            kinds = {s.type for n in having for s in per_step[n] if s.variable == variable}
            defaults = {s.default for n in having for s in per_step[n] if s.variable == variable}
            assert len(kinds) == len(defaults) == 1, f"{variable} changes between steps"
            rows.append(
                [f"`{variable}`", latest.type, latest.default, step_span(having), latest.meaning]
            )
        page = f"../steps/{step.name}.md"
        out += [f"## Step {step.number}", "", f"What [{step.name}]({page}) brings:", ""]
        out += section(f"step-{step.number}", table(SETTINGS_HEADER, rows))
        out.append("")
    toolkit = settings_of(ToolkitSettings)
    out += [
        "## The toolkit",
        "",
        f"What `{COMMAND}` itself reads, from the environment, then from the `.env` at the "
        "repository's root:",
        "",
        *table(
            ("variable", "type", "default", "meaning"),
            ([f"`{s.variable}`", s.type, s.default, s.meaning] for s in toolkit),
        ),
        "",
    ]
    return "\n".join(out)


SETTINGS_HEADER = ("variable", "type", "default", "steps", "meaning")
