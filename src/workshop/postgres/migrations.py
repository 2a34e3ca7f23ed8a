"""Run a step's Alembic migrations on a database, from the toolkit and the tests.

The step's own `migrations/env.py` runs them, on a connection handed to it, with the models'
metadata of the package under test (loaded under its own name: see course/loader.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..course import Step
from ..course.loader import load_package
from .databases import run_sync
from .roles import provision_roles, role_password


@dataclass(frozen=True)
class Migrations:
    """The migrations of a step's `app/` (or `solution/`)."""

    step: Step
    solution: bool

    def config(self) -> Config:
        config = Config(self.step.dir / "alembic.ini")
        package_dir = self.step.package_dir(solution=self.solution)
        config.set_main_option("script_location", str(package_dir / "migrations"))
        # Leave the caller's logging alone (fileConfig would silence pytest's capture).
        config.attributes["configure_logger"] = False
        package = load_package(self.step, solution=self.solution)
        config.attributes["target_metadata"] = package.models.Base.metadata
        return config

    async def _run(self, url: str, work: Any) -> Any:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            # Outside a transaction: the step's env.py begins its own, which is how step 06's
            # runs one per migration, and none around CREATE INDEX CONCURRENTLY.
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    def revisions(self) -> set[str]:
        """The revision ids of the step's migrations, read without importing the app."""
        config = Config(self.step.dir / "alembic.ini")
        package_dir = self.step.package_dir(solution=self.solution)
        config.set_main_option("script_location", str(package_dir / "migrations"))
        script = ScriptDirectory.from_config(config)
        # A revision file may read `context.config` when it is imported (step 05's does).
        with EnvironmentContext(config, script):
            return {revision.revision for revision in script.walk_revisions()}

    def roles(self) -> tuple[str, str] | None:
        """(owner role, app role) when the step separates them (alembic.ini), else None."""
        config = Config(self.step.dir / "alembic.ini")
        owner, app = config.get_main_option("owner_role"), config.get_main_option("app_role")
        return (owner, app) if owner and app else None

    def app_url(self, url: str) -> str:
        """The URL the app connects with: as the app role, when the step has one."""
        if (roles := self.roles()) is None:
            return url
        password = run_sync(role_password(make_url(url), roles[1]))
        app_url = make_url(url).set(username=roles[1], password=password)
        return app_url.render_as_string(hide_password=False)

    async def upgrade(self, url: str, revision: str = "head") -> bool:
        """Upgrade the database to `revision`; whether there was anything to do."""
        config = self.config()
        if (roles := self.roles()) is not None:
            await provision_roles(make_url(url), owner=roles[0], app=roles[1])

        def upgrade(connection: Connection) -> bool:
            before = MigrationContext.configure(connection).get_current_heads()
            connection.commit()  # that read began a transaction: env.py must see none
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            return MigrationContext.configure(connection).get_current_heads() != before

        return bool(await self._run(url, upgrade))

    async def downgrade(self, url: str, revision: str = "base") -> None:
        config = self.config()

        def downgrade(connection: Connection) -> None:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)

        await self._run(url, downgrade)

    async def differences(self, url: str) -> list[Any]:
        """What autogenerate would change in the database to match the models ([]: nothing)."""
        metadata = self.config().attributes["target_metadata"]

        def compare(connection: Connection) -> list[Any]:
            return compare_metadata(MigrationContext.configure(connection), metadata)

        return await self._run(url, compare)
