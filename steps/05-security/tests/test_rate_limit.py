"""Step 05 checks: five failed logins for an email within a minute, then 429, in every process."""

import asyncio
import uuid
from types import ModuleType
from typing import Any

import pytest

from workshop.testing import serve


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
