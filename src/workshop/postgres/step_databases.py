"""Which database a step works on, and how a step's database is made from the step before's.

On the embedded server, and on a `DATABASE_URL` that names a server but no database, every step
with migrations has a database of its own: `workshop_03`, `workshop_04`, `workshop_05`. Steps 01
and 02 have no tables and share `workshop`. The first time a step needs its database, it is a
copy of the nearest earlier step's (`CREATE DATABASE ... TEMPLATE`), which `workshop run` then
migrates forward: the learner's items come along. Going back to a step finds its database as the
learner left it, at a revision its migrations know.

A `DATABASE_URL` that names a database is the learner's choice: every step works on it, as given.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from ..course import COMMAND, Course, Step, WorkshopError
from .databases import Server, create_database, run_sync
from .server import CONNECT_TIMEOUT, WORKSHOP_DATABASE, EmbeddedServer, libpq_dsn

# The step `workshop run` served last on a server: where `db psql` and `db url` go by default.
LAST_RUN_FILE = "last_run.json"


def keeps_step_databases(server: Server) -> bool:
    """True when the workshop names the databases: the embedded server, or a DATABASE_URL
    without a database. False when DATABASE_URL names one: every step works on that."""
    return server.source == "embedded" or not server.url.database


def database_name(step: Step | None) -> str:
    """`workshop_NN` for a step with migrations; `workshop` for the others (and for none)."""
    if step is None or not step.has_migrations:
        return WORKSHOP_DATABASE
    return f"{WORKSHOP_DATABASE}_{step.number}"


def step_database_names(course: Course) -> list[str]:
    """Every database the workshop keeps for the learner, in the course's order."""
    return [WORKSHOP_DATABASE, *(database_name(s) for s in course.steps if s.has_migrations)]


@dataclass(frozen=True)
class StepDatabase:
    """The database a step works on, and how it came to be."""

    step: Step | None
    server: Server
    url: URL
    own: bool  # the step's own (named by the workshop); False: the one DATABASE_URL names
    made_from: str | None = None  # made just now as a copy of this database
    made_empty: bool = False  # made just now, empty

    @property
    def name(self) -> str:
        return str(self.url.database)

    def label(self) -> str:
        """`step 04's database, workshop_04`: what the learner reads."""
        if not self.own:
            return "the database DATABASE_URL names"
        if self.step is None or not self.step.has_migrations:
            return f"the database of steps without a schema, {self.name}"
        return f"step {self.step.number}'s database, {self.name}"


# -- what is on the server ----------------------------------------------------------------


async def existing_databases(server: URL, names: list[str]) -> set[str]:
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
        )
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


async def revision_of(url: URL) -> str | None:
    """The Alembic revision a database records; None when it records none."""
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        if not await connection.fetchval(
            "SELECT to_regclass('public.alembic_version') IS NOT NULL"
        ):
            return None
        return await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()


class TemplateInUse(WorkshopError):
    """PostgreSQL copies a database only while nothing is connected to it."""


async def copy_database(server: URL, name: str, template: str) -> None:
    """CREATE DATABASE name TEMPLATE template, unless another process made it first."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        # PostgreSQL itself waits up to 5 s for the template's sessions to end (an app just
        # stopped), then refuses.
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # another `workshop run` made it at the same moment: the same copy
    except asyncpg.ObjectInUseError:
        # Clients only: PostgreSQL ends an autovacuum worker in the template by itself.
        users = await connection.fetch(
            "SELECT DISTINCT coalesce(nullif(application_name, ''), 'a client') AS name "
            "FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' "
            "ORDER BY 1",
            template,
        )
        who = [row["name"] for row in users] or ["a client"]
        raise TemplateInUse(
            f"The new database {name} starts as a copy of {template}, and PostgreSQL copies a "
            f"database only while nothing is connected to it ({', '.join(who)} "
            f"{'is' if len(who) == 1 else 'are'}): stop what uses it (an app still serving an "
            "earlier step, a psql), then run this again."
        ) from None
    finally:
        await connection.close()


# -- the database of a step -----------------------------------------------------------------


def earlier_databases(course: Course, step: Step) -> list[str]:
    """The databases a new step database may start from, nearest first, `workshop` last."""
    earlier = [s for s in course.steps if s.number < step.number and s.has_migrations]
    return [*(database_name(s) for s in reversed(earlier)), WORKSHOP_DATABASE]


def template_for(course: Course, step: Step, server: Server, known: set[str]) -> str | None:
    """The database a new step database starts as a copy of: the nearest earlier one at a
    revision this step's migrations know (None: start empty). One that records no revision has
    nothing to carry: start empty (and need no copy, which would need it to itself). One at a
    revision the step does not know is passed over: the shared `workshop` of a learner who had
    reached step 05 before each step had its own, when step 04's is made."""
    candidates = earlier_databases(course, step)
    existing = run_sync(existing_databases(server.url, candidates))
    for name in candidates:
        if name not in existing:
            continue
        revision = run_sync(revision_of(server.database_url(name)))
        if revision is None:
            return None
        if revision in known:
            return name
    return None


def step_database(course: Course, server: Server, step: Step | None) -> StepDatabase:
    """The database `step` works on, made now if it does not exist yet (not migrated)."""
    if not keeps_step_databases(server):
        return StepDatabase(step, server, server.url, own=False)
    name = database_name(step)
    url = server.database_url(name)
    if run_sync(existing_databases(server.url, [name])):
        return StepDatabase(step, server, url, own=True)
    template = None
    if step is not None and step.has_migrations:
        from .migrations import Migrations  # Alembic costs a third of a second to import

        # The reference's revisions: the learner's files may be half-written, not its chain.
        known = Migrations(step, solution=True).revisions()
        template = template_for(course, step, server, known)
    if template is None:
        run_sync(create_database(server.url, name))
        return StepDatabase(step, server, url, own=True, made_empty=True)
    run_sync(copy_database(server.url, name, template))
    return StepDatabase(step, server, url, own=True, made_from=template)


# -- the step `workshop run` served last ----------------------------------------------------


def record_path(course: Course, server: Server) -> Path:
    """Beside the embedded server's data (a test's server keeps its own), else in .workshop/."""
    if server.source == "embedded":
        return EmbeddedServer.for_root(course.root).pgdata.parent / LAST_RUN_FILE
    return course.root / ".workshop" / LAST_RUN_FILE


def remember_run(course: Course, server: Server, step: Step) -> None:
    if not keeps_step_databases(server):
        return  # one database for every step: nothing to choose between
    path = record_path(course, server)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"server": server.url.render_as_string(), "step": step.number}))


def last_run(course: Course, server: Server) -> Step | None:
    """The step `workshop run` served last on this server, if any."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, WorkshopError):
        data = json.loads(record_path(course, server).read_text())
        # The same server: DATABASE_URL may have changed since.
        if data["server"] == server.url.render_as_string():
            return course.step(data["step"])
    return None


def chosen_step(course: Course, server: Server, number: str | None) -> Step | None:
    """The step a `db` command works on: the one asked for, else the one run last."""
    return course.step(number) if number else last_run(course, server)


def made_message(database: StepDatabase) -> str | None:
    """What the learner reads when a step's database was made just now."""
    label = database.label()
    if database.made_from is not None:
        return f"Made {label}, as a copy of {database.made_from}: your data comes along."
    if database.made_empty and database.step is not None and database.step.has_migrations:
        return f"Made {label}, empty."
    return None


def unknown_schema_message(database: StepDatabase, step: Step, error: Exception) -> str:
    """A database at a revision the step's migrations do not know: what to do."""
    if database.own:
        return (
            f"Step {step.number}'s database, {database.name}, has a schema step {step.number} "
            f"does not know ({error}): `{COMMAND} db reset --step {step.number}` drops it, and "
            f"`{COMMAND} run {step.number}` makes it again from the step before's."
        )
    return (
        f"The database DATABASE_URL names ({database.name}) has a schema step {step.number} "
        f"does not know ({error}): every step works on that one database. Point DATABASE_URL at "
        "another database, or leave the database out of it (postgresql+asyncpg://user:password@"
        "host:5432) and the workshop keeps a database per step on that server."
    )


def status_lines(course: Course, server: Server) -> list[str]:
    """Which database each step works on, and where each one stands (`workshop db status`)."""
    if not keeps_step_databases(server):
        return [f"Every step works on the database DATABASE_URL names, {server.url.database}."]
    groups: dict[str, list[str]] = {}
    for step in course.steps:
        groups.setdefault(database_name(step), []).append(step.number)
    existing = run_sync(existing_databases(server.url, list(groups)))
    ran = last_run(course, server)
    lines = [
        f"Each step works on a database of its own; `{COMMAND} run NN` makes it from the "
        "step before's:"
    ]
    for name, numbers in groups.items():
        if name in existing:
            revision = run_sync(revision_of(server.database_url(name)))
            state = f"revision {revision}" if revision else "made"
        else:
            state = "not made yet"
        if ran is not None and database_name(ran) == name:
            state += f", step {ran.number} run last"
        lines.append(
            f"  {'steps' if len(numbers) > 1 else 'step '} {', '.join(numbers):7} {name:12} {state}"
        )
    return lines
