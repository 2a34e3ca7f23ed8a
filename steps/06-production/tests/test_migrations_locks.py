"""Step 06 checks: each migration runs while the app's writes go on, and none makes a write
wait on a lock longer than the migrations' lock_timeout.

A migration runs in a thread of its own, as a deploy runs it beside the app; writes of the
app's kind (a login attempt recorded, a user's row changed) go on in a loop, as the app's
role; a long read holds the tables, as a report or a slow request would. PostgreSQL says who
waits for whom (pg_locks, pg_blocking_pids) and since when (pg_locks.waitstart): watched, not
timed.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from workshop.postgres import libpq_dsn
from workshop.postgres.migrations import Migrations

# The migrations' lock bound in these tests: alembic.ini's, made shorter so that a test waits
# for a few of them, not a few seconds each.
LOCK_TIMEOUT = 0.4
# A write queued behind a migration is let go when the migration's lock_timeout fires: the
# server takes a moment to act on it, a few milliseconds, more on a busy machine.
SLACK = 0.25
FAST = {"lock_timeout": f"{round(LOCK_TIMEOUT * 1000)}ms", "lock_retry_pause": "0.2"}
MIGRATION = "migration under test"
WRITES = "the app's writes"
# Who waits, for whom, and for how long so far: every lock not yet granted in the database.
WAITS = """
SELECT a.application_name,
       ARRAY(SELECT b.application_name FROM pg_stat_activity b
             WHERE b.pid = ANY(pg_blocking_pids(a.pid))),
       coalesce(extract(epoch FROM clock_timestamp() - l.waitstart), 0)::float
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database()
"""


def dsn(url: str) -> str:
    return libpq_dsn(make_url(url))


def migrate(migrations: Migrations, url: str, revision: str, options: dict[str, str]) -> None:
    """`alembic upgrade <revision>` as the toolkit runs it, on a connection named MIGRATION.
    Called in a thread: env.py's pauses between attempts must not stop the test's loop."""
    config = migrations.config()
    for name, value in options.items():
        config.set_main_option(name, value)

    async def run() -> None:
        named = {"server_settings": {"application_name": MIGRATION}}
        engine = create_async_engine(url, poolclass=NullPool, connect_args=named)
        try:
            async with engine.connect() as connection:

                def upgrade(sync: Connection) -> None:
                    config.attributes["connection"] = sync
                    command.upgrade(config, revision)

                await connection.run_sync(upgrade)
        finally:
            await engine.dispose()

    asyncio.run(run())


@dataclass
class Watch:
    """What the database said while a migration ran: each lock wait seen, and the writes."""

    waits: list[tuple[str, list[str], float]] = field(default_factory=list)
    written: int = 0
    failed: list[str] = field(default_factory=list)

    def longest_wait_behind(self, blocker: str) -> float | None:
        """The longest a write was seen waiting for `blocker` (None: never seen waiting)."""
        seen = [waited for who, by, waited in self.waits if who == WRITES and blocker in by]
        return max(seen, default=None)

    def migration_waited(self) -> bool:
        return any(who == MIGRATION for who, _, _ in self.waits)

    def longest_wait_of_the_migration(self) -> float:
        return max((waited for who, _, waited in self.waits if who == MIGRATION), default=0)


@asynccontextmanager
async def watched(url: str, app_url: str, user_id: int) -> AsyncIterator[Watch]:
    """Writes of the app's kind in a loop, as its role, and PostgreSQL's lock waits sampled,
    until the block ends."""
    watch = Watch()
    done = asyncio.Event()

    async def write() -> None:
        connection = await asyncpg.connect(
            dsn(app_url), server_settings={"application_name": WRITES}
        )
        try:
            while not done.is_set():
                try:
                    await connection.execute(
                        "INSERT INTO login_attempts (email, address) VALUES ($1, '203.0.113.9')",
                        f"writer-{uuid.uuid4().hex[:6]}@example.com",
                    )
                    await connection.execute(
                        "UPDATE users SET is_active = true WHERE id = $1", user_id
                    )
                    watch.written += 1
                except asyncpg.PostgresError as error:  # the app role's own lock_timeout
                    watch.failed.append(f"{type(error).__name__}: {error}")
        finally:
            await connection.close()

    async def sample() -> None:
        connection = await asyncpg.connect(dsn(url))
        try:
            while not done.is_set():
                watch.waits += [tuple(row) for row in await connection.fetch(WAITS)]
                await asyncio.sleep(0.01)  # polled: PostgreSQL has no event to wait for
        finally:
            await connection.close()

    tasks = [asyncio.create_task(write()), asyncio.create_task(sample())]
    try:
        yield watch
    finally:
        done.set()
        await asyncio.gather(*tasks)


@asynccontextmanager
async def long_read(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that has read users and login_attempts and stays open (a report, a slow
    request): it holds ACCESS SHARE on both until it ends, which ALTER TABLE must wait for."""
    connection = await asyncpg.connect(dsn(url), server_settings={"application_name": "long read"})
    transaction = connection.transaction()
    await transaction.start()
    await connection.fetchval("SELECT count(*) FROM users")
    await connection.fetchval("SELECT count(*) FROM login_attempts")
    try:
        yield connection
    finally:
        if not connection.is_closed():
            try:
                await transaction.rollback()
            finally:  # even when the rollback fails: a connection left open leaks (a warning)
                await connection.close()


class Retries(logging.Handler):
    """env.py's "trying again" warnings, as they are logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@pytest.fixture
def retries() -> Iterator[Retries]:
    handler = Retries()
    logger = logging.getLogger("alembic.env")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def until(
    condition: Callable[[], object], task: "asyncio.Future[Any] | None" = None, limit: float = 30
) -> bool:
    """Wait until condition() holds (True), or the task ends or `limit` seconds pass (False)."""
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        if (task is not None and task.done()) or asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def database_at(migrations: Migrations, url: str, revision: str) -> int:
    """Migrate the empty database to `revision`, with a user and a few login attempts in it;
    the user's id."""
    await migrations.upgrade(url, revision)
    connection = await asyncpg.connect(dsn(url))
    try:
        user = await connection.fetchval(
            "INSERT INTO users (email, hashed_password) VALUES ($1, 'x') RETURNING id",
            f"locks-{uuid.uuid4().hex[:8]}@example.com",
        )
        await connection.execute(
            "INSERT INTO login_attempts (email, address) SELECT 'a@example.com', '192.0.2.' || n "
            "FROM generate_series(1, 50) n"
        )
        return int(user)
    finally:
        await connection.close()


# What each revision needs from a table a long read holds: "writes go on" (no lock a write or
# a read conflicts with: it runs to its end beside them), or "queues" (ACCESS EXCLUSIVE, for a
# moment: it waits for the read, writes queue behind it until its lock_timeout, and it tries
# again until the read is over). 0007, the exercise's, has tests of its own below.
NEEDS = {
    "0006": "writes go on",  # a role's settings: no table lock
    "0008": "queues",  # ALTER TABLE users ADD COLUMN ..., CREATE TRIGGER
    "0009": "writes go on",  # a batched UPDATE, VALIDATE CONSTRAINT
    "0010": "queues",  # ALTER TABLE users ... SET NOT NULL, DROP COLUMN
}


@pytest.mark.parametrize("revision", NEEDS)
async def test_each_migration_runs_while_writes_go_on(
    migrations: Migrations, empty_database_url: str, retries: Retries, revision: str
) -> None:
    """Run beside the app's writes and a long read, each revision either never makes a write
    wait, or makes writes wait at most its lock_timeout, gives way, and tries again until the
    read ends. Without lock_timeout, the writes would queue behind it until the read ends."""
    url = empty_database_url
    before = f"{int(revision) - 1:04d}"
    user = await database_at(migrations, url, before)
    app_url = migrations.app_url(url)
    async with watched(url, app_url, user) as watch, long_read(url) as reader:
        running = asyncio.ensure_future(asyncio.to_thread(migrate, migrations, url, revision, FAST))
        if NEEDS[revision] == "queues":
            # Seen to give way once while the read holds on: then the read ends.
            gave_way = await until(lambda: retries.seen, running)
        else:
            await until(running.done)
        ended_first = running.done()
        await reader.close()
        await running
    longest = watch.longest_wait_behind(MIGRATION)
    if NEEDS[revision] == "queues":
        assert gave_way, f"migration {revision} never gave way to the writes queued behind it: " + (
            "it ended while the read held its table" if ended_first else "no lock_timeout?"
        )
    else:
        assert ended_first, f"migration {revision} waited for a read: it takes a lock writes need"
    if NEEDS[revision] == "writes go on":
        assert longest is None, f"writes waited {longest:.2f} s for migration {revision}"
    else:
        assert longest is not None, "no write was seen queueing behind the migration"
        assert longest <= LOCK_TIMEOUT + SLACK, (
            f"a write waited {longest:.2f} s behind migration {revision}: more than its "
            f"lock_timeout ({LOCK_TIMEOUT} s)"
        )
    assert watch.written > 0 and not watch.failed, watch.failed[:3]


async def test_a_migration_that_never_gets_its_lock_gives_up(
    migrations: Migrations, empty_database_url: str, retries: Retries
) -> None:
    """While a transaction holds users for longer than the migrations will wait, the contract
    (0010) tries lock_attempts times, lets the writes through between its attempts, and gives
    up with a message that says why, leaving the database as it was (0009)."""
    url = empty_database_url
    user = await database_at(migrations, url, "0009")
    options = {**FAST, "lock_attempts": "3"}
    async with watched(url, migrations.app_url(url), user) as watch, long_read(url) as reader:
        running = asyncio.to_thread(migrate, migrations, url, "0010", options)
        giving_up = asyncio.ensure_future(running)
        ended = await until(giving_up.done, limit=30)
        written = watch.written
        writing = await until(lambda: watch.written > written + 10, limit=10)
        await reader.close()
        [outcome] = await asyncio.gather(giving_up, return_exceptions=True)
    assert ended, "after 30 s the contract still waited for its lock: no lock_timeout?"
    assert isinstance(outcome, CommandError), f"the contract did not give up: {outcome!r}"
    assert "Gave up after 3 attempts" in str(outcome) and "lock_timeout" in str(outcome)
    assert len(retries.seen) == 2, retries.seen
    assert writing, "the writes do not go on once the migration gave up"
    longest = watch.longest_wait_behind(MIGRATION)
    assert longest is not None and longest <= LOCK_TIMEOUT + SLACK, longest
    connection = await asyncpg.connect(dsn(url))
    try:
        assert await connection.fetchval("SELECT version_num FROM alembic_version") == "0009"
        columns = await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
        )
        assert "hashed_password" in {row[0] for row in columns}
    finally:
        await connection.close()


async def address_index(url: str) -> tuple[bool, str] | None:
    """ix_login_attempts_address_at: (whether it is valid, its definition), or None."""
    connection = await asyncpg.connect(dsn(url))
    try:
        row = await connection.fetchrow(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indexrelid = to_regclass('ix_login_attempts_address_at')"
        )
        return (row[0], row[1]) if row else None
    finally:
        await connection.close()


@asynccontextmanager
async def open_write(app_url: str) -> AsyncIterator[None]:
    """A login attempt written in a transaction that stays open (a request under way)."""
    connection = await asyncpg.connect(
        dsn(app_url), server_settings={"application_name": "open write"}
    )
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO login_attempts (email, address) VALUES ('open@example.com', '::1')"
            )
            yield
    finally:
        await connection.close()


async def writes_seen(watch: Watch, writes: int = 5) -> None:
    """Until `writes` more writes went through, or one was seen waiting for the migration."""
    written = watch.written
    await until(
        lambda: watch.written >= written + writes or watch.longest_wait_behind(MIGRATION), limit=30
    )


@pytest.mark.exercise("06.5")
async def test_the_address_index_is_built_while_writes_go_on(
    migrations: Migrations, empty_database_url: str
) -> None:
    """0007 builds the index while a write to login_attempts is under way (a login): it waits
    for that transaction to end, and meanwhile the other writes go on. A plain CREATE INDEX
    would hold a lock that makes each of them wait until the index is built."""
    url = empty_database_url
    user = await database_at(migrations, url, "0006")
    app_url = migrations.app_url(url)
    async with watched(url, app_url, user) as watch:
        async with open_write(app_url):
            running = asyncio.ensure_future(asyncio.to_thread(migrate, migrations, url, "0007", {}))
            if await until(watch.migration_waited, running):
                await writes_seen(watch)
        await running
    index = await address_index(url)
    assert index is not None, (
        "migration 0007 left no index ix_login_attempts_address_at: the limit per address "
        "reads the whole table on every login"
    )
    assert index[0], "the index 0007 built is INVALID: queries do not use it"
    longest = watch.longest_wait_behind(MIGRATION)
    assert longest is None, (
        f"writes to login_attempts waited ({longest:.2f} s, and counting) for migration 0007: "
        "a plain CREATE INDEX holds a SHARE lock until the index is built. CONCURRENTLY "
        "lets writes go on."
    )


async def test_a_plain_create_index_makes_the_writes_wait(
    migrations: Migrations, empty_database_url: str
) -> None:
    """What step 05's way (0005: CREATE INDEX in the migration's transaction) does on a live
    table: it waits for the write under way to end, and every write that comes after waits
    behind it, then for the whole build."""
    url = empty_database_url
    user = await database_at(migrations, url, "0006")
    app_url = migrations.app_url(url)
    builder = await asyncpg.connect(dsn(url), server_settings={"application_name": MIGRATION})
    try:
        async with watched(url, app_url, user) as watch:
            async with open_write(app_url):
                building = asyncio.ensure_future(
                    builder.execute("CREATE INDEX ix_plain ON login_attempts (address)")
                )
                # Held until a write has waited a second: as long as the write under way lasts.
                waited = lambda: (watch.longest_wait_behind(MIGRATION) or 0) >= 1  # noqa: E731
                await until(waited, building, limit=30)
            await building
    finally:
        await builder.close()
    longest = watch.longest_wait_behind(MIGRATION)
    assert longest is not None and longest >= 1, "no write was seen waiting for CREATE INDEX"
    print(
        f"\nA plain CREATE INDEX waited for a write under way, and the writes behind it waited "
        f"{longest:.2f} s: as long as that write lasted (pg_locks.waitstart)."
    )


@pytest.mark.exercise("06.5")
async def test_the_index_build_waits_out_a_long_report_without_giving_up(
    migrations: Migrations, empty_database_url: str, retries: Retries
) -> None:
    """A report runs in a transaction of its own (its snapshot older than the build): CREATE
    INDEX CONCURRENTLY waits for it to end, making no write wait meanwhile. Under the
    migrations' short lock_timeout it would give up, its build lost, and try again, until it
    gave up for good: its waits make nobody queue, so they need no bound."""
    url = empty_database_url
    user = await database_at(migrations, url, "0006")
    report = await asyncpg.connect(dsn(url), server_settings={"application_name": "report"})
    async with watched(url, migrations.app_url(url), user) as watch:
        try:
            async with report.transaction(isolation="repeatable_read"):
                await report.fetchval("SELECT count(*) FROM users")
                running = asyncio.ensure_future(
                    asyncio.to_thread(migrate, migrations, url, "0007", FAST)
                )
                # Until it has waited past the lock_timeout, or given way, or ended.
                past = lambda: watch.longest_wait_of_the_migration() > LOCK_TIMEOUT + SLACK  # noqa: E731
                await until(lambda: past() or retries.seen, running)
        finally:
            await report.close()
        await running
    index = await address_index(url)
    assert index is not None and index[0], (
        "migration 0007 left no valid ix_login_attempts_address_at"
    )
    assert not retries.seen, (
        "the index build gave up waiting for a transaction older than it, under the "
        f"migrations' lock_timeout: {retries.seen[0]}"
    )
    assert watch.longest_wait_behind(MIGRATION) is None, "writes waited for the index build"


@pytest.mark.exercise("06.5")
async def test_the_migrations_after_the_index_keep_their_lock_timeout(
    migrations: Migrations, empty_database_url: str, retries: Retries
) -> None:
    """0007 and 0008 in one run, as a deploy runs them, while a transaction holds users (a
    lock, no snapshot: the index build does not wait for it). 0008 needs users' ACCESS
    EXCLUSIVE: it must still wait at most lock_timeout and give way, so whatever 0007 did to
    the session's lock_timeout, it must set it back."""
    url = empty_database_url
    await database_at(migrations, url, "0006")
    holder = await asyncpg.connect(dsn(url), server_settings={"application_name": "holder"})
    try:
        await holder.execute("BEGIN; LOCK TABLE users IN ACCESS SHARE MODE")
        running = asyncio.ensure_future(asyncio.to_thread(migrate, migrations, url, "0008", FAST))
        gave_way = await until(lambda: retries.seen, running)
    finally:
        await holder.close()  # its transaction ends
    await running
    index = await address_index(url)
    assert index is not None and index[0], (
        "migration 0007 left no valid ix_login_attempts_address_at"
    )
    assert gave_way, (
        "0008, run after 0007, waited for its lock with no lock_timeout: 0007 left the "
        "session's lock_timeout off (RESET goes back to the server's default, not alembic.ini's)"
    )
