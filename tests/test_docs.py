"""The course site builds strictly, and its code comes from the real files."""

from __future__ import annotations

import importlib.metadata
import re
from html import unescape
from pathlib import Path

import typer.main
from packaging.specifiers import SpecifierSet

from workshop.commands import app, transcript
from workshop.commands.teach import load_bench
from workshop.course import Course, Step
from workshop.postgres import Server, server_version

SNIPPET = re.compile(r'^\s*--8<-- "([^"]+)"', re.M)
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)


def included_lines(root: Path, reference: str) -> list[str]:
    """The code lines a snippet reference (`path` or `path:section`) brings into the page."""
    path, _, section = reference.partition(":")
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    if section:
        start = lines.index(next(x for x in lines if x.strip() == f"# --8<-- [start:{section}]"))
        end = lines.index(next(x for x in lines if x.strip() == f"# --8<-- [end:{section}]"))
        lines = lines[start + 1 : end]
    return [x.strip() for x in lines if x.strip() and "--8<--" not in x]


bench = load_bench(Course().root)


def test_every_step_has_a_page_with_its_code_included(
    a_step: Step, site: Path, course: Course
) -> None:
    html = (site / "steps" / a_step.name / "index.html").read_text(encoding="utf-8")
    for exercise in a_step.exercises:
        assert f'id="{exercise.anchor}"' in html, f"no section for exercise {exercise.id}"
    # The page's text, as a reader sees it: highlighted code is split into many tags.
    text = unescape(re.sub(r"<[^>]+>", "", html))
    assert "--8<--" not in text, "a snippet was not included"
    # Code, not the reference's tables (`docs/reference/settings.md:step-02`): a table's
    # lines are cells on the page, not lines.
    included = SNIPPET.findall(a_step.docs_page.read_text(encoding="utf-8"))
    references = [r for r in included if not r.partition(":")[0].endswith(".md")]
    assert references, f"{a_step.docs_page.name} includes no code"
    for reference in references:
        missing = [x for x in included_lines(course.root, reference) if x not in text]
        assert not missing, f"{reference} is not on the page: {missing[:3]}"


def test_docs_never_own_python_code(course: Course) -> None:
    """Every Python block in the docs is included from a real file, never pasted."""
    for page in (course.root / "docs").rglob("*.md"):
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            pasted = [line for line in lines if not line.startswith("--8<--")]
            assert not pasted, f"{page.relative_to(course.root)} pastes code: {pasted[:2]}"


def test_the_companions_transcript_is_what_the_commands_print(course: Course) -> None:
    committed = (course.root / transcript.TRANSCRIPT).read_text(encoding="utf-8")
    assert transcript.make(course, typer.main.get_command(app)) == committed, (
        "run `workshop dev transcript`"
    )


def test_pages_count_no_checks_by_hand(course: Course) -> None:
    """A count of checks typed into a page is a copy that drifts: the table says it."""
    for page in (course.root / "docs").rglob("*.md"):
        counted = re.findall(r"\b\d+ (?:checks? )?for \d\d\.\d", page.read_text(encoding="utf-8"))
        assert not counted, f"{page.name}: {counted}"


def test_tests_named_in_the_docs_exist(course: Course) -> None:
    """`tests/test_faults.py::test_...`: the file, and the test in it, are there."""
    for page in [course.root / "README.md", *(course.root / "docs").rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for path, name in re.findall(r"`([\w./-]*tests/[\w/]+\.py)(?:::(\w+))?`", text):
            assert (course.root / path).is_file(), f"{page.name} names {path}"
            if name:
                code = (course.root / path).read_text(encoding="utf-8")
                assert re.search(rf"^(async )?def {name}\(", code, re.M), f"{page.name}: {name}"


def test_the_performance_figures_come_from_a_full_benchmark_run(course: Course) -> None:
    """docs/performance/ holds what `workshop bench --output docs/performance` wrote: the
    header the benchmark writes (with the machine and the date), every variant, no quick run."""
    figures = course.root / "docs" / "performance"
    text = (figures / "results.md").read_text(encoding="utf-8")
    title, _, machine, *_ = text.splitlines()
    assert title == bench.report.markdown_title()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC · .+ · PostgreSQL \d+", machine), machine
    assert "Quick mode" not in text
    for variant in bench.model.VARIANTS.values():
        assert f"| {variant.label} |" in text, variant.label
    assert (figures / "results.png").stat().st_size > 10_000


def test_the_production_figures_come_from_the_command_the_page_gives(course: Course) -> None:
    """docs/performance/production/ holds what the performance page's command wrote: step 06
    four ways beside step 05 and the sync baseline, at 32 and 1,000 connections, long enough
    for wrk's timeout to count a request that waits too long."""
    page = (course.root / "docs" / "performance.md").read_text(encoding="utf-8")
    command = re.search(r"uv run workshop bench (--variants sync,05,06[^\n]*\\\n[^\n]*)", page)
    assert command, "the page gives the command that wrote docs/performance/production"
    assert "--output docs/performance/production" in command[1]
    figures = course.root / "docs" / "performance" / "production"
    text = (figures / "results.md").read_text(encoding="utf-8")
    assert text.splitlines()[0] == bench.report.markdown_title()
    assert "Quick mode" not in text
    assert "-d15s` per request at 32 and 1,000 client connections" in text
    for key in ("sync", "05", *bench.model.STEP_06):
        assert f"| {bench.model.VARIANTS[key].label} |" in text, key
    assert "## A crowd of 1,000 connections" in text
    assert (figures / "results.png").stat().st_size > 10_000


def test_the_installed_versions_are_the_ones_the_claims_were_checked_with(
    course: Course, server: Server
) -> None:
    """The home page's "Versions": every installed version, and the server's, in its range."""
    page = (course.root / "docs" / "index.md").read_text(encoding="utf-8")
    ranges = dict(re.findall(r"^\| (\w+) \| .+ \| `([^`]+)` \|$", page, re.M))
    installed = {
        name: importlib.metadata.version(name.lower())
        for name in ("SQLAlchemy", "asyncpg", "FastAPI", "Pydantic")
    }
    installed["PostgreSQL"] = server_version(server.url).split(".")[0]
    assert set(ranges) == set(installed), ranges
    for name, version in installed.items():
        assert version in SpecifierSet(ranges[name]), f"{name} {version} is not {ranges[name]}"
