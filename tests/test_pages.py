"""The course's own pages: each step page's frame (goals, recap, notebook), the home page, and
the notebook pages that hooks/notebooks.py renders."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from workshop.course import Course, Step


def notebooks_hook(course: Course) -> ModuleType:
    """hooks/notebooks.py, which MkDocs loads by its path, loaded the same way."""
    spec = importlib.util.spec_from_file_location(
        "notebooks_hook", course.root / "hooks" / "notebooks.py"
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
    page = (course.root / "docs" / "index.md").read_text(encoding="utf-8")
    course_map = page.partition("## The course map")[2].partition("\n## ")[0]
    for step in course.steps:
        row = re.search(
            rf"^\| \[[^]]+\]\(steps/{step.name}\.md\) \|.*\| ([^|]+) \|$", course_map, re.M
        )
        assert row, f"{step.name} is not in the course map"
        assert re.search(r"\d+ ?(h|min)", row[1]), f"{step.name} has no time: {row[1]!r}"
    assert "estimates" in course_map


def test_the_home_pages_picture_is_a_small_png(course: Course) -> None:
    page = (course.root / "docs" / "index.md").read_text(encoding="utf-8")
    [picture] = re.findall(r"!\[[^]]+\]\((images/[^)]+)\)", page)
    data = Path(course.root / "docs" / picture).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 200_000, f"{picture} is {len(data):,} bytes: optimise it"
