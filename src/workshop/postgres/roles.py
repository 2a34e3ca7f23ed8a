"""Least privilege (step 05): the owner and app roles, and the app role's password."""

from __future__ import annotations

import secrets

import asyncpg
from sqlalchemy.engine import URL

from .server import CONNECT_TIMEOUT, libpq_dsn

# The app role's password on the workshop's own servers: a development value, like the
# docker-compose one. Production takes it from a secret store.
# Where the app role's password is kept: a table of the server's `postgres` database that
# only administrators can read. Made at random the first time, never written in the repository.
PASSWORDS_TABLE = "workshop_role_passwords"
_passwords: dict[tuple[str | None, int | None, str | None, str], str] = {}
# Roles, and that table, belong to the whole server: their changes are made in the `postgres`
# database under this lock, one process at a time (an advisory lock is per database).
ROLES_LOCK = "SELECT pg_advisory_xact_lock(hashtext('workshop roles'))"


async def role_password(url: URL, role: str) -> str:
    """The password of a login role the workshop made on this server (made once, at random)."""
    key = (url.host or url.query.get("host"), url.port, url.username, role)  # type: ignore[arg-type]
    if key in _passwords:
        return _passwords[key]
    admin = url.set(database="postgres")
    connection = await asyncpg.connect(libpq_dsn(admin), timeout=CONNECT_TIMEOUT)
    try:
        async with connection.transaction():
            # One process at a time: two that REVOKE on the table at once change one catalog
            # row together, and one fails with "tuple concurrently updated".
            await connection.execute(ROLES_LOCK)
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {PASSWORDS_TABLE} (role name PRIMARY KEY, "
                "password text NOT NULL)"
            )
            await connection.execute(f"REVOKE ALL ON {PASSWORDS_TABLE} FROM PUBLIC")
            await connection.execute(
                f"INSERT INTO {PASSWORDS_TABLE} VALUES ($1, $2) ON CONFLICT DO NOTHING",
                role,
                secrets.token_urlsafe(24),
            )
            password = await connection.fetchval(
                f"SELECT password FROM {PASSWORDS_TABLE} WHERE role = $1", role
            )
    finally:
        await connection.close()
    _passwords[key] = password
    return password


async def provision_roles(url: URL, *, owner: str, app: str) -> None:
    """Least privilege (step 05): an owner role for the tables, a login role for the app.

    The owner role owns the database and what is in it (migrations SET ROLE to it); the app
    role may connect and, once the migrations grant it, read and write rows: no DDL.
    Connects to the database at `url` as an administrator.
    """
    # The password is this server's own (token_urlsafe: letters, digits, - and _ only),
    # set again each time: a role made with a password someone has read gets a new one.
    password = await role_password(url, app)
    # Roles belong to the whole server: under ROLES_LOCK, or two test processes that migrate
    # at once fail with "tuple concurrently updated".
    admin = await asyncpg.connect(libpq_dsn(url.set(database="postgres")), timeout=CONNECT_TIMEOUT)
    try:
        async with admin.transaction():
            await admin.execute(ROLES_LOCK)
            existing = set(await admin.fetchval("SELECT array_agg(rolname) FROM pg_roles"))
            if owner not in existing:
                await admin.execute(f'CREATE ROLE "{owner}" NOLOGIN')
            if app not in existing:
                await admin.execute(
                    f'CREATE ROLE "{app}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'
                )
            await admin.execute(f"ALTER ROLE \"{app}\" PASSWORD '{password}'")
    finally:
        await admin.close()
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        await connection.execute(f'ALTER DATABASE "{url.database}" OWNER TO "{owner}"')
        await connection.execute(f'GRANT CONNECT ON DATABASE "{url.database}" TO "{app}"')
        # Before PostgreSQL 15 everyone may create in the public schema: not the app.
        await connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # Tables an earlier step's migrations made (as the admin) pass to the owner role.
        await connection.execute(
            f"""
            DO $$ DECLARE t record; BEGIN
              FOR t IN SELECT c.relname FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                       AND pg_get_userbyid(c.relowner) <> '{owner}'
              LOOP EXECUTE format('ALTER TABLE public.%I OWNER TO "{owner}"', t.relname);
              END LOOP;
            END $$
            """
        )
    finally:
        await connection.close()
