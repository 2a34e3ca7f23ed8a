"""Step 05 checks: five failed logins for an email from one address within a minute, then 429,
in every process; only attempts checked against a password count."""

import asyncio
import uuid
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import serve, serve_from

# Addresses kept for documentation (RFC 5737): an attacker's machine, and the owner's.
ATTACKER, OWNER = "203.0.113.7", "198.51.100.20"


@pytest.mark.exercise("05.1")
async def test_the_sixth_failed_login_is_429_in_another_app_process_too(
    pkg: ModuleType, settings: Any
) -> None:
    """Two apps, two pools: the count lives in PostgreSQL, so both see it."""
    first, second = pkg.main.create_app(settings), pkg.main.create_app(settings)
    form = {"username": f"target-{uuid.uuid4().hex[:8]}@example.com", "password": "guess 1234"}
    async with serve(first) as one, serve(second) as two:
        for attempt in range(settings.login_attempts):
            client = one if attempt % 2 else two
            assert (await client.post("/auth/token", data=form)).status_code == 401
        for client in (one, two):
            response = await client.post("/auth/token", data=form)
            assert response.status_code == 429
            assert response.headers["Retry-After"] == str(settings.login_window_seconds)
        # Another email is not limited.
        other = {**form, "username": f"other-{uuid.uuid4().hex[:8]}@example.com"}
        assert (await one.post("/auth/token", data=other)).status_code == 401


@pytest.mark.exercise("05.1")
async def test_a_burst_of_concurrent_guesses_cannot_slip_past(
    pkg: ModuleType, settings: Any
) -> None:
    form = {"username": f"burst-{uuid.uuid4().hex[:8]}@example.com", "password": "guess 1234"}
    async with serve(pkg.main.create_app(settings)) as client:
        assert (await client.post("/auth/token", data=form)).status_code == 401
        answers = await asyncio.gather(*(client.post("/auth/token", data=form) for _ in range(20)))
    codes = [r.status_code for r in answers]
    # At most 4 more reach the password check, however the 20 interleave; the rest are 429.
    assert set(codes) <= {401, 429} and codes.count(401) <= settings.login_attempts - 1


@pytest.mark.exercise("05.1")
async def test_the_owner_logs_in_from_elsewhere_while_an_attacker_is_locked_out(
    pkg: ModuleType, settings: Any
) -> None:
    """The limit counts per email and client address: one attacker cannot lock the owner out."""
    account = {
        "email": f"owner-{uuid.uuid4().hex[:8]}@example.com",
        "password": "the owner's long password",
    }
    wrong = {"username": account["email"], "password": "guess 1234"}
    right = {"username": account["email"], "password": account["password"]}
    async with serve_from(pkg.main.create_app(settings), ATTACKER, OWNER) as (attacker, owner):
        assert (await owner.post("/users", json=account)).status_code == 201
        for _ in range(settings.login_attempts):
            assert (await attacker.post("/auth/token", data=wrong)).status_code == 401
        for _ in range(3):  # the attacker keeps trying, and the owner logs in all the while
            assert (await attacker.post("/auth/token", data=wrong)).status_code == 429
            assert (await owner.post("/auth/token", data=right)).status_code == 200
        # The owner's success cleared the owner's count, not the attacker's.
        assert (await attacker.post("/auth/token", data=right)).status_code == 429


@pytest.mark.exercise("05.1")
async def test_a_lock_ends_after_the_window_however_often_it_is_knocked_on(
    pkg: ModuleType, settings: Any, engine: AsyncEngine
) -> None:
    """Attempts answered 429 are not written: an attacker who keeps knocking is let in again
    one window after their last attempt that was checked, not one window after the last 429."""
    email = f"locked-{uuid.uuid4().hex[:8]}@example.com"
    form = {"username": email, "password": "guess 1234"}

    async def age(seconds: int) -> None:
        """Time passes for this email's attempts, without a sleep: they move into the past."""
        sql = "UPDATE login_attempts SET attempted_at = attempted_at - make_interval(secs => :s)"
        async with engine.begin() as connection:
            await connection.execute(text(f"{sql} WHERE email = :e"), {"s": seconds, "e": email})

    async with serve_from(pkg.main.create_app(settings), ATTACKER) as (attacker,):
        for _ in range(settings.login_attempts):
            assert (await attacker.post("/auth/token", data=form)).status_code == 401
        await age(settings.login_window_seconds - 5)
        for _ in range(2 * settings.login_attempts):  # knocking until the window nearly ends
            assert (await attacker.post("/auth/token", data=form)).status_code == 429
        async with engine.connect() as connection:
            query = text("SELECT count(*) FROM login_attempts WHERE email = :e")
            assert await connection.scalar(query, {"e": email}) == settings.login_attempts
        await age(6)  # the checked attempts are a window old now; the knocks would not be
        assert (await attacker.post("/auth/token", data=form)).status_code == 401
