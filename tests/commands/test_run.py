"""`workshop run` from step 06: 2 worker processes through the workshop's PgBouncer, or
straight to PostgreSQL with a line that says why; reload and workers do not mix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from workshop.checks.pgbouncer import missing
from workshop.commands.run import workers_and_reload
from workshop.commands.serving import free_port
from workshop.course import Course, WorkshopError
from workshop.postgres import Server, create_database, drop_database, run_sync, test_database_name
from workshop.postgres.pgbouncer import REQUIRE, PgBouncer
from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command

needs_pgbouncer = pytest.mark.skipif(
    find_pgbouncer() is None and not os.environ.get(REQUIRE), reason=missing()
)

# `python -m workshop`, on a machine where no pgbouncer is found.
WITHOUT_PGBOUNCER = (
    "import workshop.postgres.pgbouncer_config as c; c.KNOWN_PLACES = (); "
    "from workshop.commands import main; main()"
)


def test_reload_serves_one_worker_and_workers_turn_reload_off() -> None:
    assert workers_and_reload(1, None, None) == (1, True)  # steps 01-05: reload, as before
    assert workers_and_reload(2, None, None) == (2, False)  # step 06: its workers
    assert workers_and_reload(2, None, True) == (1, True)  # an explicit --reload wins
    assert workers_and_reload(1, 3, None) == (3, False)
    assert workers_and_reload(2, None, False) == (2, False)
    with pytest.raises(WorkshopError, match="--reload restarts one process"):
        workers_and_reload(1, 2, True)
    with pytest.raises(WorkshopError, match="one worker process at least"):
        workers_and_reload(1, 0, None)


@pytest.fixture
def throwaway(server: Server) -> Iterator[str]:
    """A database of this test's own, as DATABASE_URL (every step then works on it)."""
    name = test_database_name("run")
    run_sync(create_database(server.url, name))
    yield server.database_url(name).render_as_string(hide_password=False)
    run_sync(drop_database(server.url, name))


def serve_step_06(root: Path, env: dict[str, str], *prefix: str) -> tuple[int, str]:
    """`workshop run 06 --solution` until GET /readyz answers: its status and the output."""
    port = free_port()
    command = [*prefix, "run", "06", "--solution", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the app did not start within 60 s"
                time.sleep(0.2)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    return status, output


@needs_pgbouncer
def test_step_06_serves_two_workers_through_pgbouncer(
    course: Course, throwaway: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": throwaway, "WORKSHOP_PGDATA": str(tmp_path / "pgdata")}
    bouncer = PgBouncer(tmp_path / "pgbouncer")  # the workshop's, beside WORKSHOP_PGDATA
    try:
        status, output = serve_step_06(course.root, env, sys.executable, "-m", "workshop")
        assert status == 200, output
        running = bouncer.status()
        assert running is not None
        assert f"with 2 workers through PgBouncer (127.0.0.1:{running.port}, transaction)" in (
            output
        )
        assert output.count("Started server process") == 2, output
        # Its requests went through PgBouncer: it counts their transactions in the database.
        database = make_url(throwaway).database
        stats = [row for row in bouncer.show("STATS") if row["database"] == database]
        assert stats and int(stats[0]["total_xact_count"]) > 0, bouncer.show("STATS")
    finally:
        bouncer.stop()


def test_step_06_without_pgbouncer_serves_straight_to_postgresql_and_says_so(
    course: Course, throwaway: str, tmp_path: Path
) -> None:
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "pgbouncer").exists()]
    env = {
        **os.environ,
        "DATABASE_URL": throwaway,
        "WORKSHOP_PGDATA": str(tmp_path / "pgdata"),
        "PATH": os.pathsep.join(path),
    }
    status, output = serve_step_06(course.root, env, sys.executable, "-c", WITHOUT_PGBOUNCER)
    assert status == 200, output
    said = " ".join(output.split())
    assert "PgBouncer is not installed, so the app connects straight to PostgreSQL" in said
    assert install_command() in said
    assert "with 2 workers on PostgreSQL" in said
    assert not (tmp_path / "pgbouncer").exists()
