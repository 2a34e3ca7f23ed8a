"""An index on login_attempts (address, attempted_at), built while logins go on.

Step 06 limits logins and sign-ups per client address too: on each one the app counts the
address's recent attempts, `WHERE address = $1 AND attempted_at > $2`, which the index on
(email, address, attempted_at) cannot serve.

A plain CREATE INDEX, as step 05's 0005, holds a SHARE lock on the table while it builds:
every INSERT, UPDATE and DELETE of login_attempts waits until it is done (so every login),
seconds to minutes on a table this size. CREATE INDEX CONCURRENTLY lets them go on: it builds
in two passes and waits for the transactions that were writing when it started, and for any
older than its last pass, and it cannot run inside a transaction. A concurrent build that
fails half-way (cancelled, say) leaves an INVALID index behind: queries do not use it, writes
still maintain it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_login_attempts_address_at"


def lock_timeout() -> str:
    """The migrations' bound on a lock: alembic.ini's, which env.py sets for the session."""
    return context.config.get_main_option("lock_timeout", "2s")


def upgrade() -> None:
    # EXERCISE 06.5: build the index without making the table's writers wait
    pass
    # END EXERCISE


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX, table_name="login_attempts", postgresql_concurrently=True, if_exists=True
        )
