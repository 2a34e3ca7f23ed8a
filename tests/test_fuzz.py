"""Each step's reference, fuzzed from its own OpenAPI schema with schemathesis.

Every operation of the schema gets requests the schema accepts (positive) and, where it has
parameters or a body, requests it does not (negative). Every answer must be no 5xx (so nothing
the schema lets through is then refused by PostgreSQL), a documented status code and content
type, a body that matches its documented schema, and a 4xx for every request the schema
refuses. A 422 for a request the schema accepts is allowed: JSON Schema cannot say "no NUL
character" or "a cursor this API made", and the app refuses those before PostgreSQL would.
(Many generated prices do not fit Numeric(10, 2): `with_prices` makes them fit.)

Real servers on real PostgreSQL (tests/faults.py), step 05's with a real token. Bounded: a fixed
seed (derandomized), FUZZ_EXAMPLES examples per operation and mode (default 20), no shrinking
(each failure comes with the curl command that reproduces it). For a longer run:

    FUZZ_EXAMPLES=500 uv run pytest tests/test_fuzz.py -q -s
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from workshop.course import Course
from workshop.database import Server

from .faults import Served, serve_step

# Minutes of attack: CI runs them (`uv run pytest -m exhaustive`), the README's run does not.
pytestmark = pytest.mark.exhaustive

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
CONFORMS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
CHECKS = {
    GenerationMode.POSITIVE: CONFORMS,
    GenerationMode.NEGATIVE: [*CONFORMS, negative_data_rejection],
}
# Explicit, so no schemathesis.toml lying around changes the run. Any 4xx refuses a request
# (the default list leaves out 413, the answer to a body too large).
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4XX", "5XX"]}}}
)
# A fixed seed, and only generation: the same requests on every run, in bounded time.
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)


async def sign_in(served: Served) -> tuple[dict[str, str], int]:
    """Step 05: a user's bearer token, and the id of an item of theirs."""
    account = {"email": "fuzz@example.com", "password": "a long enough password"}
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        assert (await client.post("/users", json=account)).status_code == 201
        form = {"username": account["email"], "password": account["password"]}
        token = (await client.post("/auth/token", data=form)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        return headers, await an_item(client, headers)


async def an_item(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> int:
    """An item that exists, so that requests for /items/{item_id} reach a real row."""
    item = {"name": "fuzzed lamp", "price": "12.50", "attributes": {"color": "red"}}
    response = await client.post("/items", json=item, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


PRICE = re.compile(r"[0-9]{1,8}(\.[0-9]{1,2})?")


def with_prices(case: schemathesis.Case) -> schemathesis.Case:
    """The schema documents a price as a string of digits, of any length; Numeric(10, 2) takes
    those with at most 8 before the point and 2 after, so many generated items would stop at a
    422. Each price that does not fit becomes one that does (a string, still within the
    schema), so the rest of the item reaches PostgreSQL."""
    items = case.body if isinstance(case.body, list) else [case.body]
    for item in items:
        if isinstance(item, dict) and "price" in item:
            text = str(item["price"])
            if not PRICE.fullmatch(text):
                item["price"] = f"{len(text) % 10**8}.{sum(map(ord, text)) % 100:02d}"
    return case


def has_input(operation: Any) -> bool:
    """Whether the operation takes parameters or a body: only those have negative requests."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def property_test(strategy: Any, check: Callable[[schemathesis.Case], None]) -> Callable[[], None]:
    """A hypothesis test that sends each case of the strategy and checks its answer."""

    @BOUNDED
    @given(case=strategy)
    def each_case(case: schemathesis.Case) -> None:
        check(case)

    return each_case


def fuzz(
    base_url: str, headers: dict[str, str], item_id: int | None
) -> tuple[Counter[int], list[str]]:
    """Fuzz every operation of the served schema; the statuses answered, and what failed."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)
    answered: Counter[int] = Counter()
    failures: list[str] = []
    with requests.Session() as session:

        def send(case: schemathesis.Case, checks: list[Callable[..., Any]]) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            answered[response.status_code] += 1
            case.validate_response(response, checks=checks, headers=headers)

        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in GenerationMode:
                positive = mode is GenerationMode.POSITIVE
                if not (positive or has_input(operation)):
                    continue
                # Valid PATCHes change an existing item, so their bodies reach its row (and the
                # table's rules); other requests get generated ids, which often are 1, the
                # first item's (and, when negative, ids of the wrong type or out of range).
                keep = item_id and positive and operation.method == "patch"
                path = {"item_id": item_id} if keep else None
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)
                if positive:
                    strategy = strategy.map(with_prices)
                try:
                    property_test(strategy, lambda case, c=CHECKS[mode]: send(case, c))()
                except (BaseExceptionGroup, requests.RequestException) as failure:
                    failures.append(f"{operation.label} ({mode.value}): {failure}")
    return answered, failures


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
async def test_every_operation_answers_as_its_schema_says(
    course: Course, server: Server, number: str
) -> None:
    step = course.step(number)
    async with serve_step(step, server) as served:
        headers: dict[str, str] = {}
        item_id = None
        if number == "03":  # no route writes: straight into the table
            rows = await served.sql(
                "INSERT INTO items (name, price) VALUES ('lamp', 1) RETURNING id"
            )
            item_id = rows[0]["id"]
        elif number == "04":
            async with httpx.AsyncClient(base_url=served.base_url) as client:
                item_id = await an_item(client)
        elif number == "05":
            headers, item_id = await sign_in(served)
        answered, failures = await asyncio.to_thread(fuzz, served.base_url, headers, item_id)
    if failures:  # pytest.fail: an assert's message would be cut after 8 lines
        log = "\n".join(line for line in served.log if "Error" in line)
        pytest.fail("\n\n".join(failures) + f"\n\nThe server's log:\n{log}", pytrace=False)
    print(f"{step.name}: {answered.total()} requests, answered {dict(sorted(answered.items()))}")
