"""Step 01: settings from the environment, and a first app that reaches PostgreSQL."""
