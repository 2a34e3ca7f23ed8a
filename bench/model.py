"""What a benchmark run is and what it measured: the variants, a run's options, each load's
figures and their medians. The runner (runner.py) fills them in; the report (report.py) reads
them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from workshop.course import Course, UnknownName
from workshop.postgres.pgbouncer_config import find_pgbouncer

ITEMS = 10_000
# Where there are users (step 05), the bench account owns one item in SHARE, as one user of
# many would: the other accounts own the rest, in between (ITEMS * SHARE items in all).
SHARE = 10
REQUESTS = {"get": "GET one", "list": "list", "create": "create", "search": "search"}


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    app: str  # uvicorn's module:attribute
    step: str  # the step whose reference migrations make (and whose schema is) its database
    app_dir: str | None = None  # from the repository's root; None: the step's own folder
    workers: int = 1  # uvicorn worker processes, each with its own pool
    pgbouncer: bool = False  # through the benchmark's PgBouncer, in transaction mode

    def folder(self, course: Course) -> Path:
        return course.root / self.app_dir if self.app_dir else course.step(self.step).dir


VARIANTS = {
    v.key: v
    for v in (
        Variant(
            "raw", "Starlette + raw asyncpg (the limit)", "raw_asyncpg:app", "04", "bench/variants"
        ),
        Variant(
            "fastapi",
            "FastAPI + raw asyncpg",
            "fastapi_asyncpg:app",
            "04",
            "bench/variants",
        ),
        Variant("core", "FastAPI + SQLAlchemy Core", "fastapi_core:app", "04", "bench/variants"),
        Variant(
            "sync", "sync ORM on psycopg (template style)", "sync_orm:app", "04", "bench/variants"
        ),
        Variant("04", "step 04 reference", "solution.main:app", "04"),
        Variant("05", "step 05 reference (with a token)", "solution.main:app", "05"),
        # Step 06 as production serves it, one change at a time: a second worker, PgBouncer.
        Variant("06", "step 06, 1 worker", "solution.main:app", "06"),
        Variant("06-2w", "step 06, 2 workers", "solution.main:app", "06", workers=2),
        Variant(
            "06-pgb", "step 06, 1 worker, PgBouncer", "solution.main:app", "06", pgbouncer=True
        ),
        Variant(
            "06-2w-pgb",
            "step 06, 2 workers, PgBouncer",
            "solution.main:app",
            "06",
            workers=2,
            pgbouncer=True,
        ),
    )
}
# Seconds an app may take to answer once a load is over, before it is deemed stuck.
SETTLE_SECONDS = 30
# What step 06 is compared with: step 05 on one worker, straight to PostgreSQL.
STEP_06 = tuple(key for key, variant in VARIANTS.items() if variant.step == "06")


LOOPS = ("auto", "asyncio", "uvloop")  # uvicorn's --loop


@dataclass(frozen=True)
class Options:
    rounds: int = 2
    duration: int = 8  # seconds of load per request
    warmup: int = 1  # seconds of load per request before it is measured, every round
    connections: tuple[int, ...] = (32,)  # wrk's client connections: each variant at each
    variants: tuple[str, ...] = tuple(VARIANTS)
    quick: bool = False
    requests: tuple[str, ...] = tuple(REQUESTS)
    # The variants through PgBouncer, left out of the default run on a machine without it.
    left_out: tuple[str, ...] = ()
    # uvicorn's event loop: auto takes uvloop where it is installed (uvicorn[standard]).
    loop: str = "auto"

    @classmethod
    def make(
        cls,
        *,
        quick: bool = False,
        rounds: int | None = None,
        duration: int | None = None,
        connections: list[int] | None = None,
        variants: list[str] | None = None,
        requests: list[str] | None = None,
        loop: str = "auto",
    ) -> Options:
        """The defaults (2 rounds of 8 s), or quick ones (1 round of 1 s, no warm-up)."""
        keys = tuple(dict.fromkeys(variants or VARIANTS))
        left_out: tuple[str, ...] = ()
        if not variants and find_pgbouncer() is None:
            left_out = tuple(key for key in keys if VARIANTS[key].pgbouncer)
            keys = tuple(key for key in keys if key not in left_out)
        for key in keys:
            if key not in VARIANTS:
                raise UnknownName(f"There is no variant {key!r}: they are {', '.join(VARIANTS)}.")
        if loop not in LOOPS:
            raise UnknownName(f"There is no loop {loop!r}: they are {', '.join(LOOPS)}.")
        kinds = tuple(dict.fromkeys(requests or REQUESTS))
        for kind in kinds:
            if kind not in REQUESTS:
                raise UnknownName(f"There is no request {kind!r}: they are {', '.join(REQUESTS)}.")
        return cls(
            rounds=rounds or (1 if quick else 2),
            duration=duration or (1 if quick else 8),
            warmup=0 if quick else 1,
            connections=tuple(dict.fromkeys(connections or (32,))),
            variants=keys,
            quick=quick,
            requests=kinds,
            left_out=left_out,
            loop=loop,
        )

    @property
    def pgbouncer(self) -> bool:
        return any(VARIANTS[key].pgbouncer for key in self.variants)


@dataclass(frozen=True)
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # connections lost, timeouts, and answers of 400 and above
    # Where the machine's cores went meanwhile: the app's processes (its workers), in cores,
    # and the share of the machine left idle. Neither is wrk's, nor PostgreSQL's.
    app_cores: float = 0.0
    idle: float = 0.0

    @classmethod
    def from_wrk(cls, data: dict[str, int]) -> Figures:
        return cls(
            requests_per_second=data["requests"] / (data["duration_us"] / 1e6),
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            errors=data["socket_errors"] + data["timeouts"] + data["error_statuses"],
        )


@dataclass
class Results:
    options: Options
    machine: str
    # (variant, request, client connections): a figure of each round.
    runs: dict[tuple[str, str, int], list[Figures]] = field(default_factory=dict)
    # The variants restarted because a load left them stuck, and after which load.
    restarts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # results.md and results.png, once written

    def median(self, variant: str, request: str, connections: int | None = None) -> Figures:
        """The rounds' medians (errors: their sum), at `connections` (default: the first)."""
        runs = self.runs[(variant, request, connections or self.options.connections[0])]
        return Figures(
            requests_per_second=statistics.median(r.requests_per_second for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            errors=sum(r.errors for r in runs),
            app_cores=statistics.median(r.app_cores for r in runs),
            idle=statistics.median(r.idle for r in runs),
        )

    def ratio(
        self, variant: str, request: str, baseline: str, connections: int | None = None
    ) -> float | None:
        if baseline not in self.options.variants:
            return None
        base = self.median(baseline, request, connections).requests_per_second
        if not base:  # no request of the baseline's finished: a run too short for its crowd
            return None
        return self.median(variant, request, connections).requests_per_second / base


def threads(connections: int) -> int:
    """wrk's threads: two, the machine's other core's worth (wrk is far cheaper than an app)."""
    return min(2, connections)
