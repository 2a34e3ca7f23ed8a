"""Step 03: SQLAlchemy models and Pydantic schemas, kept apart, and migrated with Alembic."""
