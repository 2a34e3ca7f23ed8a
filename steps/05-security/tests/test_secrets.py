"""Step 05 checks: no start without a real secret key, and the key never shows."""

from types import ModuleType
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr


@pytest.mark.parametrize("secret", [None, "short", "change-me", "x" * 31])
async def test_the_app_refuses_to_start_without_a_real_secret(
    pkg: ModuleType, settings: Any, secret: str | None
) -> None:
    weak = settings.model_copy(update={"secret_key": SecretStr(secret) if secret else None})
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set") as refused:
        async with LifespanManager(pkg.main.create_app(weak)):
            pass
    if secret:
        assert secret not in str(refused.value)


async def test_dev_mode_starts_with_a_key_of_its_own(pkg: ModuleType, settings: Any) -> None:
    dev = settings.model_copy(update={"secret_key": None, "dev_mode": True})
    app = pkg.main.create_app(dev)
    async with LifespanManager(app):
        assert len(app.state.signing_key) >= 32


def test_the_secret_never_shows_in_the_settings(settings: Any) -> None:
    secret = settings.secret_key.get_secret_value()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert secret not in shown
