"""The `workshop` command: hints, checks, running a step, and clear answers to mistakes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from workshop.commands import app
from workshop.commands.run import learners_secret
from workshop.commands.serving import free_port
from workshop.course import Course
from workshop.postgres import Server


@pytest.fixture(autouse=True)
def in_the_repository(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(course.root)


@pytest.mark.parametrize(
    ("command", "sentence"),
    [
        (["hint", "99.9"], "There is no exercise 99.9: there is no step 99."),
        (["hint", "01.9"], "There is no exercise 01.9: step 01's exercises are 01.1, 01.2, 01.3."),
        (["hint", "one"], "'one' is not an exercise id: they look like 01.2 (step, exercise)."),
        (["check", "07"], "There is no step 07: the steps are {steps}."),
        (["run", "07"], "There is no step 07: the steps are {steps}."),
    ],
)
def test_unknown_names_get_one_sentence_and_exit_code_2(
    course: Course, command: list[str], sentence: str
) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    steps = ", ".join(step.number for step in course.steps)
    assert result.output.strip().replace("\n", " ") == sentence.format(steps=steps)


def test_outside_the_repository_is_exit_code_2(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["hint", "01.1"])
    assert result.exit_code == 2
    assert "not the workshop repository" in result.output


def test_check_on_the_solution_passes() -> None:
    result = CliRunner().invoke(app, ["check", "01", "--solution"])
    assert result.exit_code == 0, result.output
    assert "Step 01 is complete." in result.output


def test_dev_sync_check_finds_the_starters_in_sync() -> None:
    result = CliRunner().invoke(app, ["dev", "sync", "--check"])
    assert result.exit_code == 0, result.output


def test_run_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["run", "01", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Port {port} is taken" in result.output


def served(root: Path, server: Server, *args: str) -> tuple[httpx.Response, str]:
    """Start `workshop run` with these arguments, GET /health once it answers, stop it.

    Returns the response and everything the command printed.
    """
    port = free_port()
    env = {**os.environ, "DATABASE_URL": server.url.render_as_string(hide_password=False)}
    command = [sys.executable, "-m", "workshop", "run", *args, "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the app did not start within 30 s"
                time.sleep(0.2)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}/docs" in output
    return response, output


def test_run_serves_the_step_on_the_workshops_database(course: Course, server: Server) -> None:
    response, _ = served(course.root, server, "01", "--solution")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_run_says_in_one_line_which_exercise_a_request_reached(
    starter_course: Course, server: Server
) -> None:
    response, output = served(starter_course.root, server, "01")
    assert response.status_code == 500
    assert "exercise 01.3 is yours to do: `uv run workshop hint 01.3`" in output
    assert "Traceback" not in output


def test_run_keeps_a_secret_key_the_learner_set_in_env_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workshop run` gives the app a key of this machine's only when the learner set none:
    one in `.env` must reach the app, as one in the environment does."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert not learners_secret(tmp_path)
    (tmp_path / ".env").write_text("SECRET_KEY=mine-and-long-enough-for-the-app-to-take-it\n")
    assert learners_secret(tmp_path)
    (tmp_path / ".env").unlink()
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert learners_secret(tmp_path)
