"""Test databases kept ready between runs on the embedded server, and their fingerprints."""

from __future__ import annotations

import contextlib
import uuid

import asyncpg
from sqlalchemy.engine import URL

from .server import CONNECT_TIMEOUT, libpq_dsn

# -- databases kept ready between test runs (the embedded server only) ------------------------
#
# CREATE DATABASE costs 0.1 to 0.3 s, most of a check's set-up: a test run hands its databases
# back instead of dropping them, renamed `workshop_ready_<kind>_<id>`, and the next run of the
# same kind takes one. Only a database whose catalogue is again exactly as it was made (its
# fingerprint) goes back; any other is dropped. Renaming is atomic, so two runs never share one.
READY_DATABASE_PREFIX = "workshop_ready_"

# What a database holds beyond PostgreSQL's own catalogue: its schemas, relations, columns,
# constraints, indexes, policies, functions, types, triggers, extensions, privileges, owner and
# settings. Two databases with the same fingerprint are alike for any test. (No ACL at all
# means the owner's default privileges: compared as those, with acldefault.)
FINGERPRINT = """
WITH ours AS (SELECT oid FROM pg_namespace
              WHERE nspname NOT IN ('pg_catalog', 'information_schema')
              AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%')
SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) FROM (
  SELECT format('schema %s %s %s', nspname, nspowner::regrole,
      coalesce(nspacl, acldefault('n', nspowner))) FROM pg_namespace
    WHERE oid IN (SELECT oid FROM ours)
  UNION ALL SELECT format('relation %s %s %s %s %s %s', c.oid::regclass, c.relkind,
      c.relowner::regrole, c.relacl, c.relrowsecurity, c.relforcerowsecurity)
    FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('column %s.%s %s %s %s', a.attrelid::regclass, a.attname,
      format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace IN (SELECT oid FROM ours) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index
    WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ours))
  UNION ALL SELECT format('policy %s %s %s %s', polname, polrelid::regclass,
      pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) FROM pg_policy
  UNION ALL SELECT format('function %s %s', oid::regprocedure, md5(prosrc)) FROM pg_proc
    WHERE pronamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('type %s', oid::regtype) FROM pg_type
    WHERE typnamespace IN (SELECT oid FROM ours) AND typtype IN ('e', 'd', 'c', 'r', 'm')
  UNION ALL SELECT format('trigger %s %s', tgname, tgrelid::regclass) FROM pg_trigger
    WHERE NOT tgisinternal
  UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
  UNION ALL SELECT format('default privileges %s', defaclacl) FROM pg_default_acl
  UNION ALL SELECT format('database %s %s', datdba::regrole,
      coalesce(datacl, acldefault('d', datdba))) FROM pg_database
    WHERE datname = current_database()
  UNION ALL SELECT format('settings %s', setconfig) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) AS everything(x)
"""


async def fingerprint(url: URL) -> str:
    """The database's fingerprint (see FINGERPRINT), and its Alembic revision if it has one."""
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        return await _fingerprint(connection)
    finally:
        await connection.close()


async def _fingerprint(connection: asyncpg.Connection) -> str:
    found = await connection.fetchval(FINGERPRINT)
    if await connection.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
        revisions = await connection.fetch("TABLE public.alembic_version")
        found += ":" + ",".join(sorted(r[0] for r in revisions))
    return str(found)


async def take_ready_database(server: URL, kind: str, name: str) -> str | None:
    """Rename a ready database of this kind to `name`; its fingerprint, or None if none was."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        ready = await connection.fetch(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{kind}_",
        )
        for ready_name, expected in ready:
            try:
                await connection.execute(f'ALTER DATABASE "{ready_name}" RENAME TO "{name}"')
            except (asyncpg.InvalidCatalogNameError, asyncpg.ObjectInUseError):
                continue  # another run took it first
            return str(expected)
        return None
    finally:
        await connection.close()


async def _truncate(connection: asyncpg.Connection) -> None:
    """Remove every row a test run wrote (a fresh migrated database has none)."""
    tables = await connection.fetchval(
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    if tables:
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


async def _empty_public(connection: asyncpg.Connection) -> None:
    """Make the database again as CREATE DATABASE makes it (PostgreSQL 15 and later): `public`
    empty, as template1 has it; the database ours, with none of the privileges a step's
    migrations granted on it (step 05's roles)."""
    await connection.execute(
        "DROP SCHEMA IF EXISTS public CASCADE; "
        "CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
        "GRANT USAGE ON SCHEMA public TO PUBLIC; "
        "COMMENT ON SCHEMA public IS 'standard public schema'"
    )
    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER')
    grantees = await connection.fetch(
        "SELECT DISTINCT a.grantee::regrole::text FROM pg_database, aclexplode(datacl) a "
        "WHERE datname = current_database() AND a.grantee NOT IN (0, datdba)"
    )
    for (grantee,) in grantees:
        await connection.execute(f'REVOKE ALL ON DATABASE "{name}" FROM {grantee}')


async def hand_back_database(
    server: URL, name: str, kind: str, expected: str, *, keep: int, migrated: bool
) -> None:
    """Keep a test run's database ready for the next run of its kind, if it is again as it was
    made (`expected`: its fingerprint then) and fewer than `keep` of its kind are ready; else
    drop it. A migrated database loses its rows; an empty one (as CREATE DATABASE makes it)
    gets `public` anew."""
    try:
        connection = await asyncpg.connect(
            libpq_dsn(server.set(database=name)), timeout=CONNECT_TIMEOUT
        )
        try:
            if migrated:
                await _truncate(connection)
            alike = await _fingerprint(connection) == expected
            if not alike and not migrated:
                await _empty_public(connection)
                alike = await _fingerprint(connection) == expected
        finally:
            await connection.close()
    except asyncpg.PostgresError:
        alike = False
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        ready = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{kind}_",
        )
        if alike and ready < keep:
            ready_name = f"{READY_DATABASE_PREFIX}{kind}_{uuid.uuid4().hex[:6]}"
            # Its fingerprint travels with it, as the database's comment.
            await connection.execute(f"COMMENT ON DATABASE \"{name}\" IS '{expected}'")
            with contextlib.suppress(asyncpg.ObjectInUseError):
                # A connection a test closed may take a moment to end on the server.
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                await connection.execute(f'ALTER DATABASE "{name}" RENAME TO "{ready_name}"')
                return
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def drop_ready_databases(server: URL, prefix: str, but: set[str]) -> None:
    """Drop the ready databases whose kind starts with `prefix`, except the kinds in `but`."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{prefix}",
        )
        for (name,) in names:
            kind = name.removeprefix(READY_DATABASE_PREFIX).rsplit("_", 1)[0]
            if kind not in but:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
