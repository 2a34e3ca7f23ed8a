"""Step 05 checks: a database migrated before the login limit knew addresses (revision 0003)
is brought to the models' schema by the next revision, with its rows, and back again."""

import uuid
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from workshop.postgres.migrations import Migrations

# The revision a database was at before login_attempts had an address.
BEFORE_ADDRESSES = "0003"


async def fetch(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def login_attempts_schema(url: str) -> dict[str, Any]:
    """login_attempts' address column (type, NOT NULL, default) and its indexes."""
    columns = await fetch(
        url,
        "SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d "
        "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = 'login_attempts'::regclass AND a.attname = 'address' "
        "AND NOT a.attisdropped",
    )
    indexes = await fetch(
        url, "SELECT indexname FROM pg_indexes WHERE tablename = 'login_attempts'"
    )
    return {
        "address": columns[0] if columns else None,
        "indexes": {name for (name,) in indexes},
    }


async def test_a_database_at_0003_with_attempts_upgrades_to_the_models_schema_and_back(
    pkg: ModuleType, migrations: Migrations, empty_database_url: str
) -> None:
    """Every database a learner, an instructor or the benchmark migrated before the address
    existed is at 0003: `upgrade head` must add it, keep the rows, and leave what the app's
    queries need (as the app's role); `downgrade 0003` must give the old table back."""
    url = empty_database_url
    await migrations.upgrade(url, BEFORE_ADDRESSES)
    email = f"old-{uuid.uuid4().hex[:8]}@example.com"
    await fetch(url, "INSERT INTO login_attempts (email) VALUES (:e), (:e)", e=email)

    await migrations.upgrade(url)
    assert await login_attempts_schema(url) == {
        # NOT NULL with no default left: the model's column, which the app always fills.
        "address": ("character varying(64)", True, None),
        "indexes": {"pk_login_attempts", "ix_login_attempts_email_address_at"},
    }
    assert await fetch(url, "SELECT address FROM login_attempts WHERE email = :e", e=email) == [
        ("",),
        ("",),
    ]
    # Autogenerate finds nothing between the models and the migrated database.
    assert await migrations.differences(url) == []

    # What the login limit runs, through the model, as the app's own role.
    engine = create_async_engine(migrations.app_url(url))
    try:
        async with AsyncSession(engine) as session:
            session.add(pkg.models.LoginAttempt(email=email, address="198.51.100.20"))
            await session.commit()
            attempt = pkg.models.LoginAttempt
            since = datetime.now(UTC) - timedelta(minutes=1)
            counted = await session.scalar(
                select(func.count())
                .select_from(attempt)
                .where(
                    attempt.email == email,
                    attempt.address == "198.51.100.20",
                    attempt.attempted_at > since,
                )
            )
            assert counted == 1
    finally:
        await engine.dispose()

    await migrations.downgrade(url, BEFORE_ADDRESSES)
    assert await login_attempts_schema(url) == {
        "address": None,
        "indexes": {"pk_login_attempts", "ix_login_attempts_email_at"},
    }
    assert len(await fetch(url, "SELECT id FROM login_attempts WHERE email = :e", e=email)) == 3
    await migrations.upgrade(url)  # and up again
    assert (await login_attempts_schema(url))["address"] == ("character varying(64)", True, None)
