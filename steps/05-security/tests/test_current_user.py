"""Step 05 checks: the current user costs one query, tells row-level security who is asking,
for this transaction only, and a bug in it is a bug (500), not a bad token (401)."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workshop.testing import serve

Auth = Callable[[Any], dict[str, str]]
WHO = text("SELECT current_setting('app.user_id', true)")  # whom row-level security sees


@pytest.mark.exercise("05.3")
async def test_the_current_user_costs_one_query_and_no_hash(
    client: httpx.AsyncClient,
    add_user: Any,
    auth: Auth,
    statements: list[str],
    hashes: list[str],
) -> None:
    """Every request with a token pays for its user: one SELECT, and never a password hash."""
    user = await add_user()
    statements.clear()
    response = await client.get("/users/me", headers=auth(user))
    assert response.status_code == 200 and response.json()["id"] == user.id
    assert statements == ["SELECT"]
    assert hashes == []


@pytest.mark.exercise("05.3")
async def test_the_request_tells_postgresql_who_is_asking(
    client: httpx.AsyncClient, session: AsyncSession, add_user: Any, auth: Auth
) -> None:
    """Row-level security (05.5) reads app.user_id: the current user sets it in the request's
    transaction. (The test's session shares that transaction, so it sees the setting.)"""
    for user in (await add_user(), await add_user()):
        assert (await client.get("/users/me", headers=auth(user))).status_code == 200
        if await session.scalar(WHO) != str(user.id):
            pytest.fail("app.user_id is not the current user's id after the request")


@pytest.mark.exercise("05.3")
async def test_the_user_does_not_outlive_the_request_on_a_pooled_connection(
    pkg: ModuleType, settings: Any, committed_user: Any, auth: Auth
) -> None:
    """One pooled connection serves request after request. A user set for the whole session
    (set_config(..., false)) would still be there for the next request, which may have no
    user or another one: set it for the transaction only (set_config(..., true))."""
    one_connection = settings.model_copy(update={"pool_size": 1, "max_overflow": 0})
    app = pkg.main.create_app(one_connection)
    user = await committed_user()
    async with serve(app) as client:
        # A request that commits: a rollback would undo even a session-wide setting.
        item = {"name": "Lamp", "price": "1"}
        assert (await client.post("/items", json=item, headers=auth(user))).status_code == 201
        # The same connection, back from the pool, as the next request would get it.
        async with app.state.engine.connect() as connection:
            left_behind = await connection.scalar(WHO)
    if left_behind not in (None, ""):
        pytest.fail("app.user_id outlived the request on the pooled connection")


@pytest.mark.exercise("05.3")
async def test_a_bug_is_a_500_not_a_401_or_a_503(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    add_user: Any,
    auth: Auth,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a bad token is a 401. A bug caught by `except Exception` and answered 401 sends
    the client to log in again and hides the bug from the log; answered 503, it blames a
    database that is up."""
    user = await add_user()

    # A bug in decode_token (here: a TypeError it should never raise). A server answers it
    # 500; the test's client raises it instead, so the test sees which error it was.
    def broken(*args: Any, **kwargs: Any) -> int:
        raise TypeError("a bug in decode_token")

    with monkeypatch.context() as patched:
        patched.setattr(pkg.security, "decode_token", broken)
        with pytest.raises(TypeError, match="a bug in decode_token"):
            await client.get("/users/me", headers=auth(user))
    # A database that answers, but has no users table where the app looks (say, its
    # migrations were not run): a bug too. search_path is the test transaction's only.
    await session.execute(text("SET LOCAL search_path TO pg_catalog"))
    response = await client.get("/users/me", headers=auth(user))
    assert response.status_code == 500, "no users table: a bug, not a bad token or an outage"
