"""Every step has a notebook, paired with its percent script, that runs top to bottom."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from workshop.course import Course, Step
from workshop.database import Server, create_database, drop_database, test_database_name


@pytest.fixture
def scratch_database(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway database the notebook's kernel finds through DATABASE_URL."""
    name = test_database_name("notebook")
    asyncio.run(create_database(server.url, name))
    url = server.database_url(name).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    asyncio.run(drop_database(server.url, name))


def test_notebook_is_paired_and_stripped(a_step: Step, course: Course) -> None:
    notebook_path = course.root / "notebooks" / f"{a_step.name}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    script = jupytext.read(notebook_path.with_suffix(".py"))
    assert [c.source for c in notebook.cells] == [c.source for c in script.cells], (
        "run `jupytext --sync` on the notebook"
    )
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip the outputs"


def test_notebook_runs_top_to_bottom(a_step: Step, course: Course, scratch_database: str) -> None:
    notebook_path = course.root / "notebooks" / f"{a_step.name}.ipynb"
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
