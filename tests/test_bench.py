"""`workshop bench`: every variant gives figures for every request. Never a speed: a test that
asserts one fails on a busy machine and passes on a fast one, and proves nothing either way."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from workshop.commands import app
from workshop.commands.teach import load_bench
from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import Server, drop_database, libpq_dsn, run_sync

from .faults import migrated_database


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


bench = load_bench(Course().root)


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


@pytest.mark.exhaustive  # 100,000 rows copied: seconds
async def test_step_05s_bench_account_owns_one_item_in_share(
    course: Course, server: Server
) -> None:
    """A table of many users, as in production: the bench account's items (ids SHARE,
    2 * SHARE, ..., those wrk asks for) among other accounts' items, made in turn; and a
    second seed finds the table as the first left it."""
    step = course.step("05")
    hash_password = load_package(step, solution=True).security.password_hash.hash
    async with migrated_database(step, server, "bench") as url:
        password, share = await bench.seed(make_url(url), hash_password)
        assert (await bench.seed(make_url(url), hash_password))[1] == share
        connection = await asyncpg.connect(libpq_dsn(make_url(url)))
        try:
            rows = await connection.fetch(
                "SELECT u.email, count(*) AS items, bool_and(i.id % $1 = 0) AS every_nth "
                "FROM items i JOIN users u ON u.id = i.owner_id GROUP BY u.email",
                share,
            )
        finally:
            await connection.close()
    owners = {row["email"]: (row["items"], row["every_nth"]) for row in rows}
    assert password and share == bench.SHARE > 1
    assert owners.pop(bench.BENCH_EMAIL) == (bench.ITEMS, True)
    assert len(owners) == share - 1
    assert {items for items, _ in owners.values()} == {bench.ITEMS}
