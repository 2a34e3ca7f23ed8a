"""Step 06 checks: the app's timeouts come from its role now (migration 0006), not from the
connection's startup parameters, and are still answered as step 05 answered them. A request
behind a lock (a migration holding the table) that waits past lock_timeout is a 503 with
Retry-After: the statement was not run, and may well run in a moment. One cancelled by
statement_timeout is a 504, as before."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from workshop.testing import serve


@pytest.mark.parametrize(("setting", "status"), [("lock_timeout", 503), ("statement_timeout", 504)])
async def test_a_request_behind_a_lock_is_answered_by_the_roles_timeouts(
    pkg: ModuleType,
    settings: Any,
    engine: AsyncEngine,
    app_database_url: str,
    committed_user: Callable[..., Any],
    auth: Callable[[Any], dict[str, str]],
    setting: str,
    status: int,
) -> None:
    user = await committed_user()
    quote = engine.dialect.identifier_preparer.quote
    url = make_url(app_database_url)
    alter = f"ALTER ROLE {quote(url.username)} IN DATABASE {quote(url.database)} SET {setting}"
    as_the_app = create_async_engine(app_database_url)
    async with as_the_app.connect() as connection:
        kept = await connection.scalar(text(f"SHOW {setting}"))  # the role's, from 0006
    await as_the_app.dispose()
    assert kept not in {"0", None}, f"the app's role has no {setting}"
    async with engine.begin() as connection:  # shorter for this test than the other one
        await connection.execute(text(f"{alter} = '200ms'"))
    try:
        async with engine.connect() as migration, serve(pkg.main.create_app(settings)) as client:
            await migration.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            response = await client.get("/items", headers=auth(user))
            await migration.rollback()
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"{alter} = '{kept}'"))
    assert response.status_code == status, response.text
    assert ("Retry-After" in response.headers) == (status == 503)
