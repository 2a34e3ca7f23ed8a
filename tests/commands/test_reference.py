"""The reference pages are made from the code, and the docs keep no copy of them by hand."""

from __future__ import annotations

import re

import pytest
import typer.main

from workshop.commands import app, reference, settings_page
from workshop.course import Course, WorkshopError


def test_the_reference_pages_are_what_workshop_dev_reference_writes(course: Course) -> None:
    for path, text in reference.pages(course, typer.main.get_command(app)).items():
        committed = (course.root / path).read_text(encoding="utf-8")
        assert committed == text, f"{path} is stale: run `uv run workshop dev reference`"


def test_every_setting_and_every_command_is_in_the_reference(course: Course) -> None:
    settings = (course.root / reference.SETTINGS_PAGE).read_text(encoding="utf-8")
    for step in course.steps:
        for name in settings_page.load_config(step).Settings.model_fields:
            assert f"| `{name.upper()}` |" in settings, f"{name} ({step.name})"

    commands = (course.root / reference.COMMANDS_PAGE).read_text(encoding="utf-8")
    found = reference.commands(typer.main.get_command(app))
    assert {("run",), ("db", "start"), ("dev", "reference")} <= {c.words for c in found}
    for command in found:
        assert f"$ uv run workshop {' '.join(command.words)} --help" in commands


def test_a_setting_without_a_comment_has_no_meaning_and_stops_the_page() -> None:
    from pydantic_settings import BaseSettings

    class Settings(BaseSettings):
        # Documented.
        pool_size: int = 20

        undocumented: int = 1

    with pytest.raises(WorkshopError, match="UNDOCUMENTED has no meaning"):
        settings_page.settings_of(Settings)


def test_fields_of_a_group_share_its_comment_and_markers_are_not_words() -> None:
    from pydantic_settings import BaseSettings

    class Settings(BaseSettings):
        # EXERCISE 09.1: not a meaning
        # --8<-- [start:pool]
        # Twenty kept, ten more under load.
        pool_size: int = 20
        max_overflow: int = 10
        # --8<-- [end:pool]

    found = {s.variable: s.meaning for s in settings_page.settings_of(Settings)}
    assert found == {
        "POOL_SIZE": "Twenty kept, ten more under load.",
        "MAX_OVERFLOW": "Twenty kept, ten more under load.",
    }


def test_the_docs_keep_no_hand_written_copy_of_the_reference(course: Course) -> None:
    """A table of settings or of commands typed into a page drifts from the code: pages
    include the reference's sections (`--8<-- "docs/reference/settings.md:step-02"`)."""
    settings = "|".join(
        name.upper()
        for step in course.steps
        for name in settings_page.load_config(step).Settings.model_fields
    )
    row = re.compile(rf"^\| `(?:{settings}|uv run workshop[^`]*)`", re.M)
    generated = {course.root / reference.SETTINGS_PAGE, course.root / reference.COMMANDS_PAGE}
    for page in [course.root / "README.md", *(course.root / "docs").rglob("*.md")]:
        if page in generated:
            continue
        copied = row.findall(page.read_text(encoding="utf-8"))
        assert not copied, f"{page.relative_to(course.root)} copies the reference: {copied[:3]}"
