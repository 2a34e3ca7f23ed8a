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
from workshop.postgres import Server, drop_database, libpq_dsn, run_sync
from workshop.postgres.pgbouncer import REQUIRE

from .faults import migrated_database


@pytest.mark.exhaustive
@pytest.mark.skipif(
    shutil.which("wrk") is None,
    reason="wrk is not installed: `sudo apt-get install wrk` (.ci/run installs it)",
)
def test_quick_mode_gives_every_variant_figures_for_every_request(
    course: Course, server: Server, tmp_path: Path
) -> None:
    """Every variant, step 06's through PgBouncer with them (CI requires it; a laptop without
    it leaves them out, and says so)."""
    # Databases of this run's own: another test run may be benchmarking beside it.
    name = f"{bench.runner.DATABASE}_{os.getpid()}"
    options = bench.model.Options.make(quick=True)
    if os.environ.get(REQUIRE):
        assert options.left_out == (), f"{REQUIRE} is set, and there is no PgBouncer"
    assert set(options.variants) | set(options.left_out) == set(bench.model.VARIANTS)
    try:
        results = bench.runner.run(course, options, output=tmp_path, database=name, say=print)
    finally:
        for step in {variant.step for variant in bench.model.VARIANTS.values()}:
            run_sync(drop_database(server.url, f"{name}_{step}"))
    for variant in options.variants:
        for request in bench.model.REQUESTS:
            figures = results.median(variant, request)
            assert figures.requests_per_second > 0, (variant, request)
            assert figures.p50_ms > 0 and figures.p99_ms > 0, (variant, request)
    assert results.files == [tmp_path / "results.md", tmp_path / "results.png"]
    table = results.files[0].read_text(encoding="utf-8")
    for key in options.variants:
        assert f"| {bench.model.VARIANTS[key].label} |" in table
    if "06-2w-pgb" in options.variants:
        assert "## Step 06 against step 05" in table
    assert results.files[1].stat().st_size > 0


bench = load_bench(Course().root)


def test_without_wrk_the_command_says_how_to_install_it(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(course.root)
    monkeypatch.setenv("PATH", "")
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 1
    assert result.output.strip().replace("\n", " ") == bench.runner.INSTALL_WRK


def test_an_unknown_variant_is_named(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(course.root)
    result = CliRunner().invoke(app, ["bench", "--variants", "raw,fast"])
    assert result.exit_code == 2
    assert "There is no variant 'fast'" in result.output


@pytest.mark.parametrize("connections", ["32,many", "0", ","])
def test_connections_are_whole_numbers(
    course: Course, monkeypatch: pytest.MonkeyPatch, connections: str
) -> None:
    monkeypatch.chdir(course.root)
    result = CliRunner().invoke(app, ["bench", "--connections", connections])
    assert result.exit_code == 2
    assert "whole numbers above 0" in " ".join(result.output.split())


def test_a_run_at_two_crowds_reports_each_and_the_tail_of_the_largest() -> None:
    """The report of a run at 32 and 1,000 connections: each crowd's tables, step 06 as a
    multiple of step 05, and the largest crowd's p99 as a multiple of its p50, with its
    errors. Made-up figures: what is tested is the arithmetic and the layout, not a speed."""
    options = bench.model.Options.make(
        variants=["05", "06-2w-pgb"], requests=["get"], connections=[32, 1000]
    )
    results = bench.model.Results(options, machine="a machine")
    figures = {
        ("05", 32): bench.model.Figures(400, 50, 100, 0),
        ("06-2w-pgb", 32): bench.model.Figures(600, 40, 90, 0),
        ("05", 1000): bench.model.Figures(300, 2000, 9000, 12),
        ("06-2w-pgb", 1000): bench.model.Figures(450, 1500, 4500, 0),
    }
    for (variant, connections), one in figures.items():
        results.runs[(variant, "get", connections)] = [one]
    text = bench.report.markdown(results)
    assert "`wrk -t2 -c32 -d8s` per request at 32 and 1,000 client connections" in text
    for connections in ("32", "1,000"):
        assert f"## Against the limit and the sync baseline at {connections} connections" in text
    assert "## Step 06 against step 05 at 32 connections" in text
    assert "| step 06, 2 workers, PgBouncer | 1.50x |" in text  # 600 / 400
    assert "| step 06, 2 workers, PgBouncer | 1.50x |" in text.split("at 1,000 connections")[-1]
    crowd = text.split("## A crowd of 1,000 connections")[1].split("## Figures")[0]
    assert "| step 05 reference (with a token) | 4.5x, 12 errors |" in crowd
    assert "| step 06, 2 workers, PgBouncer | 3.0x, 0 errors |" in crowd
    assert (
        "| GET one | step 05 reference (with a token) | 1,000 | 300 | 2000.0 | 9000.0 | 4.5x"
        in text
    )


@pytest.mark.exhaustive  # 100,000 rows copied: seconds
@pytest.mark.parametrize(("number", "column"), [("05", "hashed_password"), ("06", "password_hash")])
async def test_the_bench_account_owns_one_item_in_share(
    course: Course, server: Server, number: str, column: str
) -> None:
    """A table of many users, as in production: the bench account's items (ids SHARE,
    2 * SHARE, ..., those wrk asks for) among other accounts' items, made in turn; and a
    second seed finds the table as the first left it. Step 06 keeps the hash in a column of
    another name (migrations 0008-0010)."""
    step = course.step(number)
    accounts = bench.runner.accounts_of(step)
    assert accounts is not None and accounts.column == column
    async with migrated_database(step, server, "bench") as url:
        password, share = await bench.runner.seed(make_url(url), accounts)
        assert (await bench.runner.seed(make_url(url), accounts))[1] == share
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
    assert password and share == bench.model.SHARE > 1
    assert owners.pop(bench.runner.BENCH_EMAIL) == (bench.model.ITEMS, True)
    assert len(owners) == share - 1
    assert {items for items, _ in owners.values()} == {bench.model.ITEMS}
