"""`workshop dev timings`: how long the learner waits for a verdict, per step.

Three ways a learner asks, each timed as the learner lives it, whole processes included:
- `workshop check NN`, a new command each time: the first run (cold: no warm process yet), then
  the median of the others (warm: the warm process that the first started answers them, the
  server is up, the test databases are ready);
- `pytest steps/NN-name`, the same way;
- `workshop watch NN`: from the moment a file of the step is saved to the verdict on screen.
"""

from __future__ import annotations

import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .. import warm
from ..course import Course, Step


@dataclass(frozen=True)
class Timing:
    step: Step
    check_cold: float
    check_warm: float
    pytest_warm: float
    after_save: float


def timed(arguments: list[str], course: Course) -> float:
    started = time.monotonic()
    subprocess.run(arguments, cwd=course.root, capture_output=True, check=False)
    return time.monotonic() - started


@contextmanager
def watching(course: Course, step: Step) -> Iterator[queue.Queue[str]]:
    """`workshop watch NN` in a process of its own; its output, line by line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "workshop", "watch", step.number],
        cwd=course.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TERM": "dumb"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def next_verdict(lines: queue.Queue[str], within: float = 120) -> str:
    """Wait for the line `watch` prints once a check is done; what it printed until then."""
    deadline = time.monotonic() + within
    seen = ""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen += line
        if line.startswith("Watching"):
            return seen
    raise TimeoutError(f"`workshop watch` gave no verdict within {within} s:\n{seen}")


def after_saves(course: Course, step: Step, saves: int) -> list[float]:
    """Seconds from a save to the verdict, for each of `saves` saves of the step's file."""
    saved = step.app_dir / "main.py"
    seconds = []
    with watching(course, step) as lines:
        next_verdict(lines)  # the first check, at start-up
        time.sleep(1)  # the watcher starts just after it says so
        for _ in range(saves):
            started = time.monotonic()
            saved.write_bytes(saved.read_bytes())  # a save that changes nothing
            next_verdict(lines)
            seconds.append(time.monotonic() - started)
            time.sleep(0.5)
    return seconds


def measure(course: Course, step: Step, runs: int = 3) -> Timing:
    check = [sys.executable, "-m", "workshop", "check", step.number]
    pytest = [sys.executable, "-m", "pytest", str(step.dir), "-q", "-p", "no:cacheprovider"]
    warm.stop(course.root)  # so that the first check is a cold one
    cold = timed(check, course)
    # The first check starts the warm process that answers the next ones (see workshop.warm).
    deadline = time.monotonic() + 60
    while not warm.answering(course.root) and warm.usable() and time.monotonic() < deadline:
        time.sleep(0.1)
    checks = [cold, *(timed(check, course) for _ in range(runs))]
    return Timing(
        step,
        check_cold=checks[0],
        check_warm=statistics.median(checks[1:]),
        pytest_warm=statistics.median(timed(pytest, course) for _ in range(runs)),
        after_save=statistics.median(after_saves(course, step, runs)),
    )
