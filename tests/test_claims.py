"""What the lessons say a library does, run against the versions this project installs: when
an upgrade changes the behaviour, the page that states it fails here first."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def test_plain_postgresql_url_names_no_async_driver() -> None:
    """01-setup: plain `postgresql://` leaves SQLAlchemy its default driver, psycopg (3) in
    SQLAlchemy 2.1, not the asyncpg the app needs."""
    assert make_url("postgresql://user@host/db").get_dialect().driver == "psycopg"
    assert make_url("postgresql+asyncpg://user@host/db").get_dialect().driver == "asyncpg"
