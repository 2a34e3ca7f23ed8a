"""The course on disk: its steps, their exercises and hints, the starters generated from the
solutions, the generated files, and the catalogues of wrong answers.

Pure: it reads and writes files, and may import no other package of the toolkit (no
database, no checks, no commands).
"""

from .model import COMMAND, Course, Exercise, Step, UnknownName, WorkshopError, find_root, step_of

__all__ = [
    "COMMAND",
    "Course",
    "Exercise",
    "Step",
    "UnknownName",
    "WorkshopError",
    "find_root",
    "step_of",
]
