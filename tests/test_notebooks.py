"""Every step has a notebook, and so has the performance lab: each is paired with its percent
script, and runs top to bottom."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from workshop.course import Course
from workshop.database import Server, create_database, drop_database, test_database_name

ROOT = Path(__file__).resolve().parent.parent
# One notebook per step, named as the step is, and the performance lab's, which is no step.
NOTEBOOKS = [step.name for step in Course(ROOT).steps] + ["performance"]


@pytest.fixture
def scratch_database(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway database the notebook's kernel finds through DATABASE_URL."""
    name = test_database_name("notebook")
    asyncio.run(create_database(server.url, name))
    url = server.database_url(name).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    asyncio.run(drop_database(server.url, name))


def test_every_notebook_is_tested() -> None:
    found = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS), "a notebook the tests do not run, or one that is missing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_paired_and_stripped(name: str, course: Course) -> None:
    notebook_path = course.root / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    script = jupytext.read(notebook_path.with_suffix(".py"))
    assert [c.source for c in notebook.cells] == [c.source for c in script.cells], (
        "run `jupytext --sync` on the notebook"
    )
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip the outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name: str, course: Course, scratch_database: str) -> None:
    notebook_path = course.root / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    # A cell that prints, displays or plots showed it: no figure went missing silently.
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        calls = shown_by(cell.source)
        kinds = {output.output_type for output in cell.outputs}
        if calls & {"print", "display"}:
            assert kinds & {"stream", "display_data"}, f"no output from:\n{cell.source}"
        if "show" in calls:
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"no plot from:\n{cell.source}"


def shown_by(source: str) -> set[str]:
    """The calls of print, display and plt.show that a cell makes itself (not in a def)."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # a cell may await
    tree = compile(source, "<cell>", "exec", flags=flags)
    calls: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                function = node.func
                name = function.id if isinstance(function, ast.Name) else None
                if isinstance(function, ast.Attribute):
                    name = function.attr
                if name in {"print", "display", "show"}:
                    calls.add(name)
    return calls
