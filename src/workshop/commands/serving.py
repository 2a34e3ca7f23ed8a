"""Serving a step: how `workshop run` logs (uvicorn's own configuration, with unfinished
exercises shortened), and a free port for a server of the toolkit's or the tests' own."""

from __future__ import annotations

import copy
import logging
import socket
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from ..course.starter import STUB_MESSAGE


class ExerciseStubFilter(logging.Filter):
    """A request that reached an exercise's stub logs one line saying what to do, instead of
    a traceback of forty lines with that line at the bottom."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, NotImplementedError) and STUB_MESSAGE.match(str(error)):
            record.msg, record.args = "%s (the request answered 500)", (error,)
            record.exc_info, record.exc_text = None, None
        return True


def log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"exercise_stubs": {"()": "workshop.commands.serving.ExerciseStubFilter"}}
    config["handlers"]["default"]["filters"] = ["exercise_stubs"]
    return config


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
