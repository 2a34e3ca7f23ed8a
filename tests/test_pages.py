"""The course's own pages: each step page's frame (goals, recap, notebook), the home page, and
the notebook pages that hooks/notebooks.py renders."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from html import unescape
from pathlib import Path
from types import ModuleType

import fastapi
import pydantic
import pydantic_settings
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.orm
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession

from workshop.course import Course, Step


def notebooks_hook(course: Course) -> ModuleType:
    return load_hook(course, "notebooks")


def load_hook(course: Course, name: str) -> ModuleType:
    """hooks/<name>.py, which MkDocs loads by its path, loaded the same way."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_hook", course.root / "hooks" / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_step_page_opens_with_its_goals_and_ends_with_a_recap(a_step: Step) -> None:
    text = a_step.docs_page.read_text(encoding="utf-8")
    title, _, rest = text.partition("\n\n")
    assert title.startswith("# ")
    assert rest.startswith('!!! abstract "You will learn"\n    - '), "goals right after the title"
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections[-1] == "Recap", f"the last section is {sections[-1]!r}"
    recap = text.rpartition("\n## Recap\n")[2]
    assert "**What you built:**" in recap and "**What to remember:**" in recap


# Where the names of a Django table's last column may come from, besides the step's own code.
LIBRARIES = (
    sqlalchemy, sqlalchemy.exc, sqlalchemy.orm, sqlalchemy.Select, Result, AsyncSession,
    pydantic, pydantic_settings, fastapi, asyncio,
)  # fmt: skip
COMMANDS = ("uv ", "uvicorn ", "alembic ")


def test_a_step_page_maps_what_a_django_or_flask_developer_knows(a_step: Step) -> None:
    """Near the top, before the first exercise: a short table from Django's (and Flask's) names
    to this step's, which says where the course is stricter. The names in its last column are
    the step's own, or SQLAlchemy's, Pydantic's, FastAPI's: a renamed function fails here."""
    text = a_step.docs_page.read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert "Coming from Django / Flask" in sections, "no 'Coming from Django / Flask' section"
    first_exercise = next(i for i, s in enumerate(sections) if s.startswith("Exercise "))
    assert sections.index("Coming from Django / Flask") < first_exercise, "it comes too late"
    section = text.partition("\n## Coming from Django / Flask\n")[2].partition("\n## ")[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    header, _, *body = rows  # the second is the |---| line
    assert header[0].startswith("Django") and "Flask" in header[1], header
    assert header[-1] == "In this course" and len(header) == 3, header
    assert 6 <= len(body) <= 10, f"{len(body)} rows: keep the table short"
    assert all(len(row) == 3 and all(row) for row in body), "a row without its three cells"
    assert "stricter than" in section, "say where the course is stricter than Django/DRF"
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for path in [*a_step.solution_dir.rglob("*.py"), a_step.dir / "alembic.ini"]
        if path.is_file()
    )
    known = set(re.findall(r"\w+", code))
    for row in body:
        for span in re.findall(r"`([^`]+)`", row[-1]):
            if span.startswith(COMMANDS):
                continue  # a command the page runs: the CLI's tests cover those
            if span.endswith(".py"):
                assert list(a_step.solution_dir.rglob(span)), f"{span}: no such file"
                continue
            for name in re.findall(r"[A-Za-z_]\w*", re.sub(r'"[^"]*"', "", span)):
                found = name in known or name.lower() in known  # POOL_SIZE is pool_size
                found = found or any(hasattr(library, name) for library in LIBRARIES)
                assert found, f"`{span}`: {name} is not in the step's code"


def test_a_step_page_links_its_rendered_notebook(a_step: Step, course: Course) -> None:
    assert (course.root / "notebooks" / f"{a_step.name}.ipynb").is_file()
    text = a_step.docs_page.read_text(encoding="utf-8")
    assert f"](../notebooks/{a_step.name}.md)" in text


def test_the_notebook_page_shows_every_cell(a_step: Step, course: Course) -> None:
    notebook = course.root / "notebooks" / f"{a_step.name}.ipynb"
    page = notebooks_hook(course).render(notebook, a_step.name)
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        source = "".join(cell["source"]).strip("\n")
        if cell["cell_type"] == "code":
            assert f"```python\n{source}\n```" in page, source[:60]
        else:
            assert source in page, source[:60]
    # It says how to run the real one, and leads back to the step's page.
    assert f"uv run jupyter lab notebooks/{notebook.name}" in page
    assert f"](../steps/{a_step.name}.md)" in page


def test_the_home_page_maps_every_step_with_its_time(course: Course) -> None:
    """Each step's time is an estimate the docs build works out from the files (its marker,
    never a figure typed in), and the page says what it rests on."""
    durations = load_hook(course, "durations")
    page = (course.root / "docs" / "index.md").read_text(encoding="utf-8")
    built = durations.fill(page, course.root)
    assert "<!-- estimate" not in built
    for text, marked in ((page, True), (built, False)):
        course_map = text.partition("## The course map")[2].partition("\n## ")[0]
        for step in course.steps:
            row = re.search(
                rf"^\| \[[^]]+\]\(steps/{step.name}\.md\) \|.*\| ([^|]+) \|$", course_map, re.M
            )
            assert row, f"{step.name} is not in the course map"
            if marked:
                assert row[1].strip() == f"<!-- estimate: steps/{step.name}.md -->", row[1]
            else:
                assert re.fullmatch(r"about (\d+ h( \d\d)?|\d+ min)", row[1].strip()), row[1]
    assert "estimates" in built and durations.BASIS in built


def test_an_estimate_counts_the_prose_the_exercises_and_the_demonstrations(
    course: Course,
) -> None:
    durations = load_hook(course, "durations")
    assert durations.words("One two three.\n\n```python\nnot = counted\n```\n") == 3
    step = course.step("04")
    page = f"steps/{step.name}.md"
    reading = durations.words((course.root / "docs" / page).read_text(encoding="utf-8"))
    expected = reading / durations.WORDS_PER_MINUTE
    expected += durations.MINUTES_PER_EXERCISE * len(step.exercises)
    notebook = json.loads((course.root / "notebooks" / f"{step.name}.ipynb").read_text("utf-8"))
    cells = sum(cell["cell_type"] == "code" for cell in notebook["cells"])
    expected += durations.MINUTES_PER_DEMONSTRATION * cells
    assert durations.minutes(course.root, page) == round(expected / 5) * 5


def test_the_home_pages_picture_is_a_small_png(course: Course) -> None:
    page = (course.root / "docs" / "index.md").read_text(encoding="utf-8")
    [picture] = re.findall(r"!\[[^]]+\]\((images/[^)]+)\)", page)
    data = Path(course.root / "docs" / picture).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 200_000, f"{picture} is {len(data):,} bytes: optimise it"


PRIMER = "async-primer.md"
# Using async, in a page's prose or in the code it includes (naming a driver is not using it).
USES_ASYNC = re.compile(r"async def|\bawait\b|\basyncio\b|event loop|AsyncSession|MissingGreenlet")
INCLUDE = re.compile(r'^\s*--8<-- "([^":]+)(?::([\w-]+))?"', re.M)


def included_text(root: Path, path: str, section: str = "") -> str:
    """What a snippet include (`path` or `path:section`) brings into a page."""
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    if section:
        marks = [x.strip() for x in lines]
        lines = lines[
            marks.index(f"# --8<-- [start:{section}]") : marks.index(f"# --8<-- [end:{section}]")
        ]
    return "\n".join(lines)


def test_a_step_page_links_the_async_primer_where_it_first_uses_async(
    a_step: Step, course: Course
) -> None:
    """Step 01 already awaits, and the primer comes after it: each step page links the primer
    in or before the paragraph where it first uses async, in its prose or in the code it
    includes. The goals and the tables are left out: they name what the page will teach."""
    lines = a_step.docs_page.read_text(encoding="utf-8").splitlines()
    link = use = None  # (paragraph, line) of each
    paragraph, in_goals = 0, False
    for number, line in enumerate(lines):
        paragraph += not line.strip()
        if line.startswith("!!! abstract"):
            in_goals = True
            continue
        if in_goals and (not line or line.startswith("    ")):
            continue
        in_goals = False
        if link is None and f"](../{PRIMER}" in line:
            link = (paragraph, number)
        include = INCLUDE.match(line)
        if include and not include[1].endswith(".md"):
            used = included_text(course.root, include[1], include[2] or "")
        else:
            used = "" if line.lstrip().startswith("|") else line
        if use is None and USES_ASYNC.search(used):
            use = (paragraph, number)
    page = a_step.docs_page.name
    assert link is not None, f"{page} never links the primer, docs/{PRIMER}"
    assert use is None or link[0] <= use[0], (
        f"{page} uses async on line {use[1] + 1}: {lines[use[1]].strip()[:60]!r}, "
        f"and links the primer only on line {link[1] + 1}"
    )


def test_the_primer_comes_before_step_02_with_code_the_notebook_runs(
    course: Course, site: Path
) -> None:
    """The primer stands between steps 01 and 02 in the navigation. The code it shows is the
    step 02 notebook's, which test_notebooks.py runs top to bottom, and it is on the built page.
    The async pitfalls live in the primer, and step 04, which meets them, links back to them."""
    nav = (course.root / "mkdocs.yml").read_text(encoding="utf-8").partition("\nnav:\n")[2]
    pages = ("steps/01-setup.md", PRIMER, "steps/02-connection.md")
    order = [nav.index(f" {page}\n") for page in pages]
    assert order == sorted(order), "mkdocs.yml's nav: the primer goes between steps 01 and 02"
    page = (course.root / "docs" / PRIMER).read_text(encoding="utf-8")
    html = (site / PRIMER.removesuffix(".md") / "index.html").read_text(encoding="utf-8")
    text = unescape(re.sub(r"<[^>]+>", "", html))
    includes = INCLUDE.findall(page)
    assert includes, "the primer shows no code of the notebook"
    for path, section in includes:
        assert path == "notebooks/02-connection.py", f"{path}: not code the notebook runs"
        shown = included_text(course.root, path, section).splitlines()
        missing = [x.strip() for x in shown if x.strip() and "--8<--" not in x]
        missing = [x for x in missing if x not in text]
        assert not missing, f"{section} is not on the page: {missing[:2]}"
    assert re.search(r"^## Async pitfalls$", page, re.M), "the async pitfalls moved to the primer"
    step_04 = (course.root / "docs" / "steps" / "04-crud.md").read_text(encoding="utf-8")
    assert f"../{PRIMER}#async-pitfalls" in step_04
