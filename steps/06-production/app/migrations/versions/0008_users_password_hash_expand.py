"""users.hashed_password becomes users.password_hash, by expand and contract: 1 of 3, expand.

ALTER TABLE ... RENAME COLUMN is instant, and breaks every app still using the old name the
moment it commits: in a rolling deploy, the old version's sign-ups and logins fail until its
last process is replaced. Expand and contract instead, over three revisions:

- 0008 (this one) adds password_hash beside hashed_password, a trigger that keeps the two
  equal whichever one a write sets, and the rule that password_hash is never NULL, NOT VALID:
  binding on every row written from now on, not checked yet on the rows already there
  (checking them would scan the table under this migration's ACCESS EXCLUSIVE lock).
- 0009 fills password_hash in the rows already there and validates the rule, while writes go on.
- 0010, once no process of step 05's app is left, drops hashed_password and the trigger.

From 0009 to 0010, step 05's app (hashed_password) and step 06's (password_hash) both work on
the same rows. The model keeps its attribute's name: only the column's changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Step 05's app writes hashed_password, step 06's password_hash: the one a write sets is
# copied to the other before the row is stored (BEFORE: so the row's NOT NULLs hold).
SYNC = """
CREATE FUNCTION users_password_hash_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
    NEW.hashed_password := NEW.password_hash;
  ELSE
    -- An INSERT of either app, an UPDATE of hashed_password (or of neither: a row not
    -- filled yet gets its password_hash, as the NOT VALID check asks of every write).
    NEW.password_hash := coalesce(NEW.hashed_password, NEW.password_hash);
    NEW.hashed_password := NEW.password_hash;
  END IF;
  RETURN NEW;
END $$
"""
TRIGGER = (
    "CREATE TRIGGER users_password_hash_sync BEFORE INSERT OR UPDATE ON users "
    "FOR EACH ROW EXECUTE FUNCTION users_password_hash_sync()"
)


def upgrade() -> None:
    # Each statement takes the table's ACCESS EXCLUSIVE lock for a moment (no default, no
    # rewrite, no scan), waited for at most lock_timeout.
    op.add_column("users", sa.Column("password_hash", sa.String(length=255), nullable=True))
    op.execute(SYNC)
    op.execute(TRIGGER)
    op.create_check_constraint(
        op.f("ck_users_password_hash_not_null"),
        "users",
        "password_hash IS NOT NULL",
        postgresql_not_valid=True,
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_password_hash_not_null"), "users", type_="check")
    op.execute("DROP TRIGGER users_password_hash_sync ON users")
    op.execute("DROP FUNCTION users_password_hash_sync()")
    op.drop_column("users", "password_hash")
