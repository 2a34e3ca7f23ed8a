"""The learner toolkit: CLI, database provisioning, pytest plugin, exercise tooling."""
