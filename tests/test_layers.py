"""The toolkit's house rules: imports go only down its layers, with no circle (import-linter's
contracts in pyproject.toml), and no module in src/ holds two ideas (past 300 lines)."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from workshop.course import Course

# Past this, a module holds two ideas: split it.
MOST_LINES = 300


def test_imports_go_only_down_the_layers_with_no_circle(course: Course) -> None:
    """`lint-imports` checks the contracts: the layers, the warm process and the steps' test
    helpers standing apart, and no circle between the modules of any package."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is not installed: `uv sync`"
    done = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=course.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_module_of_the_toolkit_is_over_300_lines(course: Course) -> None:
    too_long = {
        path.relative_to(course.root).as_posix(): lines
        for path in sorted((course.root / "src").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MOST_LINES
    }
    assert not too_long, f"modules over {MOST_LINES} lines (each holds two ideas): {too_long}"


def test_the_picture_of_the_layers_is_the_contracts(course: Course) -> None:
    """docs/how-we-know.md draws the layers: each arrow goes from a layer to the next one
    down, in the order pyproject.toml's contract declares."""
    config = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    names = [layer.removeprefix("workshop.").strip("_") for layer in layers]
    page = (course.root / "docs" / "how-we-know.md").read_text(encoding="utf-8")
    drawn = re.findall(r"^\s*(\w+)\[[^\]]*\] --> (\w+)$", page, flags=re.M)
    assert drawn == list(itertools.pairwise(names))
