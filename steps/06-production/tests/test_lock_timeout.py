"""Step 06 checks: a request that waits past lock_timeout (set on the app's role, migration
0006) for a lock, as behind a migration that holds the table, is answered 503 with
Retry-After: the statement was not run, and may well run in a moment."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from workshop.testing import serve


async def test_waiting_past_lock_timeout_is_a_503(
    pkg: ModuleType,
    settings: Any,
    engine: AsyncEngine,
    app_database_url: str,
    committed_user: Callable[..., Any],
    auth: Callable[[Any], dict[str, str]],
) -> None:
    user = await committed_user()
    quote = engine.dialect.identifier_preparer.quote
    url = make_url(app_database_url)
    alter = f"ALTER ROLE {quote(url.username)} IN DATABASE {quote(url.database)} SET lock_timeout"
    as_the_app = create_async_engine(app_database_url)
    async with as_the_app.connect() as connection:
        kept = await connection.scalar(text("SHOW lock_timeout"))  # the role's, from 0006
    await as_the_app.dispose()
    async with engine.begin() as connection:  # shorter for this test: 5 s is a long wait
        await connection.execute(text(f"{alter} = '200ms'"))
    try:
        async with engine.connect() as migration, serve(pkg.main.create_app(settings)) as client:
            await migration.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            response = await client.get("/items", headers=auth(user))
            await migration.rollback()
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"{alter} = '{kept}'"))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
