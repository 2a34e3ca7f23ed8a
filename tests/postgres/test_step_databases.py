"""Going back a step: each step with migrations works on a database of its own, made from the
step before's, so `workshop run 04` after step 05 serves step 04 with the learner's data.

These tests run the learner's default path, the embedded server, on a server of their own: the
shared one, and the databases other tests use, are never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from workshop.commands import app
from workshop.commands.serving import free_port
from workshop.course import Course
from workshop.postgres import (
    Server,
    create_database,
    drop_database,
    libpq_dsn,
    run_sync,
    test_database_name,
)
from workshop.postgres.migrations import Migrations
from workshop.postgres.step_databases import (
    TemplateInUse,
    copy_database,
    existing_databases,
    step_database,
    step_database_names,
)

from ..faults import PrivateServer, first_column, reachable_folder

# Each test starts the workshop's own commands on a private embedded server: CI runs them
# (`uv run pytest -m exhaustive`), the README's run does not.
pytestmark = pytest.mark.exhaustive

ALICE = {"username": "alice@example.com", "password": "correct horse battery"}


@dataclass
class Learner:
    """A learner's machine: the repository, and an embedded server of the test's own."""

    course: Course
    server: Server
    env: dict[str, str]

    def workshop(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workshop", *args],
            cwd=self.course.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def item_names(self, database: str) -> set[str]:
        """The items' names, read as the administrator (row-level security does not apply)."""
        url = self.server.database_url(database)
        return run_sync(first_column(url, "SELECT name FROM items"))


@contextmanager
def private_learner(course: Course) -> Iterator[Learner]:
    with reachable_folder("workshop-learner-") as folder:
        private = PrivateServer(folder / "pgdata")
        server = private.start()
        env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
        # Wide enough that Rich wraps none of the lines the tests read.
        env |= {"WORKSHOP_PGDATA": str(private.pgdata), "COLUMNS": "300"}
        try:
            yield Learner(course, server, env)
        finally:
            private.stop()


@dataclass
class Served:
    client: httpx.Client
    output: str = field(default="")


@contextmanager
def serving(learner: Learner, step: str) -> Iterator[Served]:
    """`workshop run STEP --solution` as a learner starts it, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "workshop", "run", step, "--solution", "--no-reload"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=learner.course.root,
        env=learner.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                served.client.get("/health")
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail(f"`workshop run {step}` stopped:\n{process.stdout.read()}")  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"step {step} did not answer within 60 s"
                time.sleep(0.2)
        yield served
    finally:
        served.client.close()
        process.terminate()
        served.output = process.communicate(timeout=30)[0]


def head(number: str) -> str:
    """The step's latest revision (the ids are numbered: 0001, 0002, ...)."""
    return max(Migrations(Course().step(number), solution=True).revisions())


def log_in(client: httpx.Client) -> dict[str, str]:
    response = client.post("/auth/token", data=ALICE)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module")
def after_step_05(course: Course) -> Iterator[Learner]:
    """A learner who went through steps 03, 04 and 05 as the pages say, leaving an item in each."""
    with private_learner(course) as learner:
        with serving(learner, "03") as step_03:
            # Step 03 has no POST: the page adds an item with psql, while the app serves.
            insert = "INSERT INTO items (name, price) VALUES ('lamp', 12.5)"
            added = learner.workshop("db", "psql", "-c", insert)
            assert added.returncode == 0, added.stderr
        # What the step 03 page shows of the first run is what it prints.
        quoted = "\n".join(
            line
            for line in step_03.output.splitlines()
            if "workshop_03," in line or line.startswith("Migrated")
        )
        assert f"```text\n{quoted}\n```" in course.step("03").docs_page.read_text()
        assert "Made step 03's database, workshop_03, empty." in step_03.output

        with serving(learner, "04") as step_04:
            assert names(step_04.client.get("/items")) == {"lamp"}  # carried from step 03
            created = step_04.client.post("/items", json={"name": "chair", "price": "40.00"})
            assert created.status_code == 201, created.text
        assert "Made step 04's database, workshop_04, as a copy of workshop_03" in step_04.output

        with serving(learner, "05") as step_05:
            user = {"email": ALICE["username"], "password": ALICE["password"]}
            assert step_05.client.post("/users", json=user).status_code == 201
            created = step_05.client.post(
                "/items",
                json={"name": "desk", "price": "80.00"},
                headers=log_in(step_05.client),
            )
            assert created.status_code == 201, created.text
        # The earlier items came along (to the account of items made before there were users).
        assert "Made step 05's database, workshop_05, as a copy of workshop_04" in step_05.output
        assert learner.item_names("workshop_05") == {"lamp", "chair", "desk"}
        yield learner


def names(page: httpx.Response) -> set[str]:
    assert page.status_code == 200, page.text
    return {item["name"] for item in page.json()["items"]}


def test_run_04_after_step_05_serves_step_04_with_its_data(after_step_05: Learner) -> None:
    learner = after_step_05
    with serving(learner, "04") as back:
        assert names(back.client.get("/items")) == {"lamp", "chair"}
    assert "Migrated" not in back.output  # it is at its step's revision: nothing to do
    assert "Made" not in back.output and "does not know" not in back.output

    # The `db` commands go where the learner's app is: the step run last, unless told.
    assert learner.workshop("db", "url").stdout.strip().split("?")[0].endswith("/workshop_04")
    status = learner.workshop("db", "status").stdout
    assert f"workshop_04  revision {head('04')}, step 04 run last" in status
    assert f"workshop_05  revision {head('05')}" in status

    # And forward again: step 05's item is where the learner left it.
    with serving(learner, "05") as forward:
        assert names(forward.client.get("/items", headers=log_in(forward.client))) == {"desk"}
    assert "Made" not in forward.output
    psql = learner.workshop("db", "psql", "--step", "04", "-At", "-c", "SELECT name FROM items")
    assert psql.returncode == 0, psql.stderr
    assert set(psql.stdout.split()) == {"lamp", "chair"}


def test_check_03_after_step_05_passes_and_keeps_the_data(after_step_05: Learner) -> None:
    learner = after_step_05
    done = learner.workshop("check", "03", "--solution")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Step 03 is complete." in done.stdout
    # The checks work on throwaway databases: the learner's are as they were.
    assert learner.item_names("workshop_03") == {"lamp"}
    assert learner.item_names("workshop_04") == {"lamp", "chair"}
    assert learner.item_names("workshop_05") == {"lamp", "chair", "desk"}


def test_a_database_url_that_names_a_database_is_every_steps(
    course: Course, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The learner chose that database: the workshop makes no other, and says what to do
    when an earlier step meets a later step's schema there."""
    monkeypatch.chdir(course.root)
    name = test_database_name("05_named")
    run_sync(create_database(server.url, name))
    try:
        url = server.database_url(name).render_as_string(hide_password=False)
        run_sync(Migrations(course.step("05"), solution=True).upgrade(url))
        result = CliRunner().invoke(app, ["run", "04", "--solution"], env={"DATABASE_URL": url})
    finally:
        run_sync(drop_database(server.url, name))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert message.startswith(f"The database DATABASE_URL names ({name}) has a schema step 04 ")
    assert f"does not know (Can't locate revision identified by '{head('05')}')" in message
    assert "leave the database out of it" in message and "Traceback" not in message


def test_a_database_in_use_is_not_copied_and_the_message_says_who(server: Server) -> None:
    """CREATE DATABASE ... TEMPLATE needs the template to itself: an app still serving the
    step before (its pool keeps a connection open) is named, and nothing is made."""
    template, copy = test_database_name("template"), test_database_name("copy")
    run_sync(create_database(server.url, template))

    async def copy_while_connected() -> None:
        app_connection = await asyncpg.connect(
            libpq_dsn(server.database_url(template)),
            server_settings={"application_name": "workshop"},
        )
        try:
            await copy_database(server.url, copy, template)
        finally:
            await app_connection.close()

    try:
        with pytest.raises(TemplateInUse, match=r"\(workshop is\): stop what uses it"):
            run_sync(copy_while_connected())
        run_sync(copy_database(server.url, copy, template))  # free again: copied
    finally:
        for name in (template, copy):
            run_sync(drop_database(server.url, name))


@pytest.fixture(scope="module")
def fresh_learner(course: Course) -> Iterator[Learner]:
    """A server of its own that no step has used; each test leaves it without step databases."""
    with private_learner(course) as learner:
        yield learner


def test_a_database_url_without_a_database_gets_a_database_per_step(
    course: Course, fresh_learner: Learner
) -> None:
    """A server of the learner's own, named without a database: the workshop names the
    databases there, as on the embedded server."""
    learner = fresh_learner
    own = learner.server.url._replace(database=None)  # URL.set() cannot unset a field
    env = learner.env | {"DATABASE_URL": own.render_as_string(hide_password=False)}
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "db", "url", "--step", "03"],
        cwd=course.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("?")[0].endswith("/workshop_03")
        assert done.stderr.startswith("Made step 03's database, workshop_03, empty.")
    finally:
        run_sync(drop_database(learner.server.url, "workshop_03"))


def test_a_shared_database_from_before_is_carried_where_it_can_be(
    course: Course, fresh_learner: Learner
) -> None:
    """A learner who had reached step 05 when every step shared `workshop`, and goes on with
    step 05: its database starts as a copy of `workshop`. Going back, step 04's starts empty:
    step 04 could not migrate step 05's revision (the data is still in `workshop`)."""
    learner = fresh_learner
    server = learner.server
    run_sync(create_database(server.url, "workshop"))
    shared = server.database_url("workshop").render_as_string(hide_password=False)
    run_sync(Migrations(course.step("05"), solution=True).upgrade(shared))
    assert step_database(course, server, course.step("05")).made_from == "workshop"
    assert step_database(course, server, course.step("05")).made_from is None  # made once
    assert step_database(course, server, course.step("04")).made_empty

    # `db reset` drops one step's database, or every one the workshop keeps.
    one = learner.workshop("db", "reset", "--step", "04", "--yes")
    assert one.stdout.startswith("Dropped workshop_04: `uv run workshop run 04` makes it")
    every = learner.workshop("db", "reset", "--yes")
    assert every.stdout.startswith("Dropped workshop, workshop_05: ")
    assert not run_sync(existing_databases(server.url, step_database_names(course)))
