"""Step 06 checks (06.2): the app through PgBouncer in transaction mode, where each transaction
may run on another server connection, and another client's next one on this one.

First what goes wrong: step 05's engine through PgBouncer, and a setting made for the session
rather than the transaction. Then the app: its statements survive a transaction on another
server connection, and leave nothing behind on any."""

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from workshop.course.loader import load_package
from workshop.course.model import Step
from workshop.testing import serve

from .conftest import SECRET

QUERY = text("SELECT CAST(:n AS integer) + 1")


async def on_another_server_connection(engine: AsyncEngine) -> None:
    """Client A runs a transaction; client B then holds that server connection (PgBouncer hands
    out the one last used first) in a transaction of its own, and A's next transaction runs on
    the other one: the tests' PgBouncer has two per database and user."""
    async with engine.connect() as a:
        await a.execute(QUERY, {"n": 1})
        await a.commit()
        async with engine.connect() as b:
            await b.execute(text("SELECT 1"))
            await a.execute(QUERY, {"n": 2})  # the statement A ran before, elsewhere
            await a.commit()
            await b.commit()


@asynccontextmanager
async def both_server_connections(url: str) -> Iterator[list[Any]]:
    """Two clients in a transaction each, at once: between them, both of PgBouncer's server
    connections for this database and user."""
    engine = create_async_engine(url, connect_args={"statement_cache_size": 0})
    try:
        async with engine.connect() as one, engine.connect() as two:
            yield [one, two]
    finally:
        await engine.dispose()


# -- first, what goes wrong ---------------------------------------------------------------------


def step_05(course_dir: Path) -> ModuleType:
    """Step 05's reference solution, loaded under a name of its own."""
    return load_package(Step(course_dir / "05-security"), solution=True)


async def test_step_05s_engine_does_not_get_through_pgbouncer(
    step: Step, pgbouncer_url: str
) -> None:
    """Step 05 set statement_timeout as a startup parameter of each connection. PgBouncer
    cannot pass one on to a server connection other clients share, and refuses the connection;
    step 06 sets it on the app's role instead (migration 0006)."""
    five = step_05(step.dir.parent)
    settings = five.config.Settings(_env_file=None, database_url=pgbouncer_url, secret_key=SECRET)
    engine = five.db.create_engine(settings)
    try:
        with pytest.raises(DBAPIError, match="unsupported startup parameter: statement_timeout"):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_asyncpgs_named_statements_collide_through_pgbouncer(pgbouncer_url: str) -> None:
    """Step 05's engine without that parameter: asyncpg names each prepared statement and keeps
    it for next time, on the server connection it was made on. A's next transaction runs on the
    other one: "prepared statement "__asyncpg_stmt_..." does not exist" (or, when another
    client made one of the same name there, "already exists")."""
    five = create_async_engine(pgbouncer_url, pool_size=20, max_overflow=10)
    try:
        with pytest.raises(DBAPIError, match=r"prepared statement .* (does not|already) exist"):
            await on_another_server_connection(five)
    finally:
        await five.dispose()


async def test_a_setting_for_the_session_leaks_to_the_next_client(
    pgbouncer_url: str, engine: AsyncEngine, committed_user: Callable[..., Any]
) -> None:
    """Row-level security reads app.user_id. Set with set_config(..., false), it outlives the
    transaction, on a server connection that PgBouncer hands to the next client: who then
    sees that user's items without saying who they are. With true (security.py's form), it
    ends with the transaction."""
    user = await committed_user()
    async with engine.begin() as connection:  # as the administrator: row-level security aside
        await connection.execute(
            text("INSERT INTO items (name, price, owner_id) VALUES ('Lamp', 1, :o)"), {"o": user.id}
        )
    count, forget = (
        text("SELECT count(*) FROM items"),
        text("SELECT set_config('app.user_id', '', false)"),
    )
    seen = {}
    for is_local in (True, False):
        # On each server connection, a user: for the transaction, or for good.
        async with both_server_connections(pgbouncer_url) as clients:
            for client in clients:
                as_user = text("SELECT set_config('app.user_id', :id, :local)")
                await client.execute(as_user, {"id": str(user.id), "local": is_local})
            for client in clients:
                await client.commit()
        # Other clients, who say no user, on the same two server connections.
        async with both_server_connections(pgbouncer_url) as clients:
            seen[is_local] = [await client.scalar(count) for client in clients]
            for client in clients:  # and leave no user behind for the tests that follow
                await client.execute(forget)
            for client in clients:
                await client.commit()
    assert seen[True] == [0, 0]
    assert seen[False] == [1, 1]


# -- the app through PgBouncer ------------------------------------------------------------------


def pgbouncer_settings(settings: Any, pgbouncer_url: str) -> Any:
    return settings.model_copy(update={"database_url": SecretStr(pgbouncer_url)})


@pytest.mark.exercise("06.2")
async def test_a_transaction_on_another_server_connection_finds_its_statements(
    pkg: ModuleType, settings: Any, pgbouncer_url: str
) -> None:
    engine = pkg.db.create_engine(pgbouncer_settings(settings, pgbouncer_url))
    try:
        await on_another_server_connection(engine)
    except DBAPIError as error:
        pytest.fail(
            f"through PgBouncer: {str(error.orig).splitlines()[0]}. In transaction mode it "
            "gives each transaction any of its server connections, and passes no startup "
            "parameter but application_name and a few: keep no prepared statement, and send "
            "no other parameter (db.connect_args)"
        )
    finally:
        await engine.dispose()


async def prepared_statements(url: str) -> int:
    """The prepared statements kept by PgBouncer's server connections for this database and
    the app's role, all of them."""
    async with both_server_connections(url) as clients:
        query = text("SELECT count(*) FROM pg_prepared_statements")
        return sum([await client.scalar(query) for client in clients])


@pytest.mark.exercise("06.2")
async def test_no_prepared_statement_is_left_on_a_server_connection(
    pkg: ModuleType, settings: Any, pgbouncer_url: str
) -> None:
    """Four clients, fifty transactions each: nothing they prepared stays on a server
    connection. A statement that stays is one another client may collide with, and they pile
    up in the server's memory for as long as the server connection lives (an hour)."""
    before = await prepared_statements(pgbouncer_url)
    engine = pkg.db.create_engine(pgbouncer_settings(settings, pgbouncer_url))

    async def client() -> None:
        for n in range(50):
            async with engine.connect() as connection:
                await connection.execute(QUERY, {"n": n})
                await connection.commit()

    try:
        await asyncio.gather(*(client() for _ in range(4)))
    except DBAPIError as error:
        pytest.fail(f"through PgBouncer: {str(error.orig).splitlines()[0]}")
    finally:
        await engine.dispose()
    left = await prepared_statements(pgbouncer_url) - before
    if left:
        pytest.fail(
            f"{left} prepared statement(s) stayed on PgBouncer's server connections after 200 "
            "queries: named statements outlive their transaction (statement_cache_size: 0 "
            "makes asyncpg's statements unnamed)"
        )


@pytest.mark.exercise("06.2")
async def test_two_users_at_once_through_pgbouncer(
    pkg: ModuleType,
    settings: Any,
    pgbouncer_url: str,
    committed_user: Callable[..., Any],
    auth: Callable[[Any], dict[str, str]],
) -> None:
    """The whole app through PgBouncer: two users create, list, change and delete items at
    once, over many more client connections than PgBouncer has server connections. Every
    request succeeds, and each user sees their own items only."""
    users = [await committed_user(), await committed_user()]
    app = pkg.main.create_app(pgbouncer_settings(settings, pgbouncer_url))

    async def work(client: httpx.AsyncClient, user: Any) -> tuple[list[httpx.Response], set[int]]:
        """One user's requests, each answer kept; the ids of their list. No assert in here:
        every task runs to its end, so none is left running when the app shuts down."""
        headers, answers = auth(user), []
        for _ in range(5):
            item = {"name": f"Item {uuid.uuid4().hex[:8]}", "price": "1.50"}
            answers.append(created := await client.post("/items", json=item, headers=headers))
            if created.status_code != 201:
                return answers, set()
            path = f"/items/{created.json()['id']}"
            answers.append(await client.patch(path, json={"price": "2"}, headers=headers))
        answers.append(await client.delete(path, headers=headers))
        answers.append(listed := await client.get("/items", params={"limit": 100}, headers=headers))
        ids = (
            {item["id"] for item in listed.json()["items"]} if listed.status_code == 200 else set()
        )
        return answers, ids

    async with serve(app, raise_app_exceptions=False) as client:
        done = await asyncio.gather(*(work(client, user) for user in users * 4))
    failed = [a for answers, _ in done for a in answers if a.status_code >= 400]
    if failed:
        first = failed[0]
        pytest.fail(
            f"{len(failed)} request(s) through PgBouncer failed, the first "
            f"{first.request.method} {first.request.url.path}: {first.status_code}. PgBouncer "
            "gives each transaction any server connection: keep no prepared statement "
            "(db.connect_args)"
        )
    seen = [ids for _, ids in done]
    assert not (set().union(*seen[0::2]) & set().union(*seen[1::2])), "a user saw another's items"
