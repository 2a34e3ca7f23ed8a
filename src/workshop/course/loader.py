"""Load a step's package under a module name of its own.

Every step has a package called `app`: imported by that name, step 02's tests could silently
run step 01's code. Each is loaded as `step01_app`, `step01_solution`, ... instead; the
relative imports inside it resolve within it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from .model import Step, WorkshopError


def module_name(step: Step, *, solution: bool) -> str:
    """`step04_app`; another folder of step 04 in the same process (the copies that hold
    wrong answers) gets a name of its own, from its path."""
    name = f"step{step.number}_{'solution' if solution else 'app'}"
    package_dir = step.package_dir(solution=solution)
    loaded = sys.modules.get(name)
    if loaded is None or Path(loaded.__path__[0]) == package_dir:
        return name
    return f"{name}_{hashlib.sha1(str(package_dir).encode()).hexdigest()[:8]}"


def load_package(step: Step, *, solution: bool) -> ModuleType:
    """Import the step's `app/` (or `solution/`) and all its modules; cached per process."""
    name = module_name(step, solution=solution)
    if (loaded := sys.modules.get(name)) is not None:
        return loaded
    package = load_folder(step.package_dir(solution=solution), name)
    try:
        # Import every module now, so `pkg.config.Settings` works without importing it by hand.
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(info.name)
    except BaseException:
        forget(name)
        raise
    return package


def load_folder(folder: Path, name: str) -> ModuleType:
    """Import a folder of the course as the package `name` (its modules import each other
    relatively: `from .model import Results`); cached per process. Also the benchmark's,
    bench/, a maintainer's tool kept out of the toolkit's package."""
    if (loaded := sys.modules.get(name)) is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise WorkshopError(f"{folder} is not a Python package (no __init__.py).")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # before it runs: its dataclasses look themselves up there
    try:
        spec.loader.exec_module(package)
    except BaseException:
        forget(name)
        raise
    return package


def forget(name: str) -> None:
    """Unload a package that failed to import, and whichever of its modules did import."""
    for loaded_name in [n for n in sys.modules if n == name or n.startswith(f"{name}.")]:
        del sys.modules[loaded_name]
