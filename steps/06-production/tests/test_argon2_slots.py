"""Step 06 checks (06.4): at most ARGON2_CONCURRENCY Argon2 hashes and checks at once in a
worker; past that, a 503 with Retry-After at once, never a line that grows."""

import asyncio
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest

from workshop.testing import eventually, serve_from


def login(client: httpx.AsyncClient) -> Any:
    """A login for an email nobody has: the app still checks a password (the dummy hash)."""
    form = {"username": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "guess 1234"}
    return asyncio.ensure_future(client.post("/auth/token", data=form))


def sign_up(client: httpx.AsyncClient) -> Any:
    account = {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": "a long passphrase"}
    return asyncio.ensure_future(client.post("/users", json=account))


@pytest.mark.exercise("06.4")
@pytest.mark.parametrize("slots", [1, 3])
async def test_past_the_slots_a_request_is_answered_503_at_once(
    pkg: ModuleType, settings: Any, gate: Any, address: Callable[[], str], slots: int
) -> None:
    """Argon2 is held at its gate (conftest.py) while `slots + 2` logins and sign-ups arrive:
    `slots` of them reach Argon2, the two others are answered 503 with Retry-After while the
    gate is still shut: they wait for nothing. Then every slot comes back."""
    app = pkg.main.create_app(settings.model_copy(update={"argon2_concurrency": slots}))
    async with serve_from(app, address()) as (client,):
        requests = [login(client) if n % 2 else sign_up(client) for n in range(slots + 2)]
        refused = await eventually(
            lambda: asyncio.sleep(0, [r for r in requests if r.done()]),
            # Or every request answered already (a starter's stub answers at once).
            lambda done: len(done) == len(requests) or (len(done) >= 2 and gate.running >= slots),
            within=10,
        )
        running = gate.running
        gate.open.set()
        answers = await asyncio.gather(*requests)
        # The slots came back: as many again are served, none refused.
        again = await asyncio.gather(*(login(client) for _ in range(slots)))
    # Shown with `pytest -s`: what the bound held to under this flood.
    print(
        f"{slots + 2} logins and sign-ups at once, ARGON2_CONCURRENCY {slots}: at most "
        f"{gate.most} Argon2 operation(s) at once, {len(refused)} answered before any ran"
    )
    if len(refused) < 2:
        pytest.fail(
            f"with {slots} slot(s) taken, {slots + 2 - len(refused)} requests waited instead "
            "of being answered: when every slot is taken, raise BUSY (503) at once"
        )
    if running != slots or gate.most != slots:
        pytest.fail(
            f"{gate.most} Argon2 operation(s) ran at once with ARGON2_CONCURRENCY {slots}: "
            "take one of state.argon2_slots (the worker's), or refuse"
        )
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(503) == 2 and set(codes) <= {201, 401, 503}, codes
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["status"] == 503
            if not answer.headers.get("Retry-After", "").isdigit():
                pytest.fail("the 503 has no Retry-After: say when to try again (BUSY does)")
    assert [a.status_code for a in again] == [401] * slots, "a slot was never given back"
