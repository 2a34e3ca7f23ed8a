"""Step 06: production. Several workers and one connection budget, PgBouncer in transaction
mode, liveness apart from readiness, bounded expensive work, migrations a live database survives."""
