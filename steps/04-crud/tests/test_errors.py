"""Step 04 checks: one error shape, honest codes, no internals, and a request id to trace."""

import asyncio
import json
import re
import uuid
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from workshop.testing import TcpProxy, serve

INTERNALS = re.compile(r"sqlalchemy|asyncpg|traceback|select |insert |uq_|ck_|pk_|psycopg", re.I)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The one error shape: status, detail, request_id (also in X-Request-ID), nothing inside."""
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert not INTERNALS.search(response.text), response.text
    return body


@pytest.mark.exercise("04.1")
@pytest.mark.exercise("04.6")
async def test_errors_share_one_shape_and_give_nothing_away(
    client: httpx.AsyncClient, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"name": f"Item {uuid.uuid4().hex}", "price": "1"}
    await client.post("/items", json=body)
    conflict = assert_problem(await client.post("/items", json=body), 409)
    assert_problem(await client.get("/items/2147483647"), 404)
    assert_problem(await client.post("/items", json={"name": "x"}), 422)
    assert_problem(await client.get("/items", params={"limit": 0}), 422)
    # The request id is in the server's log line too: a report can be traced.
    assert conflict["request_id"] in caplog.text


async def test_a_sane_request_id_from_the_client_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/0", headers={"X-Request-ID": "trace-42"})
    assert response.json()["request_id"] == "trace-42"
    response = await client.get("/items/0", headers={"X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["request_id"])


async def test_validation_errors_never_echo_the_input(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "Lamp", "price": "s3cret-value"})
    assert_problem(response, 422)
    assert "s3cret-value" not in response.text


async def test_a_bug_is_a_500_with_nothing_inside(
    pkg: ModuleType, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = pkg.main.create_app(settings)

    @app.get("/test/bug")
    async def bug() -> None:
        raise RuntimeError("secret detail of a bug")

    async with serve(app, raise_app_exceptions=False) as client:
        body = assert_problem(await client.get("/test/bug"), 500)

        # A file that is missing is a bug too, not a database that is down.
        @app.get("/test/file")
        async def file() -> None:
            with open("/no/such/file"):  # noqa: ASYNC230
                pass

        assert_problem(await client.get("/test/file"), 500)
    assert "secret detail of a bug" not in str(body)
    assert "secret detail of a bug" in caplog.text and body["request_id"] in caplog.text


@pytest.mark.exercise("04.6")
async def test_a_conflict_logs_no_value_of_the_row(
    client: httpx.AsyncClient, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The log line says what broke and where, never the client's values: logs are kept
    longer, copied further and read by more people than the table (PostgreSQL's DETAIL,
    "Key (name)=(...) already exists", and SQLAlchemy's message both quote them)."""
    private = f"Private {uuid.uuid4().hex}"
    body = {"name": private, "description": private, "price": "1"}
    assert (await client.post("/items", json=body)).status_code == 201
    conflict = assert_problem(await client.post("/items", json=body), 409)
    assert conflict["request_id"] in caplog.text
    if private in caplog.text:
        pytest.fail("the 409's log line holds the row's values: log the code and the field only")


@pytest.mark.exercise("04.6")
async def test_a_broken_check_or_not_null_is_422(
    pkg: ModuleType, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The schema stops these first; if one ever got through, the database's answer is a 422."""
    request = Request({"type": "http", "method": "POST", "path": "/items", "headers": []})
    private = f"Private {uuid.uuid4().hex}"
    # A negative price breaks ck_items_price_not_negative; a null name, the column's NOT NULL.
    broken = [
        ({"name": private, "price": Decimal("-1")}, "price"),
        ({"name": None, "description": private, "price": 1}, "name"),
    ]
    for fields, field in broken:
        try:
            async with session.begin_nested():
                session.add(pkg.models.Item(**fields))
        except exc.IntegrityError as error:
            response = await pkg.errors.integrity_error(request, error)
        assert response.status_code == 422
        assert json.loads(response.body)["field"] == field  # a field the client sends
        assert b"ck_items" not in response.body
    # PostgreSQL's DETAIL here is "Failing row contains (...)": every value of the row.
    if private in caplog.text:
        pytest.fail("the 422's log line holds the row's values: log the code and the field only")


@pytest.mark.exercise("04.6")
async def test_each_unique_rule_names_its_own_field(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    new_item: Any,
) -> None:
    """The field comes from the broken constraint, looked up in errors.CONSTRAINT_FIELDS."""
    # A second unique rule, for this test only (its transaction is rolled back).
    await session.execute(
        text("ALTER TABLE items ADD CONSTRAINT uq_items_description UNIQUE (description)")
    )
    await session.commit()
    description = f"Unique {uuid.uuid4().hex}"
    assert (await client.post("/items", json=new_item(description=description))).status_code == 201
    # A rule errors.py does not know yet: still a 409, naming no field rather than a wrong one.
    body = assert_problem(await client.post("/items", json=new_item(description=description)), 409)
    assert "field" not in body
    # Once the rule is in the map, the 409 names its field.
    monkeypatch.setitem(pkg.errors.CONSTRAINT_FIELDS, "uq_items_description", "description")
    body = assert_problem(await client.post("/items", json=new_item(description=description)), 409)
    assert body.get("field") == "description"


async def test_503_while_the_database_is_away_and_back_when_it_returns(
    pkg: ModuleType, settings: Any, database_url: str
) -> None:
    proxy = TcpProxy(make_url(database_url))
    await proxy.start()
    through_proxy = settings.model_copy(
        update={"database_url": pkg.config.Settings(database_url=proxy.url).database_url}
    )
    app = pkg.main.create_app(through_proxy)
    async with serve(app, raise_app_exceptions=False) as client:
        assert (await client.get("/items")).status_code == 200
        await proxy.stop()
        down = await client.get("/items")
        assert_problem(down, 503)
        assert down.headers["Retry-After"] == "1"
        assert (await client.get("/openapi.json")).status_code == 200  # the app is up
        await proxy.start()
        assert (await client.get("/items")).status_code == 200  # and recovers
    await proxy.stop()


@pytest.mark.exercise("04.2")
async def test_a_missing_database_is_not_a_missing_item(
    pkg: ModuleType, settings: Any, database_url: str
) -> None:
    """A 404 says "no such item": with the database away, nobody knows, and that is a 503."""
    async with TcpProxy(make_url(database_url)) as proxy:
        through_proxy = settings.model_copy(
            update={"database_url": pkg.config.Settings(database_url=proxy.url).database_url}
        )
        async with serve(pkg.main.create_app(through_proxy), raise_app_exceptions=False) as client:
            await proxy.stop()
            assert_problem(await client.get("/items/1"), 503)


@pytest.mark.exercise("04.1")
@pytest.mark.exercise("04.6")
async def test_twenty_concurrent_creates_of_one_name_give_one_201(
    pkg: ModuleType, settings: Any
) -> None:
    """No check-then-insert: the unique constraint decides, even under a race."""
    app = pkg.main.create_app(settings)  # the real pool: 20 sessions, 20 transactions
    body = {"name": f"Race {uuid.uuid4().hex}", "price": "1.00"}
    async with serve(app, raise_app_exceptions=False) as client:
        responses = await asyncio.gather(*(client.post("/items", json=body) for _ in range(20)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] + [409] * 19
        created = next(r for r in responses if r.status_code == 201).json()
        assert (await client.delete(f"/items/{created['id']}")).status_code == 204
