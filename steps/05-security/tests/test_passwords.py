"""Step 05 checks: passwords are stored as Argon2id hashes, and logins give nothing away."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import argon2
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.mark.exercise("05.1")
async def test_hash_is_argon2id_and_verifies(pkg: ModuleType, password: str) -> None:
    """A passphrase, every character of which counts: bcrypt reads only a password's first 72
    bytes, Argon2 reads all of it, and so must the app. Cut at 72, a passphrase's end is never
    checked, and whoever knows its start gets in."""
    passphrase = f"{password}, " * 3 + "then the moon"  # 103 characters
    hashed = await pkg.security.hash_password(passphrase)
    assert hashed.startswith("$argon2id$") and password not in hashed
    assert hashed != await pkg.security.hash_password(passphrase)  # salted: never the same
    assert await pkg.security.verify_password(passphrase, hashed)
    assert not await pkg.security.verify_password(password, hashed)
    if await pkg.security.verify_password(passphrase.replace("moon", "sun"), hashed):
        pytest.fail(
            "a password that differs from the right one only after its 72nd character "
            "verifies: hash and check every character, not password[:72]"
        )


@pytest.mark.exercise("05.1")
async def test_the_hash_is_real_argon2id_at_full_cost(pkg: ModuleType, password: str) -> None:
    """Checked by argon2-cffi itself, not by the app: a look-alike string is not a hash."""
    hashed = await pkg.security.hash_password(password)
    try:
        params = argon2.extract_parameters(hashed)
        argon2.PasswordHasher().verify(hashed, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        pytest.fail("argon2-cffi does not verify the password against this hash")
    assert params.type is argon2.Type.ID
    # OWASP's minimum for Argon2id is 19 MiB and 2 passes (pwdlib's default: 64 MiB, 3);
    # cheaper settings make a stolen hash cheaper to guess.
    if params.memory_cost < 19 * 1024 or params.time_cost < 2:
        pytest.fail("the Argon2id cost is below OWASP's minimum: use password_hash's defaults")


@pytest.mark.exercise("05.1")
async def test_every_check_runs_argon2(
    pkg: ModuleType, password: str, hashed_password: str, hashes: list[str]
) -> None:
    """A cache of answers (functools.lru_cache) would keep every password it was given in
    memory, in plain text, for a memory dump or a debugger to read, and answer a guess it has
    seen for free. Each check is Argon2's work, every time."""
    for _ in range(2):
        assert await pkg.security.verify_password(password, hashed_password)
    if hashes.count("verify") != 2:
        pytest.fail(
            f"two checks of the same password ran Argon2 {hashes.count('verify')} time(s), "
            "not 2: check with password_hash.verify each time, and cache nothing"
        )


@pytest.mark.exercise("05.1")
async def test_no_log_holds_a_password(client: httpx.AsyncClient, logs: Callable[[], str]) -> None:
    """Logs are read by more people than the database, and kept longer: a password (right or
    wrong, a wrong one is often another account's) never goes into one. One is hashed at sign
    up, another checked at a login."""
    email = f"logs-{uuid.uuid4().hex[:8]}@example.com"
    right, wrong = f"right {uuid.uuid4().hex}", f"wrong {uuid.uuid4().hex}"
    signed_up = await client.post("/users", json={"email": email, "password": right})
    assert signed_up.status_code == 201
    form = {"username": email, "password": wrong}
    assert (await client.post("/auth/token", data=form)).status_code == 401
    written = logs()
    for secret in (right, wrong):
        if secret in written:
            pytest.fail("a password was logged (or printed): never write one anywhere")


async def ticks_during(work: Callable[[], Awaitable[Any]]) -> int:
    """How many times another task ran on the event loop while `work()` was awaited."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)  # the ticker starts
    before = ticks
    try:
        await work()
        return ticks - before
    finally:
        ticker.cancel()


@pytest.mark.exercise("05.1")
async def test_hashing_leaves_the_event_loop_free(pkg: ModuleType, password: str) -> None:
    """Argon2 holds a CPU for a tenth of a second: run on the event loop, it would stop every
    other request for that long. In a thread, the loop keeps running other tasks meanwhile."""
    hashed = await pkg.security.hash_password(password)
    for name, work in (
        ("hash_password", lambda: pkg.security.hash_password(password)),
        ("verify_password", lambda: pkg.security.verify_password(password, hashed)),
    ):
        # Counted, not timed: on the event loop, no other task runs at all until it is done.
        if await ticks_during(work) < 3:
            pytest.fail(f"{name} blocks the event loop: run the work in a thread")


@pytest.mark.exercise("05.1")
async def test_sign_up_stores_a_hash_never_the_password(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, password: str
) -> None:
    email = f"New-{uuid.uuid4().hex[:8]}@Example.com"
    response = await client.post("/users", json={"email": email, "password": password})
    assert response.status_code == 201
    assert set(response.json()) == {"id", "email", "created_at"}  # no hash, no password
    assert response.json()["email"] == email.lower()
    stored = await session.scalar(select(pkg.models.User.hashed_password))
    assert stored.startswith("$argon2id$") and password not in stored
    # The same address in other letters is the same account.
    again = await client.post("/users", json={"email": email.upper(), "password": password})
    assert again.status_code == 409 and again.json()["field"] == "email"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "password": "tiny-pw1"},
        {"email": "a@example.com", "password": "x" * 129},
        {"email": "not an email", "password": "long enough password"},
        {"email": "a@example.com", "password": "long enough password", "is_active": False},
    ],
)
async def test_sign_up_refuses_bad_input_before_hashing(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/users", json=body)
    assert response.status_code == 422
    assert body["password"] not in response.text


@pytest.mark.exercise("05.1")
async def test_a_wrong_password_and_an_unknown_email_get_the_same_401(
    client: httpx.AsyncClient, add_user: Any, password: str
) -> None:
    user = await add_user()
    wrong = await client.post("/auth/token", data={"username": user.email, "password": "nope"})
    unknown = await client.post(
        "/auth/token", data={"username": "nobody@example.com", "password": password}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.json()["detail"] == unknown.json()["detail"]


@pytest.mark.exercise("05.1")
async def test_an_unknown_email_costs_as_much_as_a_known_one(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    add_user: Any,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
    hashes: list[str],
) -> None:
    """Timing must not tell which emails have accounts: every login checks one password hash,
    against the dummy hash when there is no such (active) account, and Argon2 does the work
    each time. Counted, not timed."""
    checks: list[str] = []
    real = pkg.routes.auth.verify_password

    async def counted(given: str, hashed: str) -> bool:
        checks.append(hashed)
        return await real(given, hashed)

    monkeypatch.setattr(pkg.routes.auth, "verify_password", counted)
    user, disabled = await add_user(), await add_user(is_active=False)
    for email, given in (
        (user.email, "a wrong password"),
        (f"nobody-{uuid.uuid4().hex[:6]}@example.com", password),
        (disabled.email, password),
    ):
        checks.clear()
        hashes.clear()
        await client.post("/auth/token", data={"username": email, "password": given})
        assert len(checks) == 1, email
        # An Argon2id hash each time, at the same cost as the users' own.
        assert cost(checks[0]) == cost(user.hashed_password)
        if hashes != ["verify"]:
            pytest.fail(
                f"a login for {email} ran Argon2 {hashes.count('verify')} time(s): "
                "verify_password must check every hash it is given, the dummy one too"
            )


def cost(hashed: str) -> tuple[Any, ...]:
    params = argon2.extract_parameters(hashed)
    return params.type, params.memory_cost, params.time_cost, params.parallelism
