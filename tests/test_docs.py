"""The course site builds strictly, and its code comes from the real files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from workshop.course import Course, Step

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)


@pytest.fixture(scope="module")
def site(course: Course, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=course.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return out


def test_every_step_has_a_page_with_its_code_included(a_step: Step, site: Path) -> None:
    page = (site / "steps" / a_step.name / "index.html").read_text(encoding="utf-8")
    for exercise in a_step.exercises:
        assert f'id="{exercise.anchor}"' in page, f"no section for exercise {exercise.id}"
    # The included solution is on the page: its exercise instructions came along with it.
    markers = re.findall(r"# EXERCISE \d\d\.\d+", page)
    assert len(markers) >= len(a_step.exercises)


def test_docs_never_own_python_code(course: Course) -> None:
    """Every Python block in the docs is included from a real file, never pasted."""
    for page in (course.root / "docs").rglob("*.md"):
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            pasted = [line for line in lines if not line.startswith("--8<--")]
            assert not pasted, f"{page.relative_to(course.root)} pastes code: {pasted[:2]}"
