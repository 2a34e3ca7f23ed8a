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

This module is the `workshop` command's entry point: it imports nothing heavy before it
knows whether a warm process will answer.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
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


def main() -> None:
    """The `workshop` command: a check goes to the warm process when one answers."""
    if sys.argv[1:2] == ["check"] and (code := ask(Path.cwd(), sys.argv[1:])) is not None:
        sys.exit(code)
    from .cli import main as command

    command()


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
            [sys.executable, "-m", "workshop.warm", str(root)],
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


def toolkit_state() -> list[tuple[str, float]]:
    """What the warm process loaded: the toolkit's files and the installed libraries."""
    here = Path(__file__).parent
    files = [*here.glob("*.py"), Path(sys.prefix), *map(Path, sys.path[1:])]
    return [(str(f), f.stat().st_mtime) for f in files if f.exists()]


def serve(root: Path) -> None:
    """The warm process: load what every check imports, then answer until idle."""
    import importlib

    from .companion import WARM_MODULES

    # And what the `workshop` command itself imports (its consoles are made in the child,
    # which has the terminal).
    for name in (*WARM_MODULES, "typer", "rich.console", "rich.table", "rich.syntax"):
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
                fork_a_check(connection, request, fds)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            if path.exists():
                path.unlink()


def reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def fork_a_check(connection: socket.socket, request: dict[str, object], fds: list[int]) -> None:
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
        code = run_command()
    finally:
        with contextlib.suppress(OSError):
            connection.sendall(f"{code}\n".encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_command() -> int:
    from .cli import main as command

    try:
        command()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
