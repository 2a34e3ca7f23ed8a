"""Step 05 checks: passwords are stored as Argon2id hashes, and logins give nothing away."""

import time
import uuid
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.mark.exercise("05.1")
async def test_hash_is_argon2id_and_verifies(pkg: ModuleType, password: str) -> None:
    hashed = await pkg.security.hash_password(password)
    assert hashed.startswith("$argon2id$") and password not in hashed
    assert hashed != await pkg.security.hash_password(password)  # salted: never the same
    assert await pkg.security.verify_password(password, hashed)
    assert not await pkg.security.verify_password(password + "!", hashed)


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
    client: httpx.AsyncClient, add_user: Any, password: str
) -> None:
    """Timing must not tell which emails have accounts. Measured, relative: no clock bound."""
    user = await add_user()

    async def timed(email: str) -> float:
        started = time.perf_counter()
        await client.post("/auth/token", data={"username": email, "password": password})
        return time.perf_counter() - started

    known, unknown = [], []
    for n in range(6):
        known.append(await timed(user.email))
        unknown.append(await timed(f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.com"))
    # The fastest run of each is the least disturbed by whatever else the machine does.
    # Without the dummy hash check an unknown email answers in a fraction of the time.
    assert min(unknown) > 0.75 * min(known)
