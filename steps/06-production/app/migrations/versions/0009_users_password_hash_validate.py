"""users.password_hash, 2 of 3: the rows already there are filled, then the rule validated.

The rows are filled a thousand at a time, each batch its own transaction, so no row stays
locked for more than a moment; rows written meanwhile the trigger of 0008 fills.

VALIDATE CONSTRAINT then reads the whole table, under a SHARE UPDATE EXCLUSIVE lock: reads and
writes go on (other DDL and VACUUM wait). The NOT VALID of 0008 and this VALIDATE are in two
revisions, so two transactions: in one, 0008's ACCESS EXCLUSIVE lock would be held through
the scan, and every request on users would wait for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A DO block may COMMIT between its batches when it runs outside a transaction block.
BACKFILL = """
DO $$
DECLARE
  last_id integer := (SELECT max(id) FROM users);
  batch_start integer := 0;
BEGIN
  WHILE batch_start < last_id LOOP
    UPDATE users SET password_hash = hashed_password
    WHERE id > batch_start AND id <= batch_start + 1000 AND password_hash IS NULL;
    COMMIT;
    batch_start := batch_start + 1000;
  END LOOP;
END $$
"""


def upgrade() -> None:
    # Run again after a lock_timeout, it fills what is left and validates: no harm done.
    with op.get_context().autocommit_block():
        op.execute(BACKFILL)
    op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_password_hash_not_null")


def downgrade() -> None:
    # A validated rule holds as a NOT VALID one does, and 0008's downgrade drops it.
    pass
