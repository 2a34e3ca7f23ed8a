"""`workshop bench`: every variant gives figures for every request. Never a speed: a test that
asserts one fails on a busy machine and passes on a fast one, and proves nothing either way."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workshop import bench
from workshop.cli import app
from workshop.course import Course
from workshop.database import Server, drop_database, run_sync


@pytest.mark.exhaustive
@pytest.mark.skipif(
    shutil.which("wrk") is None,
    reason="wrk is not installed: `sudo apt-get install wrk` (.ci/run installs it)",
)
def test_quick_mode_gives_every_variant_figures_for_every_request(
    course: Course, server: Server, tmp_path: Path
) -> None:
    # Databases of this run's own: another test run may be benchmarking beside it.
    name = f"{bench.DATABASE}_{os.getpid()}"
    try:
        results = bench.run(
            course, bench.Options.make(quick=True), output=tmp_path, database=name, say=print
        )
    finally:
        for step in {variant.step for variant in bench.VARIANTS.values()}:
            run_sync(drop_database(server.url, f"{name}_{step}"))
    for variant in bench.VARIANTS:
        for request in bench.REQUESTS:
            figures = results.median(variant, request)
            assert figures.requests_per_second > 0, (variant, request)
            assert figures.p50_ms > 0 and figures.p99_ms > 0, (variant, request)
    assert results.files == [tmp_path / "results.md", tmp_path / "results.png"]
    table = results.files[0].read_text(encoding="utf-8")
    for variant in bench.VARIANTS.values():
        assert variant.label in table
    assert results.files[1].stat().st_size > 0


def test_without_wrk_the_command_says_how_to_install_it(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(course.root)
    monkeypatch.setenv("PATH", "")
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 1
    assert result.output.strip().replace("\n", " ") == bench.INSTALL_WRK


def test_an_unknown_variant_is_named(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(course.root)
    result = CliRunner().invoke(app, ["bench", "--variants", "raw,fast"])
    assert result.exit_code == 2
    assert "There is no variant 'fast'" in result.output
