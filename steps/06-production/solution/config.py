"""Settings: every knob of the app, read from the environment and `.env`."""

from typing import Annotated

from fastapi import Depends, Request
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


# --8<-- [start:settings]
class Settings(BaseSettings):
    # Environment variables win over `.env`; DATABASE_URL fills `database_url`.
    # hide_input_in_errors: a rejected URL may hold a password, so errors never echo it.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Where the database is, as a SQLAlchemy URL. A SecretStr, because the URL carries the
    # password: it prints as '**********'.
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres:postgres@localhost:5432/workshop"
    )
    # --8<-- [start:pool]
    # The pool keeps 20 connections open and opens 10 more under load (see step 02's page).
    pool_size: PositiveInt = 20
    max_overflow: NonNegativeInt = 10
    # Seconds a request waits for a free connection before it is answered 503.
    pool_timeout: PositiveFloat = 10.0
    # Seconds after which a connection is replaced: firewalls and proxies drop idle ones.
    pool_recycle: PositiveInt = 1800
    # Test a connection before lending it. Off: on asyncpg the test costs three round trips
    # per request, and without it a connection found dead makes SQLAlchemy replace every
    # connection of the pool as old as it (see step 02's page).
    pool_pre_ping: bool = False
    # Seconds to wait for PostgreSQL to accept a connection before giving up.
    connect_timeout: PositiveFloat = 5.0
    # How the app's connections are named in pg_stat_activity.
    app_name: str = "workshop"
    # --8<-- [start:production]
    # Worker processes serving the app. uvicorn's --workers reads the same variable
    # (WEB_CONCURRENCY), so the start-up budget check counts the workers there are.
    web_concurrency: PositiveInt = 2
    # Connections PostgreSQL must keep free for what is not this app's pools: migrations,
    # psql, monitoring. The budget check refuses to start when the workers would take them.
    connection_headroom: NonNegativeInt = 10
    # Connections each worker keeps apart for /readyz, so that a probe never waits behind
    # requests for the pool.
    readiness_connections: PositiveInt = 1
    # Seconds /readyz (and the start-up budget check) wait for PostgreSQL before answering
    # 503: below a probe's own timeout (one second in Kubernetes).
    readiness_timeout: PositiveFloat = 0.5
    # Argon2 hashes and checks running at once in each worker; past that, 503 at once. Each
    # takes 64 MiB and a core for about a tenth of a second.
    argon2_concurrency: PositiveInt = 2
    # --8<-- [end:production]
    # --8<-- [start:security]
    # Signs the tokens. From the environment only, 32+ random characters: the app refuses
    # to start without one, unless DEV_MODE=true.
    secret_key: SecretStr | None = None
    # On your own machine only: start without SECRET_KEY, on a random key that lives as long
    # as the app (a restart logs everyone out).
    dev_mode: bool = False
    # Minutes a token is valid: a stolen one is of use for that long at most.
    access_token_minutes: PositiveInt = 30
    # The API the tokens are for (their `aud` claim): a token made for another is refused.
    token_audience: str = "workshop-api"
    # After this many failed logins for one email from one address within the window, 429.
    login_attempts: PositiveInt = 5
    login_window_seconds: PositiveInt = 60
    # After this many logins and sign-ups from one client address within that window, whatever
    # their emails, 429: one client can neither try many accounts nor open many.
    address_attempts: PositiveInt = 20
    # --8<-- [end:security]
    # --8<-- [end:pool]

    @field_validator("database_url")
    @classmethod
    def use_asyncpg(cls, value: SecretStr) -> SecretStr:
        # Accept postgresql://, postgres:// and postgresql+asyncpg://; return +asyncpg (step 01).
        try:
            url = make_url(value.get_secret_value())
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ValueError("is not a URL: postgresql+asyncpg://user:pass@host/db") from None
        if url.drivername not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError("must be a PostgreSQL URL: postgresql+asyncpg://user:pass@host/db")
        # "+asyncpg" names the driver: plain postgresql:// leaves SQLAlchemy its default (psycopg).
        return SecretStr(url.set(drivername="postgresql+asyncpg").render_as_string(False))


# --8<-- [end:settings]


def get_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
