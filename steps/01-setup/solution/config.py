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
    # EXERCISE 01.1: declare POOL_SIZE (default 20, positive) and MAX_OVERFLOW (default 10, >= 0)
    # --8<-- [start:pool]
    # Step 02 sizes its connection pool with these: 20 kept open, 10 more under load.
    pool_size: PositiveInt = 20
    max_overflow: NonNegativeInt = 10
    # --8<-- [end:pool]
    # END EXERCISE
    # Seconds to wait for PostgreSQL to accept a connection before giving up.
    connect_timeout: PositiveFloat = 5.0

    @field_validator("database_url")
    @classmethod
    def use_asyncpg(cls, value: SecretStr) -> SecretStr:
        # EXERCISE 01.2: allow postgresql://, postgres://, postgresql+asyncpg://; return +asyncpg
        # --8<-- [start:validator]
        try:
            url = make_url(value.get_secret_value())
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ValueError("is not a URL: postgresql+asyncpg://user:pass@host/db") from None
        if url.drivername not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError("must be a PostgreSQL URL: postgresql+asyncpg://user:pass@host/db")
        # "+asyncpg" names the driver: plain postgresql:// leaves SQLAlchemy its default (psycopg).
        return SecretStr(url.set(drivername="postgresql+asyncpg").render_as_string(False))
        # --8<-- [end:validator]
        # END EXERCISE


# --8<-- [end:settings]


# --8<-- [start:dependency]
def get_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
# --8<-- [end:dependency]
