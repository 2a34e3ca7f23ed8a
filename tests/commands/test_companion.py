"""The learner's companion, command by command, in a copy of the course (two steps of it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workshop import warm
from workshop.checks import verify
from workshop.checks.run import StepReport, TestOutcome
from workshop.checks.timings import next_verdict, watching
from workshop.commands import app
from workshop.course import Course
from workshop.course.catalogue import catalogue, wrong_app

EXERCISE_01_2 = re.compile(r"# EXERCISE 01\.2:.*?# END EXERCISE\n", re.S)


@pytest.fixture
def copy(
    course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_env: dict[str, str]
) -> Course:
    """A learner's fresh checkout of steps 01 and 02, as the working directory."""
    copied = verify.starter_copy(course, tmp_path)
    for step in copied.steps[2:]:
        shutil.rmtree(step.dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", server_env["DATABASE_URL"])
    return Course(tmp_path)


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def finish(copy: Course, number: str) -> None:
    """Do a step's exercises the quick way: the solution's code in app/."""
    step = copy.step(number)
    for path in step.solution_dir.rglob("*.py"):
        target = step.app_dir / path.relative_to(step.solution_dir)
        target.write_text(path.read_text())


def test_without_a_command_it_says_where_you_are(copy: Course) -> None:
    code, output = run()
    assert code == 0
    assert "You are on step 01-setup: 0 of 3 exercises done." in output
    assert "Next: exercise 01.1, Declare the pool settings." in output
    assert "steps/01-setup/app/config.py:" in output
    assert "uv run workshop check 01" in output and "uv run workshop hint 01.1" in output


def test_status_is_cached_and_refreshed_when_a_file_changes(copy: Course) -> None:
    code, output = run("status", "--json")
    assert code == 0
    first = json.loads(output)
    assert [s["name"] for s in first] == ["01-setup", "02-connection"]
    assert first[0]["done"] == {"01.1": False, "01.2": False, "01.3": False}
    assert json.loads(run("status", "--json")[1]) == first  # from the cache
    finish(copy, "01")
    again = json.loads(run("status", "--json")[1])
    assert again[0]["complete"] and not again[1]["complete"]
    code, output = run()
    assert "You are on step 02-connection: 0 of 4 exercises done." in output


def test_check_exits_0_only_when_the_step_is_complete(copy: Course) -> None:
    code, output = run("check", "01")
    assert code == 1 and "Next: exercise 01.1" in output
    # The first failing check of that exercise, and why it fails, before any hint.
    assert "Failing: tests/test_settings.py::" in output
    assert "is yours to do" in output or "Error:" in output
    assert "to do (0/" in output and "done (" not in output
    finish(copy, "01")
    code, output = run("check", "01")
    assert code == 0 and "Step 01 is complete." in output


def test_hint_shows_one_more_hint_each_time(copy: Course) -> None:
    hints = copy.step("01").exercise("01.2").hints
    first = run("hint", "01.2")[1]
    assert f"1. {hints[0]}" in first and "2. " not in first
    second = run("hint", "01.2")[1]
    assert f"2. {hints[1]}" in second and "3. " not in second
    everything = run("hint", "01.2", "--all")[1]
    assert all(f"{n}. {hint}" in everything for n, hint in enumerate(hints, start=1))


def test_every_hint_prints_verbatim(
    course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hints quote code such as `Mapped[str | None]`: printed as written, never as markup."""
    shutil.copy(course.root / "pyproject.toml", tmp_path)
    for step in course.steps:
        (tmp_path / "steps" / step.name).mkdir(parents=True)
        shutil.copy(step.dir / "exercises.toml", tmp_path / "steps" / step.name)
    monkeypatch.chdir(tmp_path)
    for step in course.steps:
        for exercise in step.exercises:
            code, output = run("hint", exercise.id, "--all")
            assert code == 0, output
            assert f"Exercise {exercise.id}: {exercise.title}" in output
            for number, hint in enumerate(exercise.hints, start=1):
                assert f"{number}. {hint}\n" in output, f"hint {exercise.id}/{number}"


def test_reset_one_exercise_keeps_the_rest_and_a_backup(copy: Course) -> None:
    config = copy.step("01").app_dir / "config.py"
    starter = config.read_text()
    mine = starter.replace("    # Seconds to wait", "    # my note\n    # Seconds to wait")
    mine = EXERCISE_01_2.sub(
        "# EXERCISE 01.2: mine\n        return value  # wrong\n        # END EXERCISE\n", mine
    )
    config.write_text(mine)
    code, output = run("reset", "01", "--exercise", "01.2")
    assert code == 0, output
    text = config.read_text()
    assert "# my note" in text and "# wrong" not in text
    assert EXERCISE_01_2.search(text).group(0) == EXERCISE_01_2.search(starter).group(0)
    [saved] = (copy.root / ".workshop" / "backups").glob("*/steps/01-setup/app/config.py")
    assert saved.read_text() == mine


def test_reset_a_step_puts_back_every_starter_file(copy: Course) -> None:
    finish(copy, "01")
    code, output = run("reset", "01")
    assert code == 0 and "back to its starter" in output
    assert (
        "raise NotImplementedError"
        in (copy.step("01").app_dir / "routes" / "health.py").read_text()
    )


def test_reset_says_when_the_markers_are_gone(copy: Course) -> None:
    config = copy.step("01").app_dir / "config.py"
    config.write_text(EXERCISE_01_2.sub("", config.read_text()))
    code, output = run("reset", "01", "--exercise", "01.2")
    assert code == 1 and "uv run workshop reset 01" in output


def test_diff_against_the_reference_and_the_previous_step(copy: Course) -> None:
    code, output = run("diff", "01")
    assert code == 0 and "+    pool_size: PositiveInt = 20" in output
    code, output = run("diff", "02", "--previous")
    assert code == 0 and "+++ 02-connection/db.py" in output
    code, output = run("diff", "01", "--previous")
    assert code == 2 and "the first" in output


def test_solution_asks_first(copy: Course) -> None:
    code, output = run("solution", "01.1", stdin="n\n")
    assert code == 1 and "pool_size: PositiveInt" not in output
    code, output = run("solution", "01.1", "--yes")
    assert code == 0 and "pool_size: PositiveInt = 20" in output


@pytest.mark.parametrize(
    "command",
    [
        ["diff", "09"],
        ["reset", "09"],
        ["reset", "01", "--exercise", "02.1"],
        ["solution", "09.1", "--yes"],
        ["hint", "01.9"],
        ["check", "9"],
        ["watch", "09"],
    ],
)
def test_unknown_steps_and_exercises_are_exit_code_2(copy: Course, command: list[str]) -> None:
    code, output = run(*command)
    assert code == 2 and "Traceback" not in output
    assert "There is no" in output or "is not step 01's" in output


def test_outside_the_repository_is_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in ([], ["status"], ["doctor"]):
        code, output = run(*command)
        assert code == 2 and "not the workshop repository" in output


def test_doctor_finds_a_sound_machine_and_a_broken_database(
    copy: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = run("doctor")
    assert "Python" in output and "create a database" in output
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, output = run("doctor")
    assert code == 1 and "unavailable" in output and "docker compose up -d" in output


def test_watch_checks_again_when_a_file_is_saved(copy: Course) -> None:
    with watching(copy, copy.step("01")) as lines:
        assert "Next: exercise 01.1" in next_verdict(lines, within=60)
        time.sleep(2)  # the watcher starts just after it says so
        finish(copy, "01")  # the learner saves their work
        assert "Step 01 is complete." in next_verdict(lines, within=30)


@pytest.mark.exhaustive  # `workshop verify` runs the checks of two steps and a catalogue
def test_verify_says_what_is_wrong_with_the_course(copy: Course) -> None:
    """One run finds a stale starter and a wrong answer that its checks let through, and
    nothing else (`1 problem` more would be a sound course's false alarm)."""
    starter = copy.step("01").app_dir / "config.py"
    starter.write_text(starter.read_text() + "# a change by hand\n")
    catalogue = copy.step("01").dir / "wrong-answers.toml"
    kept = keep_first_wrong_answers(catalogue.read_text(), 3)  # verify is under test, not them
    # A "wrong answer" that is the solution itself, but for a comment: every check passes.
    harmless = (
        '[[wrong]]\nexercise = "01.1"\nname = "only-a-comment"\nmistake = "none"\n'
        '[[wrong.edit]]\nold = "pool_size: PositiveInt = 20"\n'
        'new = "pool_size: PositiveInt = 20  # mine"\n'
    )
    catalogue.write_text(f"{kept}\n{harmless}")
    code, output = run("verify")
    assert code == 1
    assert "steps/01-setup/app/config.py is stale" in output
    assert "wrong answer 01.1 only-a-comment passes every test of its exercise" in output
    assert "2 problem(s)" in output, output


def keep_first_wrong_answers(text: str, count: int) -> str:
    """A catalogue with only the first `count` wrong answers of each exercise."""
    head, *entries = text.split("\n[[wrong]]\n")
    seen: Counter[str] = Counter()
    kept = []
    for entry in entries:
        exercise = re.search(r'^exercise = "(.+)"', entry, re.M)
        seen[exercise[1] if exercise else ""] += 1
        if seen[exercise[1] if exercise else ""] <= count:
            kept.append(entry)
    return "\n[[wrong]]\n".join([head, *kept])


def test_output_reads_without_colour(copy: Course) -> None:
    # `hint` prints in colour on a terminal: markup, a panel and highlighted code.
    result = CliRunner().invoke(app, ["hint", "01.1"], env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert result.exit_code == 0
    assert "\x1b[" not in result.output and "01.1" in result.output


def test_check_says_when_the_database_is_down(
    copy: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, output = run("check", "01")
    assert code == 1
    assert "does not answer" in output and "Next: exercise" not in output
    assert not (copy.root / ".workshop" / "progress.json").exists()  # nothing cached


def test_a_row_never_contradicts_itself(course: Course) -> None:
    """`done` only when every check passes; `waits on` when the failures are another's."""
    step = course.step("05")
    first, second = step.exercises[2], step.exercises[3]  # 05.3 and 05.4

    def outcome(name: str, result: str, blame: str | None, *ids: str) -> TestOutcome:
        return TestOutcome(name, result, ids, blame)

    report = StepReport(
        step,
        solution=False,
        tests=[
            outcome("a", "passed", None, first.id),
            outcome("b", "failed", second.id, first.id, second.id),
            outcome("c", "failed", second.id, second.id),
        ],
        output="",
    )
    assert report.state(first) == f"waits on {second.id} (1/2 pass)"
    assert report.state(second) == "to do (0/2 pass)"
    assert report.done(first) and not report.done(second)
    # An exercise with no check run is not done either.
    assert [e.id for e in report.unfinished] == ["05.1", "05.2", "05.4", "05.5"]


@pytest.mark.exhaustive  # the harness times every way of checking a step, twice over
def test_timings_give_every_figure_of_the_check_loop(copy: Course) -> None:
    """`workshop dev timings` measures; the test says only that it produced its figures."""
    code, output = run("dev", "timings", "01", "--runs", "1")
    assert code == 0, output
    row = next(line for line in output.splitlines() if "01-setup" in line)
    figures = [float(cell) for cell in re.findall(r"\d+\.\d\d", row)]
    assert len(figures) == 4 and all(seconds > 0 for seconds in figures), row


def test_a_warm_process_gives_the_verdict_a_new_process_gives(
    copy: Course, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workshop check` hands its terminal to a child of a warm process (see workshop.warm): the
    same words, the same exit code. A warm process that is out of date ends, and says so."""
    monkeypatch.setenv("COLUMNS", "200")
    command = [sys.executable, "-m", "workshop", "check", "01"]
    alone = subprocess.run(
        command, env={**os.environ, warm.SWITCH: "0"}, capture_output=True, text=True
    )
    assert alone.returncode == 1 and "Next: exercise 01.1" in alone.stdout
    warm.start(copy.root)
    try:
        deadline = time.monotonic() + 60
        while not warm.answering(copy.root):
            assert time.monotonic() < deadline, "the warm process did not start"
            time.sleep(0.1)
        capfd.readouterr()
        assert warm.ask(copy.root, ["check", "01"]) == 1  # None: not answered warm
        assert capfd.readouterr().out == alone.stdout
        # Another Python (or changed libraries, or toolkit): it ends, the command runs alone.
        monkeypatch.setattr(sys, "executable", "/elsewhere/bin/python")
        assert warm.ask(copy.root, ["check", "01"]) is None
        deadline = time.monotonic() + 10
        while warm.answering(copy.root):
            assert time.monotonic() < deadline, "the out-of-date warm process did not end"
            time.sleep(0.1)
    finally:
        warm.stop(copy.root)


def test_the_check_that_starts_the_warm_process_ends_without_a_warning(copy: Course) -> None:
    """The first check starts the warm process, which runs on: no "subprocess ... is still
    running" ResourceWarning may follow the check's last line, where it reads like a crash."""
    command = [sys.executable, "-X", "dev", "-m", "workshop", "check", "01"]
    try:
        first = subprocess.run(command, cwd=copy.root, capture_output=True, text=True)
        assert first.returncode == 1 and "Next: exercise 01.1" in first.stdout
        assert "ResourceWarning" not in first.stderr, first.stderr
        deadline = time.monotonic() + 60  # it was started (else there was nothing to warn of)
        while not warm.answering(copy.root):
            assert time.monotonic() < deadline, "the check started no warm process"
            time.sleep(0.1)
    finally:
        warm.stop(copy.root)


def test_the_hint_shown_first_fits_the_failing_check(course: Course) -> None:
    """05.1's event-loop check fails on a hash run in the loop: the hint on threads comes first."""
    exercise = course.step("05").exercise("05.1")
    assert exercise.hint_fitting("test_hashing_leaves_the_event_loop_free") == exercise.hints[1]
    assert exercise.hint_fitting("test_hash_is_argon2id_and_verifies[x]") == exercise.hints[0]
    assert exercise.hint_fitting(None) == exercise.hints[0]


@pytest.mark.parametrize(
    ("exercise", "wrong", "cause"),
    [
        # A queryset-style update(): the symptom is the response's validation error, the
        # cause the lazy load inside it.
        ("04.3", "queryset-style-update", "MissingGreenlet"),
        # A bulk create as a loop of single creates: what the numbers are, not a bare 3 == 1.
        ("04.4", "create-item-for-each", "items after,"),
    ],
)
def test_check_shows_a_failures_cause(
    course: Course,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_env: dict[str, str],
    exercise: str,
    wrong: str,
    cause: str,
) -> None:
    """A Django developer's two first failures in step 04, as `workshop check 04` shows
    them: the line under "Failing" names the cause, not only the symptom."""
    copied = verify.starter_copy(course, tmp_path)
    step = copied.step("04")
    [answer] = [w for w in catalogue(course.step("04"), exercise) if w.name == wrong]
    for relative, text in wrong_app(course.step("04"), answer).items():
        (step.app_dir / relative).write_text(text, encoding="utf-8")
    monkeypatch.chdir(copied.root)
    monkeypatch.setenv("DATABASE_URL", server_env["DATABASE_URL"])
    code, output = run("check", "04")
    assert code == 1
    failing = output.partition(f"Next: exercise {exercise}")[2]
    assert "Failing:" in failing and cause in failing, output
