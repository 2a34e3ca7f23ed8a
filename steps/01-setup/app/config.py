"""Settings: every knob of the app, read from the environment and `.env`."""

from typing import Annotated

from fastapi import Depends, Request
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


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
    # END EXERCISE
    # Seconds to wait for PostgreSQL to accept a connection before giving up.
    connect_timeout: PositiveFloat = 5.0

    @field_validator("database_url")
    @classmethod
    def use_asyncpg(cls, value: SecretStr) -> SecretStr:
        # EXERCISE 01.2: allow postgresql://, postgres://, postgresql+asyncpg://; return +asyncpg
        return value
        # END EXERCISE


def get_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
