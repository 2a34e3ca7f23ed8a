"""Step 02: one engine, a real connection pool, and a lifespan that opens and closes it."""
