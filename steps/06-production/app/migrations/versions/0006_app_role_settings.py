"""The app role's session settings, on the role: statement_timeout, lock_timeout and
idle_in_transaction_session_timeout for every session the app opens, however it connects.

Step 05's app sent statement_timeout with each new connection (a startup parameter).
PgBouncer in transaction mode refuses that ("unsupported startup parameter"), and a server
connection it hands from client to client would not keep a client's settings anyway. A
setting on the role, PostgreSQL applies itself to each session that logs in as the role:
through PgBouncer, directly, in psql. The migrations log in as another user, so a long
VALIDATE or CREATE INDEX of theirs is not cut short by the app's statement_timeout.

IN DATABASE: the app role serves every database on the server (each step's, each test's);
these are its settings in this database only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The role the app connects as (alembic.ini's app_role).
APP_ROLE = context.config.get_main_option("app_role", "workshop_app")
SETTINGS = {
    # A statement running longer is cancelled: step 02's 15 s, which the app used to send.
    "statement_timeout": "15s",
    # A request that waits longer for a lock (a row another request is changing, a
    # migration's table) gets an error, answered 503, instead of holding its connection.
    "lock_timeout": "5s",
    # A transaction left open with nothing running is ended, and its locks and its server
    # connection (PgBouncer's, which other clients share) with it.
    "idle_in_transaction_session_timeout": "15s",
}


def for_the_app_role(clause: str) -> str:
    """`ALTER ROLE <app> IN DATABASE <this one> <clause>`. The database's name only SQL knows
    (`--sql` prints the script before any database is there): format() puts it in."""
    return (
        f"DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I {clause}', "
        f"'{APP_ROLE}', current_database()); END $$"
    )


def upgrade() -> None:
    # Only who manages roles may change a role's settings: the administrator who runs the
    # migrations (and made the roles), not the tables' owner. For this transaction only.
    op.execute("SET LOCAL ROLE NONE")
    for name, value in SETTINGS.items():
        op.execute(for_the_app_role(f"SET {name} = ''{value}''"))


def downgrade() -> None:
    op.execute("SET LOCAL ROLE NONE")
    for name in SETTINGS:
        op.execute(for_the_app_role(f"RESET {name}"))
