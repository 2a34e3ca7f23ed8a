"""Step 05 checks: the app's role reads and writes rows, and can do nothing else."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from workshop.postgres import libpq_dsn


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(libpq_dsn(make_url(url)))


@pytest.fixture
async def as_app(app_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the app's own role, the one its settings use."""
    connection = await connect(app_database_url)
    yield connection
    await connection.close()


async def test_the_app_is_no_superuser_and_owns_nothing(
    as_app: asyncpg.Connection, database_url: str
) -> None:
    assert await as_app.fetchval("SELECT current_user") != make_url(database_url).username
    role = await as_app.fetchrow(
        "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    assert tuple(role) == (False, False, False)
    owned = await as_app.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
    )
    assert owned == []


@pytest.mark.parametrize(
    "ddl",
    [
        "DROP TABLE items",
        "CREATE TABLE stolen (id int)",
        "ALTER TABLE items ADD COLUMN extra int",
        "TRUNCATE items",
        "ALTER TABLE items DISABLE ROW LEVEL SECURITY",
    ],
)
async def test_the_app_cannot_change_the_schema(as_app: asyncpg.Connection, ddl: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_app.execute(ddl)


async def test_the_app_can_read_and_write_rows(as_app: asyncpg.Connection) -> None:
    email = f"role-{uuid.uuid4().hex[:8]}@example.com"
    transaction = as_app.transaction()
    await transaction.start()
    try:
        await as_app.execute("INSERT INTO users (email, hashed_password) VALUES ($1, 'x')", email)
        await as_app.execute("UPDATE users SET is_active = false WHERE email = $1", email)
        assert await as_app.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 1
        await as_app.execute("DELETE FROM users WHERE email = $1", email)
    finally:
        await transaction.rollback()


@pytest.mark.exercise("05.5")
async def test_row_level_security_shows_a_session_only_its_users_items(
    as_app: asyncpg.Connection, database_url: str
) -> None:
    """Even a query without `WHERE owner_id = ...` sees only the current user's items."""
    admin = await connect(database_url)  # sets up the rows, as the owner would
    try:
        ids = []
        for _ in range(2):
            email = f"rls-{uuid.uuid4().hex[:8]}@example.com"
            user = await admin.fetchval(
                "INSERT INTO users (email, hashed_password) VALUES ($1, 'x') RETURNING id", email
            )
            for n in range(2 + len(ids)):  # 2 items for the first user, 3 for the second
                name = f"rls {len(ids)}.{n}"  # no two alike: a name is unique per owner
                await admin.execute(
                    "INSERT INTO items (name, price, owner_id) VALUES ($1, 1, $2)", name, user
                )
            ids.append(user)
        first, second = ids
        async with as_app.transaction():
            assert await as_app.fetchval("SELECT count(*) FROM items") == 0  # nobody: nothing
            await as_app.execute("SELECT set_config('app.user_id', $1, true)", str(first))
            owners = await as_app.fetch("SELECT DISTINCT owner_id FROM items")
            assert [row["owner_id"] for row in owners] == [first]
            assert await as_app.fetchval("SELECT count(*) FROM items") == 2
            # Writing another user's item is refused too.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with as_app.transaction():
                    await as_app.execute(
                        "INSERT INTO items (name, price, owner_id) VALUES ('x', 1, $1)", second
                    )
            updated = await as_app.execute("UPDATE items SET price = 0 WHERE owner_id = $1", second)
            assert updated == "UPDATE 0"
            # A DELETE that forgets its WHERE reaches the user's own items, and only those.
            forgot = as_app.transaction()
            await forgot.start()
            deleted = await as_app.execute("DELETE FROM items")
            await forgot.rollback()
            if deleted != "DELETE 2":
                pytest.fail(f"as the first user (2 items), DELETE FROM items gave {deleted}")
            # Nor may a user hand their items to another: an UPDATE's new row is checked too.
            try:
                async with as_app.transaction():
                    moved = await as_app.execute("UPDATE items SET owner_id = $1", second)
            except asyncpg.InsufficientPrivilegeError:
                pass
            else:
                pytest.fail(
                    f"as the first user, UPDATE items SET owner_id = <second user> gave {moved}: "
                    "a policy's WITH CHECK must keep every written row the current user's"
                )
            # Their own items, the user may write: insert, update, delete.
            await as_app.execute(
                "INSERT INTO items (name, price, owner_id) VALUES ('mine', 1, $1)", first
            )
            assert await as_app.execute("UPDATE items SET price = 2") == "UPDATE 3"
            assert await as_app.execute("DELETE FROM items WHERE name = 'mine'") == "DELETE 1"
        # The transaction is over, and app.user_id with it: on the same connection, the
        # setting is now empty (no longer unset), and an empty one still means nobody.
        assert await as_app.fetchval("SELECT count(*) FROM items") == 0
    finally:
        try:
            await admin.execute("DELETE FROM users WHERE id = ANY($1)", ids)  # cascades to items
        finally:
            await admin.close()


@pytest.mark.exercise("05.5")
async def test_the_policy_finds_the_rows_through_the_owner_index(
    as_app: asyncpg.Connection,
) -> None:
    """A query that leans on the policy alone, with no WHERE of its own, must reach the user's
    rows through an index on owner_id, not by reading every user's. Compared as text
    (owner_id::text = the setting), the rows are the same, but no index on owner_id serves it."""
    async with as_app.transaction():
        await as_app.execute("SELECT set_config('app.user_id', '7', true)")
        # The planner's last resort only: it reads the whole table when no index can serve.
        await as_app.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in await as_app.fetch("EXPLAIN SELECT * FROM items"))
    if "Seq Scan" in plan:
        pytest.fail(
            "row-level security reads every row of items to find one user's: compare owner_id "
            f"itself with the setting, as an integer. The plan:\n{plan}"
        )
