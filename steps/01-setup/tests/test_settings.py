"""Step 01 checks: settings come from the environment and `.env`, and keep the password secret."""

from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

SECRET = "s3cret-pw"


def test_database_url_comes_from_the_environment(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://app:{SECRET}@db.example:5433/shop")
    url = pkg.config.Settings().database_url.get_secret_value()
    assert url == f"postgresql+asyncpg://app:{SECRET}@db.example:5433/shop"


def test_dotenv_file_is_read_and_the_environment_wins(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test runs in an empty folder of its own: this `.env` is the only one.
    Path(".env").write_text(
        "DATABASE_URL=postgresql+asyncpg://from-dotenv@localhost/workshop\nCONNECT_TIMEOUT=2.5\n"
    )
    assert pkg.config.Settings().connect_timeout == 2.5
    assert "from-dotenv" in pkg.config.Settings().database_url.get_secret_value()
    monkeypatch.setenv("CONNECT_TIMEOUT", "1")
    assert pkg.config.Settings().connect_timeout == 1


def test_password_never_shows(pkg: ModuleType) -> None:
    settings = pkg.config.Settings(database_url=f"postgresql+asyncpg://app:{SECRET}@db/shop")
    for shown in (repr(settings), str(settings), settings.model_dump_json(), f"{settings}"):
        assert SECRET not in shown


@pytest.mark.exercise("01.1")
def test_pool_settings_have_defaults(pkg: ModuleType) -> None:
    settings = pkg.config.Settings(_env_file=None)
    assert (settings.pool_size, settings.max_overflow) == (20, 10)


@pytest.mark.exercise("01.1")
def test_pool_settings_come_from_the_environment(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_SIZE", "5")
    monkeypatch.setenv("MAX_OVERFLOW", "0")  # zero is allowed: never open more than the pool
    settings = pkg.config.Settings(_env_file=None)
    assert (settings.pool_size, settings.max_overflow) == (5, 0)


@pytest.mark.exercise("01.1")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POOL_SIZE", "0"),
        ("POOL_SIZE", "-3"),
        ("POOL_SIZE", "many"),
        ("POOL_SIZE", "2.5"),  # connections come whole
        ("MAX_OVERFLOW", "-1"),
        ("MAX_OVERFLOW", "0.5"),
    ],
)
def test_pool_settings_reject_bad_values(
    pkg: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        pkg.config.Settings(_env_file=None)
    assert caught.value.errors()[0]["loc"] == (name.lower(),)


@pytest.mark.exercise("01.2")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_database_url_uses_asyncpg(pkg: ModuleType, scheme: str) -> None:
    settings = pkg.config.Settings(database_url=f"{scheme}://app:{SECRET}@db:5432/shop")
    assert settings.database_url.get_secret_value() == (
        f"postgresql+asyncpg://app:{SECRET}@db:5432/shop"
    )
    # Already right: left as it is.
    right = f"postgresql+asyncpg://app:{SECRET}@db:5432/shop"
    assert pkg.config.Settings(database_url=right).database_url.get_secret_value() == right


@pytest.mark.exercise("01.2")
def test_database_url_keeps_every_other_part(pkg: ModuleType) -> None:
    # Passwords that look like a scheme, a port, a query: only the driver may change.
    for url in [
        "postgresql://app:postgresql://pw@db:5433/shop?application_name=api",
        "postgres://app:postgres://pw@db/shop",
        "postgresql+asyncpg://app:postgresql://pw@db/shop",
    ]:
        given = make_url(url)
        got = make_url(pkg.config.Settings(database_url=url).database_url.get_secret_value())
        assert got.drivername == "postgresql+asyncpg"
        assert got.password == given.password, f"the password changed, from {url}"
        assert got.set(drivername=given.drivername) == given


@pytest.mark.exercise("01.2")
@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:{SECRET}@db/shop",
        "sqlite:///shop.db",
        f"postgresql+psycopg2://app:{SECRET}@db/shop",
        f"app:{SECRET}@db/shop",
        f"postgresql://app:{SECRET}@db:54x2/shop",  # a typo in the port: not a URL
    ],
)
def test_database_url_must_be_postgresql(pkg: ModuleType, url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        pkg.config.Settings(database_url=url)
    message = str(caught.value)
    assert "database_url" in message
    assert SECRET not in message  # the error names the field, never the URL
    # ...and says what a good one looks like, whatever was wrong with this one.
    assert "postgresql" in message.split("database_url", 1)[1].lower()


@pytest.mark.exercise("01.2")
def test_database_url_is_checked_under_python_O(pkg: ModuleType) -> None:
    """`python -O` (or PYTHONOPTIMIZE=1, which some container images set) removes every
    `assert` from the code it runs: a check written as one lets mysql:// through, rewritten
    to asyncpg. Here config.py is compiled as -O compiles it."""
    path = Path(pkg.config.__file__)
    optimized = ModuleType(pkg.config.__name__)
    optimized.__package__ = pkg.__name__
    exec(compile(path.read_text(encoding="utf-8"), path, "exec", optimize=1), vars(optimized))
    for url in (f"mysql://app:{SECRET}@db/shop", f"postgresql+psycopg2://app:{SECRET}@db/shop"):
        try:
            optimized.Settings(database_url=url)
        except ValidationError:
            continue
        pytest.fail(
            f"Under python -O, {url.split(':')[0]}:// is accepted: asserts are removed there. "
            "Refuse it with `if ...: raise ValueError(...)`."
        )
