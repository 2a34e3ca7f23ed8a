"""Every step has a notebook, and so has the performance lab: each is paired with its percent
script, and runs top to bottom."""

from __future__ import annotations

import ast
import asyncio
import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

from workshop.course import Course
from workshop.postgres import Server, create_database, drop_database, test_database_name

ROOT = Path(__file__).resolve().parent.parent
# One notebook per step, named as the step is, and the performance lab's, which is no step.
NOTEBOOKS = [step.name for step in Course(ROOT).steps] + ["performance"]


@pytest.fixture(scope="module")
def executed(server: Server, course: Course) -> dict[str, NotebookNode | BaseException]:
    """Every notebook run top to bottom, three kernels at a time (a kernel mostly waits on
    its cells' imports and the database), each on a throwaway database of its own that its
    kernel finds through DATABASE_URL. A notebook that failed to run maps to its error."""

    async def run(name: str, slots: asyncio.Semaphore) -> NotebookNode:
        path = course.root / "notebooks" / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        database = test_database_name("notebook")
        await create_database(server.url, database)
        url = server.database_url(database).render_as_string(hide_password=False)
        try:
            async with slots:
                client = NotebookClient(
                    notebook,
                    timeout=120,
                    kernel_name="python3",
                    resources={"metadata": {"path": str(path.parent)}},
                )
                await client.async_execute(env={**os.environ, "DATABASE_URL": url})
        finally:
            await drop_database(server.url, database)
        return notebook

    async def run_all() -> list[NotebookNode | BaseException]:
        slots = asyncio.Semaphore(3)
        return await asyncio.gather(*(run(n, slots) for n in NOTEBOOKS), return_exceptions=True)

    return dict(zip(NOTEBOOKS, asyncio.run(run_all()), strict=True))


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
def test_notebook_runs_top_to_bottom(
    name: str, executed: dict[str, NotebookNode | BaseException]
) -> None:
    notebook = executed[name]
    if isinstance(notebook, BaseException):
        raise notebook
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
                # print(...) and display(...), but only plt.show(): a cell's own `show` is not.
                if isinstance(function, ast.Name) and function.id in {"print", "display"}:
                    calls.add(function.id)
                elif isinstance(function, ast.Attribute) and function.attr == "show":
                    calls.add("show")
    return calls
