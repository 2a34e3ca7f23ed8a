"""Step 02 checks: the pool's settings come from the environment, with safe defaults."""

from types import ModuleType

import pytest
from pydantic import ValidationError


def test_pool_settings_have_defaults(pkg: ModuleType) -> None:
    settings = pkg.config.Settings(_env_file=None)
    assert (settings.pool_size, settings.max_overflow) == (20, 10)
    assert (settings.pool_timeout, settings.pool_recycle, settings.pool_pre_ping) == (
        10.0,
        1800,
        False,
    )
    assert (settings.connect_timeout, settings.statement_timeout) == (5.0, 15.0)
    assert settings.app_name == "workshop"


def test_pool_settings_come_from_the_environment(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("STATEMENT_TIMEOUT", "0.5")
    monkeypatch.setenv("POOL_PRE_PING", "true")
    monkeypatch.setenv("APP_NAME", "shop-api")
    settings = pkg.config.Settings(_env_file=None)
    assert (settings.pool_timeout, settings.statement_timeout) == (2.5, 0.5)
    assert (settings.pool_pre_ping, settings.app_name) == (True, "shop-api")


@pytest.mark.parametrize("name", ["POOL_TIMEOUT", "POOL_RECYCLE", "STATEMENT_TIMEOUT"])
def test_timeouts_must_be_positive(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValidationError):
        pkg.config.Settings(_env_file=None)
