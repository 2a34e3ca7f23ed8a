"""The warm process itself: it loads what a check imports, then forks a child per check that
a `workshop check` command asks of it (see the package's docstring)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from . import IDLE_SECONDS, socket_path


def toolkit_state() -> list[tuple[str, float]]:
    """What the warm process loaded: the toolkit's files and the installed libraries."""
    toolkit = Path(__file__).parent.parent
    files = [*toolkit.rglob("*.py"), Path(sys.prefix), *map(Path, sys.path[1:])]
    return [(str(f), f.stat().st_mtime) for f in files if f.exists()]


def serve(root: Path, preload: Iterable[str], command: Callable[[], object]) -> None:
    """The warm process: load the modules of `preload` (what every check imports), then
    answer until idle, running `command` (the `workshop` command) in a child per check."""
    import importlib

    for name in preload:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # What is loaded now stays: the children's garbage collections need not walk it (each
    # pytest run ends with a full one), and the pages stay shared with the children.
    gc.freeze()
    loaded = toolkit_state()
    path = socket_path(root)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(5)
    signal.signal(signal.SIGCHLD, lambda *_: reap())
    idle = 0.0
    try:
        while idle < IDLE_SECONDS and path.exists():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                idle += 5
                continue
            idle = 0.0
            with connection:
                try:
                    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
                    request = json.loads(message)
                except (OSError, ValueError):
                    continue  # a probe (see `start`), or a command that went away
                out_of_date = (
                    request.get("executable") != sys.executable or toolkit_state() != loaded
                )
                if request.get("stop") or out_of_date:
                    for fd in fds:
                        os.close(fd)
                    connection.sendall(b"stop\n")
                    return
                fork_a_check(connection, request, fds, command)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            if path.exists():
                path.unlink()


def reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def fork_a_check(
    connection: socket.socket,
    request: dict[str, object],
    fds: list[int],
    command: Callable[[], object],
) -> None:
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        connection.sendall(f"pid {pid}\n".encode())
        return
    # The child: the asking command's terminal, environment and folder, then the command.
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])  # type: ignore[arg-type]
        os.chdir(str(request["cwd"]))
        sys.argv = ["workshop", *request["argv"]]  # type: ignore[misc]
        code = run_command(command)
    finally:
        with contextlib.suppress(OSError):
            connection.sendall(f"{code}\n".encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_command(command: Callable[[], object]) -> int:
    try:
        command()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except KeyboardInterrupt:
        return 130
    return 0
