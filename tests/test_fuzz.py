"""Each step's reference against schemathesis with every check, from its own OpenAPI schema.

`st run --checks all`, the command anyone can run against a served step, with the settings of
tests/schemathesis.toml. Every answer must be no 5xx (nothing the schema lets through is then
refused by PostgreSQL) and as documented: status code, content type, headers, body. A request
the schema refuses must get a 4xx, and one it allows must be served: the documented schemas say
exactly what the API accepts, but for the two refusals JSON Schema has no word for
(tests/schemathesis_hooks.py says which, and why). A method a path does not have is a 405 whose
Allow header names every method the path has; a request without the token is a 401; and the
stateful phase follows the links schemathesis infers (POST /items, then that item's GET, PATCH
and DELETE).

Real servers on real PostgreSQL (tests/faults.py), step 05's with a real token. Bounded: a fixed
seed, FUZZ_EXAMPLES examples per operation and phase (default 60). For a longer run:

    FUZZ_EXAMPLES=500 uv run pytest tests/test_fuzz.py -m exhaustive -q -s
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from workshop.course import Course
from workshop.postgres import Server

from .faults import Served, serve_step

# Minutes of attack: CI runs them (`uv run pytest -m exhaustive`), the README's run does not.
pytestmark = pytest.mark.exhaustive

SEED = 20261205
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "60")
CONFIG = Path(__file__).with_name("schemathesis.toml")


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


def schemathesis_run(root: Path, base_url: str, headers: dict[str, str]) -> tuple[int, str]:
    """`st run` against the served schema, every check: its exit code and its report."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli"),
        *("--config-file", str(CONFIG), "--no-color"),
        *("run", f"{base_url}/openapi.json", "--checks", "all"),
        *("--seed", str(SEED), "--max-examples", EXAMPLES),
        *(arg for name, value in headers.items() for arg in ("--header", f"{name}: {value}")),
    ]
    # From the root: the configuration names its hooks file from there.
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
async def test_every_check_of_schemathesis_passes(
    course: Course, server: Server, number: str
) -> None:
    step = course.step(number)
    async with serve_step(step, server) as served:
        headers: dict[str, str] = {}
        if number == "03":  # no route writes: straight into the table
            await served.sql("INSERT INTO items (name, price) VALUES ('lamp', 1)")
        elif number == "04":
            async with httpx.AsyncClient(base_url=served.base_url) as client:
                await an_item(client)
        elif number == "05":
            headers, _ = await sign_in(served)
        code, report = await asyncio.to_thread(
            schemathesis_run, course.root, served.base_url, headers
        )
    if code != 0:  # pytest.fail: an assert's message would be cut after 8 lines
        log = "\n".join(line for line in served.log if "Error" in line)
        pytest.fail(f"{report}\nThe server's log:\n{log}", pytrace=False)
    print(f"{step.name}: {report.strip().splitlines()[-1]}")
