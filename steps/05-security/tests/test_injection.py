"""Step 05 checks: SQL injection payloads are only data (bound parameters, never SQL text)."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

PAYLOADS = [
    "' OR '1'='1",
    "'; DROP TABLE items; --",
    "1); DELETE FROM users; --",
    "\\' UNION SELECT hashed_password FROM users --",
    "lamp' AND pg_sleep(2) IS NULL --",
]


async def counts(pkg: ModuleType, session: AsyncSession) -> tuple[int, int]:
    items = await session.scalar(select(func.count()).select_from(pkg.models.Item))
    users = await session.scalar(select(func.count()).select_from(pkg.models.User))
    return items, users


@pytest.mark.exercise("05.3")
async def test_payloads_in_search_and_filters_are_just_words(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    add_user: Any,
    add_item: Any,
    auth: Callable[[Any], dict[str, str]],
) -> None:
    user = await add_user()
    await add_item(user, name="Lamp")
    before = await counts(pkg, session)
    for payload in PAYLOADS:
        for params in ({"q": payload}, {"attr": f"color:{payload}"}, {"attr": f"{payload}:1"}):
            response = await client.get("/items", params=params, headers=auth(user))
            assert response.status_code == 200, (params, response.text)
            assert response.json()["items"] == []
    rows = await counts(pkg, session)
    assert rows == before, (
        f"(items, users) {rows} after, {before} before: it wrote where it should not"
    )


@pytest.mark.exercise("05.1")
async def test_payloads_in_the_login_email_are_just_a_wrong_email(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, add_user: Any
) -> None:
    await add_user()
    before = await counts(pkg, session)
    for payload in PAYLOADS:
        data = {"username": payload, "password": "whatever it is"}
        assert (await client.post("/auth/token", data=data)).status_code == 401
    rows = await counts(pkg, session)
    assert rows == before, (
        f"(items, users) {rows} after, {before} before: it wrote where it should not"
    )
