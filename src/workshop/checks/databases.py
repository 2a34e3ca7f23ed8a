"""A test session's throwaway databases: one per step, migrated, and empty ones on request;
on the embedded server, taken ready from an earlier run and handed back ready."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..course import Step, WorkshopError
from ..postgres import (
    Server,
    ToolkitSettings,
    create_database,
    drop_database,
    resolve_server,
    run_sync,
    test_database_name,
)
from ..postgres.databases import drop_orphaned_test_databases
from ..postgres.ready import (
    drop_ready_databases,
    fingerprint,
    hand_back_database,
    take_ready_database,
)

if TYPE_CHECKING:
    pass


DATABASES_KEY = pytest.StashKey["TestDatabases"]()

# -- databases ------------------------------------------------------------------------------


# How many ready databases of a kind the embedded server keeps between runs: step 03's run
# uses five (one migrated, four empty), and the repository's tests run a step twice at once.
KEEP_READY = 6


def migrations_digest(step: Step, solution: bool) -> str:
    """What the package's migrations are, in a few letters: a change makes a new kind."""
    digest = hashlib.sha256((step.dir / "alembic.ini").read_bytes())
    folder = step.package_dir(solution=solution) / "migrations"
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:10]


class TestDatabases:
    """The throwaway databases of a test session: one per step, migrated, and the empty ones
    that tests ask for.

    On the embedded server a run takes databases another run made ready and hands its own
    back at the end (see `hand_back_database`): CREATE DATABASE is most of a check's set-up.
    Elsewhere (DATABASE_URL: a server that may be shared) it makes them and drops them.
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, root: Path, settings: ToolkitSettings, *, solution: bool) -> None:
        self.root = root
        self.settings = settings
        self.solution = solution
        self.server: Server | None = None
        self.names: dict[Path, str] = {}
        self.broken: dict[Path, str] = {}
        self.ready: dict[str, tuple[str, str]] = {}  # name: (kind, fingerprint when made)

    def connect(self) -> Server:
        if self.server is None:
            try:
                self.server = resolve_server(self.root, settings=self.settings)
            except WorkshopError as exc:
                pytest.exit(str(exc), returncode=1)
            if self.server.source == "embedded":
                run_sync(drop_orphaned_test_databases(self.server.url))
        return self.server

    @property
    def keeps_ready(self) -> bool:
        return self.server is not None and self.server.source == "embedded"

    def database(
        self, key: Path, label: str, kind: str, prepare: Callable[[str], None] | None = None
    ) -> str:
        """A database of this kind for `key`: one taken ready, else a new one that `prepare`
        (given its URL) makes what its kind is, its fingerprint then remembered."""
        assert self.server is not None
        name = test_database_name(label)
        self.names[key] = name  # dropped at the end, even if making it fails half-way
        taken = (
            run_sync(take_ready_database(self.server.url, kind, name)) if self.keeps_ready else None
        )
        if taken is not None:
            self.ready[name] = (kind, taken)
            return name
        run_sync(create_database(self.server.url, name))
        if prepare is not None:
            prepare(self.url(name))
        if self.keeps_ready:
            self.ready[name] = (kind, run_sync(fingerprint(self.server.database_url(name))))
        return name

    def url_for(self, step: Step) -> str:
        self.connect()
        if step.dir in self.broken:
            pytest.fail(f"The step's migrations failed: {self.broken[step.dir]}", pytrace=False)
        if step.dir in self.names:
            return self.url(self.names[step.dir])
        if not step.has_migrations:
            return self.url(self.database(step.dir, step.number, "empty"))
        kind = f"{step.number}_{migrations_digest(step, self.solution)}"
        return self.url(
            self.database(step.dir, step.number, kind, lambda url: self.migrate(step, url))
        )

    def migrate(self, step: Step, url: str) -> None:
        """Run the step's migrations on a new database of it."""
        # Imported here: Alembic costs a third of a second, and steps 01-02 have none.
        from ..postgres.migrations import Migrations

        assert self.server is not None
        try:
            run_sync(Migrations(step, self.solution).upgrade(url))
        except Exception as exc:
            # Every test of the step gets the same clear failure, not a missing table.
            self.broken[step.dir] = f"{type(exc).__name__}: {exc}"
            raise
        if self.keeps_ready:
            # The ready databases of migrations the step's packages no longer have: gone.
            kinds = {f"{step.number}_{migrations_digest(step, s)}" for s in (False, True)}
            run_sync(drop_ready_databases(self.server.url, f"{step.number}_", kinds))

    def new_database(self, label: str) -> str:
        """Another throwaway database, empty; handed back or dropped at the end like the others."""
        return self.url(self.database(self.root / f"{label}_{len(self.names)}", label, "empty"))

    def url(self, name: str) -> str:
        assert self.server is not None
        return self.server.database_url(name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.server is None:
            return
        for name in self.names.values():
            if name in self.ready:
                kind, then = self.ready[name]
                migrated = kind != "empty"
                back = hand_back_database(
                    self.server.url, name, kind, then, keep=KEEP_READY, migrated=migrated
                )
                run_sync(back)
            else:
                run_sync(drop_database(self.server.url, name))
