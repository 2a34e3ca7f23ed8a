"""Where the learner is: every exercise's state, from the real checks, cached in .workshop/.

A step's result is kept with a fingerprint of the files it depends on (its app/, tests/ and
exercises.toml): when none has changed, `workshop status` answers at once; when one has, that
step's checks run again, in a pytest process of their own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..course import Course, Exercise, Step
from ..course.starter import SKIP_PARTS
from .run import StepReport, run_checks


@dataclass(frozen=True)
class StepProgress:
    step: str  # "01"
    name: str  # "01-setup"
    done: dict[str, bool]  # exercise id -> done
    other_failures: list[str]  # failing checks of the step's given code

    @property
    def complete(self) -> bool:
        return all(self.done.values()) and not self.other_failures


def fingerprint(step: Step) -> str:
    """A hash of everything a step's result depends on."""
    digest = hashlib.sha256()
    for folder in (step.app_dir, step.dir / "tests"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not SKIP_PARTS.intersection(path.parts):
                digest.update(str(path.relative_to(step.dir)).encode())
                digest.update(path.read_bytes())
    digest.update((step.dir / "exercises.toml").read_bytes())
    return digest.hexdigest()


def cache_path(course: Course) -> Path:
    return course.root / ".workshop" / "progress.json"


def load_cache(course: Course) -> dict[str, dict[str, object]]:
    try:
        return json.loads(cache_path(course).read_text())
    except (OSError, ValueError):
        return {}


def step_progress(course: Course, step: Step, *, refresh: bool = False) -> StepProgress:
    """The step's progress: from the cache if its files are unchanged, else checked now."""
    cache = load_cache(course)
    key = fingerprint(step)
    cached = cache.get(step.name)
    if not refresh and cached and cached.get("fingerprint") == key:
        return StepProgress(**cached["progress"])  # type: ignore[arg-type]
    return remember(course, step, key)


def remember(
    course: Course, step: Step, key: str | None = None, report: StepReport | None = None
) -> StepProgress:
    """Run the step's checks on the learner's code (unless given their report) and cache
    what they say."""
    report = report or run_checks(step)
    progress = StepProgress(
        step=step.number,
        name=step.name,
        done={e.id: report.done(e) for e in step.exercises},
        other_failures=[t.nodeid for t in report.other_failures],
    )
    cache = load_cache(course)
    cache[step.name] = {"fingerprint": key or fingerprint(step), "progress": asdict(progress)}
    path = cache_path(course)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cache, indent=1))
    return progress


def course_progress(course: Course) -> list[StepProgress]:
    return [step_progress(course, step) for step in course.steps]


def current(course: Course) -> tuple[Step, StepProgress, Exercise | None]:
    """The first step that is not complete, its progress, and its first exercise not done
    (the last step when all are complete). Checks only the steps up to it."""
    for step in course.steps:
        state = step_progress(course, step)
        if not state.complete:
            todo = [e for e in step.exercises if not state.done[e.id]]
            return step, state, (todo[0] if todo else None)
    return course.steps[-1], state, None
