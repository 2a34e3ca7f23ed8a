"""Which exercise a failing test is due to, and failures told in a learner's terms: the
stub a test reached in one line, the code that raised, no frames of the libraries."""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..course import step_of
from ..course.starter import STUB_MESSAGE, exercise_at, exercise_in_class

if TYPE_CHECKING:
    pass


def exercise_ids(item: pytest.Item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers("exercise")]


# Where the installed libraries and Python's own modules live.
LIBRARIES = tuple({Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib", "stdlib")})


def in_a_library(entry: pytest.TracebackEntry) -> bool:
    return library_file(str(entry.path))


@functools.lru_cache(maxsize=1024)
def library_file(path: str) -> bool:
    return any(Path(path).is_relative_to(library) for library in LIBRARIES)


def without_library_frames(item: pytest.Item) -> None:
    """A failure's frames inside FastAPI, Starlette, httpx or SQLAlchemy tell a learner
    nothing, and showing them cost pytest most of a check's time (it parses each file to show
    its lines): the item's failures show the step's own frames and the tests' only."""
    shown = getattr(item, "_traceback_filter", None)  # pytest's, for a test function
    if shown is None:
        return

    def ours(excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
        traceback = shown(excinfo)
        return traceback.filter(lambda entry: not in_a_library(entry)) or traceback

    item._traceback_filter = ours  # type: ignore[attr-defined]


class StubReports:
    """A failure that reached a starter's stub is reported as where the stub is, in one line
    (see the wrapper below). Its report is made here, so that pytest does not first format a
    traceback no one will see: a parse of the test file per frame, most of a starter's run."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> pytest.TestReport | None:
        if (
            item.config.getoption("solution")
            or step_of(item.path) is None
            or stub_reached(call.excinfo) is None
        ):
            return None  # pytest makes the report
        sections = [
            (f"Captured {key} {when}", content) for when, key, content in item._report_sections
        ]
        return pytest.TestReport(
            item.nodeid,
            item.location,
            dict.fromkeys(item.keywords, 1),
            "failed",
            str(call.excinfo.value) if call.excinfo else "",
            call.when,
            sections,
            call.duration,
            call.start,
            call.stop,
            item.user_properties,
        )


def settle_blame(entries: dict[str, dict[str, Any]]) -> None:
    """Blame each failure on one exercise: the one whose stub it reached; else the one whose
    code raised it (whatever exercise the test checks: a crash in 05.4's code is 05.4's to
    fix); else, for a test of several exercises, the first of them that fails a test of its
    own alone (it is surely unfinished); else the last of them (a test of several checks the
    last, which needs the earlier ones). Settled again after each failure, as later tests
    tell more."""
    alone = {
        e["exercises"][0]
        for e in entries.values()
        if e["outcome"] == "failed" and len(e["exercises"]) == 1 and not e["stub"]
    }
    for entry in entries.values():
        if entry["outcome"] != "failed":
            continue
        exercises = entry["exercises"]
        entry["blame"] = (
            entry["stub"]
            or entry.get("raised_in")
            or next((x for x in exercises if x in alone), max(exercises, default=None))
        )


def one_line(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """A failure's reason in one line, with its cause: a validation error's first error (a
    lazy load's MissingGreenlet hides in one, as "Error extracting attribute"), and the
    exception the failure was raised from, if any."""
    if excinfo is None:
        return None
    error = excinfo.value
    line = f"{excinfo.typename}: {first_line(error)}".rstrip(": ")
    if isinstance(error, AssertionError):
        # pytest says what the numbers are on the lines after the first: `where 3 = len(...)`.
        where = [w.strip(" +") for w in str(error).splitlines()[1:] if "where " in w]
        if where:
            line += f" ({'; '.join(where[:2])})"
    if (first := first_error(error)) is not None:
        where = ".".join(str(part) for part in first.get("loc", ()))
        line = f"{line}: {where}: {first['msg']}" if where else f"{line}: {first['msg']}"
    root = error
    while cause := root.__cause__ or (None if root.__suppress_context__ else root.__context__):
        root = cause
    if root is not error:
        line += f" (from {type(root).__name__}: {first_line(root)})"
    return line


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def first_error(error: BaseException) -> dict[str, Any] | None:
    """The first error of a pydantic or FastAPI validation error, else None."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return None
    try:
        found = errors()
    except Exception:  # an `errors` that is not pydantic's
        return None
    if found and isinstance(found[0], dict) and "msg" in found[0]:
        return found[0]
    return None


def raised_in(excinfo: pytest.ExceptionInfo[BaseException] | None, package: Path) -> str | None:
    """The exercise whose code raised this failure: the innermost frame in the step's package
    that lies in an exercise block; for a pydantic ValidationError, which names a model and
    not a line, the exercise block inside that model's class."""
    if excinfo is None:
        return None
    for frame in reversed(excinfo.traceback):
        path = Path(frame.path)
        inside = path.suffix == ".py" and path.is_relative_to(package)
        if inside and (found := exercise_at(path, frame.lineno + 1)):
            return found
    title = getattr(excinfo.value, "title", None)
    if excinfo.typename == "ValidationError" and isinstance(title, str):
        return exercise_in_class(package, title)
    return None


def stub_reached(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """The exercise whose starter stub raised this failure, if it was one."""
    if excinfo is None or not excinfo.errisinstance(NotImplementedError):
        return None
    found = STUB_MESSAGE.match(str(excinfo.value))
    return found["id"] if found else None
