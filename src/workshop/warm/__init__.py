"""A warm `workshop check`: a process that keeps loaded what a check imports, and forks a
child for each check that a `workshop check` command asks of it.

A new process spends over a second importing FastAPI, SQLAlchemy, pydantic and pytest before
its first test. The child of this process starts with them loaded (as `workshop watch` does
between saves) and imports only the step's own files, as they are now. The command hands it
its terminal (its standard input, output and error), its environment and its folder, then
waits for the exit code: what the learner sees is what the check prints, colours included.

The first `workshop check` starts it in the background. It ends after IDLE_SECONDS without
a check, when its socket is gone, at `workshop db stop`, or at the first check after the
toolkit or the installed libraries change (that check runs as it would without it). Unix
only (fork, and file descriptors passed over a Unix socket); elsewhere `check` runs alone.

This package imports nothing of the toolkit: `python -m workshop` (the entry point, above every
layer) asks it first, before anything heavy is imported, and hands the warm process what to
load and the command to run in each child (server.py).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

IDLE_SECONDS = 20 * 60
SOCKET_NAME = "warm.sock"
# Set to 0 to run every check in a process of its own, as without a warm process.
SWITCH = "WORKSHOP_WARM"
# `python -m workshop --serve-warm ROOT` is the warm process (see workshop/__main__.py).
SERVE = "--serve-warm"


def usable() -> bool:
    return (
        os.environ.get(SWITCH, "1") != "0" and hasattr(os, "fork") and hasattr(socket, "send_fds")
    )


def socket_path(root: Path) -> Path:
    return root / ".workshop" / SOCKET_NAME


def find_socket(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (path := socket_path(candidate)).exists():
            return path
    return None


def ask(folder: Path, arguments: list[str]) -> int | None:
    """Run `workshop <arguments>` in a child of the warm process; its exit code, or None
    when no warm process answers (or it is out of date), and the command runs as usual."""
    if not usable() or (path := find_socket(folder)) is None:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(str(path))
            request = {
                "argv": arguments,
                "env": dict(os.environ),
                "cwd": str(Path.cwd()),
                "executable": sys.executable,
            }
            socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
            answer = connection.makefile("r")
            first = answer.readline().split()
        except OSError:
            return None
        if first[:1] != ["pid"]:
            return None  # out of date: it has ended; this command runs as usual
        child = int(first[1])
        try:
            code = answer.readline().strip()
        except KeyboardInterrupt:
            # Ctrl+C reaches this process only: pass it on to the child that runs the check.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGINT)
            code = answer.readline().strip() or "130"
        return int(code) if code.lstrip("-").isdigit() else 1


def start(root: Path) -> None:
    """Start a warm process for this course in the background, unless one answers already."""
    path = socket_path(root)
    if not usable() or len(str(path)) > 100 or answering(root):  # a socket's path is short
        return
    _started.append(
        subprocess.Popen(
            [sys.executable, "-m", "workshop", SERVE, str(root)],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not ended with the terminal's process group, nor by Ctrl+C
        )
    )


_started: list[subprocess.Popen[bytes]] = []


@atexit.register
def _let_go() -> None:
    """The warm process runs on after this one, on purpose: let it go without Python's
    "subprocess ... is still running" warning, which would read like a crash after a check's
    last line (a Popen warns when it is dropped with no exit status)."""
    for process in _started:
        if process.poll() is None:
            process.returncode = 0


def answering(root: Path) -> bool:
    """Whether the course's warm process takes a connection now."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(socket_path(root)))
        except OSError:
            return False
        return True


def stop(root: Path) -> None:
    """End the course's warm process, if one runs (`workshop db stop`)."""
    path = socket_path(root)
    with socket.socket(socket.AF_UNIX) as connection, contextlib.suppress(OSError):
        connection.connect(str(path))
        socket.send_fds(connection, [b'{"stop": true}'], [])
        connection.recv(16)
    for process in [p for p in _started if p.args[-1] == str(root)]:  # type: ignore[index]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)  # started by this process: it is its to collect
            _started.remove(process)
