"""Step 05 checks: a user reaches their own items and nobody else's (OWASP API1, BOLA)."""

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from workshop.testing import serve

Auth = Callable[[Any], dict[str, str]]


@pytest.mark.exercise("05.3")
@pytest.mark.exercise("05.4")
async def test_another_users_item_is_404_for_every_call(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    add_user: Any,
    add_item: Any,
    auth: Auth,
) -> None:
    alice, mallory = await add_user(), await add_user()
    item = await add_item(alice, name="Alice's lamp")
    for method, body in (("GET", None), ("PATCH", {"price": "0.01"}), ("DELETE", None)):
        response = await client.request(
            method, f"/items/{item.id}", json=body, headers=auth(mallory)
        )
        assert response.status_code == 404, method
        assert response.json()["detail"] == "Item not found."  # as if it did not exist
    page = (await client.get("/items", headers=auth(mallory))).json()
    assert item.id not in [i["id"] for i in page["items"]]
    # Untouched, and still Alice's.
    await session.refresh(item)
    assert (item.price, item.owner_id) == (1, alice.id)
    assert (await client.get(f"/items/{item.id}", headers=auth(alice))).status_code == 200


async def test_every_items_route_needs_a_token(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/1"),
        ("PATCH", "/items/1"),
        ("DELETE", "/items/1"),
        ("POST", "/items/bulk"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 401, (method, path)


@pytest.mark.exercise("05.3")
async def test_owner_id_cannot_be_set_or_changed_by_a_body(
    client: httpx.AsyncClient, add_user: Any, add_item: Any, auth: Auth
) -> None:
    alice, mallory = await add_user(), await add_user()
    body = {"name": "Mine", "price": "1", "owner_id": alice.id}
    assert (await client.post("/items", json=body, headers=auth(mallory))).status_code == 422
    item = await add_item(mallory)
    patch = await client.patch(
        f"/items/{item.id}", json={"owner_id": alice.id}, headers=auth(mallory)
    )
    assert patch.status_code == 422


@pytest.mark.exercise("05.3")
async def test_names_are_unique_per_owner(
    client: httpx.AsyncClient, add_user: Any, auth: Auth
) -> None:
    alice, bob = await add_user(), await add_user()
    body = {"name": "Lamp", "price": "1"}
    assert (await client.post("/items", json=body, headers=auth(alice))).status_code == 201
    assert (await client.post("/items", json=body, headers=auth(bob))).status_code == 201
    again = await client.post("/items", json=body, headers=auth(alice))
    assert again.status_code == 409 and again.json()["field"] == "name"


@pytest.mark.exercise("05.3")
@pytest.mark.exercise("05.4")
async def test_a_request_with_a_token_costs_one_query_and_no_hash(
    client: httpx.AsyncClient,
    add_user: Any,
    add_item: Any,
    auth: Auth,
    statements: list[str],
    hashes: list[str],
) -> None:
    user = await add_user()
    item = await add_item(user)
    statements.clear()
    response = await client.get(f"/items/{item.id}", headers=auth(user))
    assert response.status_code == 200
    assert statements == ["SELECT", "SELECT"]  # the user, then the item
    assert hashes == []


@pytest.mark.exercise("05.4")
async def test_crud_reaches_only_the_owners_items(
    pkg: ModuleType, session: AsyncSession, add_user: Any, add_item: Any
) -> None:
    """As the test's role, which row-level security does not bind: the queries' own WHERE."""
    alice, mallory = await add_user(), await add_user()
    item, other = await add_item(alice), await add_item(alice)
    assert await pkg.crud.get_item(session=session, item_id=item.id, owner=mallory) is None
    page = await pkg.crud.list_items(session=session, owner=mallory, limit=100)
    assert item.id not in [i.id for i in page.items]
    assert not await pkg.crud.delete_item(session=session, item_id=item.id, owner=mallory)
    # The owner gets exactly the item asked for, and can delete it.
    for mine in (item, other):
        found = await pkg.crud.get_item(session=session, item_id=mine.id, owner=alice)
        assert found is not None and found.id == mine.id
    page = await pkg.crud.list_items(session=session, owner=alice, limit=100)
    assert [i.id for i in page.items] == [item.id, other.id]
    assert await pkg.crud.delete_item(session=session, item_id=item.id, owner=alice)


@pytest.mark.exercise("05.4")
def test_the_owner_is_a_bound_parameter(pkg: ModuleType) -> None:
    """The owner's id travels beside the SQL, never inside it: one statement text for every
    user, prepared and cached once, with nothing in it to inject."""
    users = [pkg.models.User(id=7001), pkg.models.User(id=7002)]
    for statement in (select(pkg.models.Item), delete(pkg.models.Item)):
        owned = [pkg.crud.owned_by(statement, user).compile() for user in users]
        assert str(owned[0]) == str(owned[1]), "the SQL text changes with the owner"
        for user, compiled in zip(users, owned, strict=True):
            assert user.id in compiled.params.values()


# The whole step at work: it needs every exercise (the owner's filter, 05.4, or the policy, 05.5,
# keeps another user's item away), so its failure names the first one that is missing.
@pytest.mark.exercise("05.1")
@pytest.mark.exercise("05.2")
@pytest.mark.exercise("05.3")
@pytest.mark.exercise("05.4")
@pytest.mark.exercise("05.5")
async def test_the_whole_flow_as_the_apps_own_role(pkg: ModuleType, settings: Any) -> None:
    """No test session: the app's own pool, as workshop_app, with row-level security on."""
    assert not settings.database_url.get_secret_value().startswith("postgresql+asyncpg://postgres")
    async with serve(pkg.main.create_app(settings)) as client:
        tokens = []
        for _ in range(2):
            email = f"flow-{uuid.uuid4().hex[:8]}@example.com"
            body = {"email": email, "password": "a long enough password"}
            assert (await client.post("/users", json=body)).status_code == 201
            form = {"username": email, "password": body["password"]}
            token = (await client.post("/auth/token", data=form)).json()["access_token"]
            tokens.append({"Authorization": f"Bearer {token}"})
        alice, bob = tokens
        created = await client.post("/items", json={"name": "Lamp", "price": "2"}, headers=alice)
        assert created.status_code == 201
        item_id = created.json()["id"]
        assert (await client.get(f"/items/{item_id}", headers=alice)).status_code == 200
        page = (await client.get("/items", headers=alice)).json()
        assert [i["id"] for i in page["items"]] == [item_id]
        assert (await client.get(f"/items/{item_id}", headers=bob)).status_code == 404
        assert (await client.get("/items", headers=bob)).json()["items"] == []
        assert (await client.delete(f"/items/{item_id}", headers=alice)).status_code == 204
