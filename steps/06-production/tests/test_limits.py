"""Step 06 checks (06.4): logins and sign-ups are limited per client address as well as per
email and address, in PostgreSQL, so every worker counts the same; and login and sign-up still
do what step 05's did."""

import asyncio
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import serve, serve_from


def guess(email: str | None = None) -> dict[str, str]:
    email = email or f"guess-{uuid.uuid4().hex[:8]}@example.com"
    return {"username": email, "password": "guess 1234"}


def account() -> dict[str, str]:
    return {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": "a long passphrase"}


async def status(response: Any) -> int:
    return (await response).status_code


@pytest.mark.exercise("06.4")
async def test_one_address_cannot_try_many_emails(
    pkg: ModuleType, settings: Any, address: Callable[[], str]
) -> None:
    """Credential stuffing: one client, a list of emails, one guess each. The per-email limit
    never fires; the per-address one does, and only for that address."""
    limited = settings.model_copy(update={"address_attempts": 6})
    async with serve_from(pkg.main.create_app(limited), attacker := address(), address()) as (
        one,
        other,
    ):
        for _ in range(6):
            assert await status(one.post("/auth/token", data=guess())) == 401
        seventh = await one.post("/auth/token", data=guess())
        elsewhere = await other.post("/auth/token", data=guess())
    if seventh.status_code != 429:
        pytest.fail(
            f"the 7th login from {attacker}, each for another email, answered "
            f"{seventh.status_code} with ADDRESS_ATTEMPTS 6: count the address's attempts "
            "too, whatever their email (recent_attempts)"
        )
    assert seventh.headers["Retry-After"] == str(settings.login_window_seconds)
    assert elsewhere.status_code == 401, "another address is not limited by this one"


@pytest.mark.exercise("06.4")
async def test_sign_ups_count_against_the_address(
    pkg: ModuleType, settings: Any, address: Callable[[], str]
) -> None:
    """A sign-up costs a hash as a login does: three from one address, and the fourth sign-up
    and any login from it are refused; another address signs up."""
    limited = settings.model_copy(update={"address_attempts": 3})
    async with serve_from(pkg.main.create_app(limited), address(), address()) as (one, other):
        for _ in range(3):
            assert await status(one.post("/users", json=account())) == 201
        fourth = await one.post("/users", json=account())
        login = await one.post("/auth/token", data=guess())
        elsewhere = await other.post("/users", json=account())
    if fourth.status_code != 429:
        pytest.fail(
            f"a 4th sign-up from one address answered {fourth.status_code} with "
            "ADDRESS_ATTEMPTS 3: sign-ups count against their address (recent_attempts)"
        )
    assert fourth.headers["Retry-After"] == str(settings.login_window_seconds)
    assert login.status_code == 429, "a login from that address counts with its sign-ups"
    assert elsewhere.status_code == 201


@pytest.mark.exercise("06.4")
async def test_the_address_limit_holds_across_workers(
    pkg: ModuleType, settings: Any, address: Callable[[], str]
) -> None:
    """Two apps, two pools, as two workers: the count is in PostgreSQL, so both see it."""
    limited = settings.model_copy(update={"address_attempts": 4})
    attacker = address()
    first, second = pkg.main.create_app(limited), pkg.main.create_app(limited)
    async with serve_from(first, attacker) as (one,), serve_from(second, attacker) as (two,):
        for n in range(4):
            assert await status((one if n % 2 else two).post("/auth/token", data=guess())) == 401
        codes = [await status(c.post("/auth/token", data=guess())) for c in (one, two)]
    if codes != [429, 429]:
        pytest.fail(
            f"after 4 logins from one address spread over two workers, each worker answered "
            f"{codes}: count in PostgreSQL (login_attempts), not in a worker's memory"
        )


@pytest.mark.exercise("06.4")
async def test_the_address_limit_counts_only_the_window(
    pkg: ModuleType, settings: Any, engine: AsyncEngine, address: Callable[[], str]
) -> None:
    """Attempts older than LOGIN_WINDOW_SECONDS no longer count: the address is let in again."""
    limited = settings.model_copy(update={"address_attempts": 3})
    attacker = address()
    attempts = pkg.models.LoginAttempt.__table__
    async with serve_from(pkg.main.create_app(limited), attacker) as (client,):
        for _ in range(3):
            assert await status(client.post("/auth/token", data=guess())) == 401
        assert await status(client.post("/auth/token", data=guess())) == 429
        # A window passes for this address's attempts, without a sleep.
        older = attempts.c.attempted_at - text(f"interval '{settings.login_window_seconds} s'")
        async with engine.begin() as connection:
            aged = update(attempts).where(attempts.c.address == attacker).values(attempted_at=older)
            await connection.execute(aged)
        later = await client.post("/auth/token", data=guess())
    if later.status_code != 401:
        pytest.fail(
            f"a window after its last attempts, the address still gets {later.status_code}: "
            "count only the attempts since `since`, for the address as for the email"
        )


# -- what step 05's login and sign-up did, still done -------------------------------------------


@pytest.mark.exercise("06.4")
async def test_the_email_limit_still_locks_an_attacker_and_not_the_owner(
    pkg: ModuleType, settings: Any, address: Callable[[], str]
) -> None:
    """Step 05's limit: five failed logins for an email from an address, then 429 there; the
    owner, from elsewhere, still logs in, and a success clears the owner's count only."""
    owner = account()
    wrong = guess(owner["email"])
    right = {"username": owner["email"], "password": owner["password"]}
    app = pkg.main.create_app(settings)
    async with serve_from(app, address(), address()) as (attacker, own):
        assert await status(own.post("/users", json=owner)) == 201
        for _ in range(settings.login_attempts):
            assert await status(attacker.post("/auth/token", data=wrong)) == 401
        for _ in range(2):
            assert await status(attacker.post("/auth/token", data=wrong)) == 429
            assert await status(own.post("/auth/token", data=right)) == 200
        assert await status(attacker.post("/auth/token", data=right)) == 429


@pytest.mark.exercise("06.4")
async def test_a_burst_of_guesses_cannot_slip_past(pkg: ModuleType, settings: Any) -> None:
    """Twenty at once for one email: at most four more reach a password check, however they
    interleave; past the Argon2 slots, the others are 503s or 429s."""
    form = guess()
    async with serve(pkg.main.create_app(settings)) as client:
        assert await status(client.post("/auth/token", data=form)) == 401
        answers = await asyncio.gather(*(client.post("/auth/token", data=form) for _ in range(20)))
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {401, 429, 503} and codes.count(401) <= settings.login_attempts - 1


STATES = text("SELECT state FROM pg_stat_activity WHERE application_name = :name")


@pytest.mark.exercise("06.4")
async def test_no_connection_is_held_while_argon2_works(
    pkg: ModuleType,
    settings: Any,
    engine: AsyncEngine,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sign-up records its attempt and commits before it hashes; the login reads the
    user and commits before it checks: no pooled connection waits "idle in transaction"
    through Argon2's tenth of a second."""
    app_name = f"argon2-{uuid.uuid4().hex[:8]}"
    app = pkg.main.create_app(settings.model_copy(update={"app_name": app_name}))
    seen: list[tuple[str, int, list[str]]] = []

    def watch(module: Any, name: str) -> None:
        real = getattr(module, name)

        async def watched(*args: Any) -> Any:
            async with engine.connect() as connection:  # the app's connections, from outside
                states = (await connection.scalars(STATES, {"name": app_name})).all()
            seen.append((name, app.state.engine.pool.checkedout(), list(states)))
            return await real(*args)

        monkeypatch.setattr(module, name, watched)

    watch(pkg.routes.users, "hash_password")
    watch(pkg.routes.auth, "verify_password")
    new = {"email": f"held-{uuid.uuid4().hex[:8]}@example.com", "password": password}
    async with serve(app) as client:
        assert await status(client.post("/users", json=new)) == 201
        right = {"username": new["email"], "password": password}
        assert await status(client.post("/auth/token", data=right)) == 200
    assert [name for name, *_ in seen] == ["hash_password", "verify_password"]
    for name, checked_out, states in seen:
        if checked_out or "idle in transaction" in states:
            pytest.fail(
                f"during {name}, the app held {checked_out} connection(s) of its pool (server "
                f"side: {states}): commit before Argon2 runs"
            )


@pytest.mark.exercise("06.4")
async def test_sign_up_and_login_answer_as_in_step_05(
    client: httpx.AsyncClient, password: str
) -> None:
    new = {"email": f"Same-{uuid.uuid4().hex[:8]}@Example.com", "password": password}
    created = await client.post("/users", json=new)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == new["email"].lower()
    taken = await client.post("/users", json={**new, "email": new["email"].upper()})
    assert taken.status_code == 409
    token = await client.post("/auth/token", data={"username": new["email"], "password": password})
    assert token.status_code == 200
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert me.json()["email"] == new["email"].lower()
