"""MkDocs hook: each step's notebook as a page of the site, rendered at build time.

The notebooks stay in `notebooks/`, where learners run them; the site shows a read-only copy
(they are stored without outputs) in its own style, so search, dark mode and the copy buttons
work on it, nothing is fetched from another origin, and a build takes no kernel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent


def _fence(code: str) -> str:
    """A fence longer than any run of backticks in the code, so the code cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def render(notebook: Path, step_page: str) -> str:
    """The notebook as Markdown: its text cells as they are, its code cells as Python blocks."""
    cells: list[dict[str, Any]] = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parts: list[str] = []
    for index, cell in enumerate(cells):
        source = "".join(cell["source"]).strip("\n")
        if cell["cell_type"] == "code":
            fence = _fence(source)
            parts.append(f"{fence}python\n{source}\n{fence}")
        else:
            parts.append(source)
        if index == 0:
            # After the title and the notebook's own introduction: how to run it for real.
            parts.append(
                '!!! info "A read-only view of the notebook"\n'
                f"    This is `notebooks/{notebook.name}`, as it is stored: without its outputs."
                " Run it on your machine to see them, on the workshop's database:\n\n"
                f"    ```bash\n    uv run jupyter lab notebooks/{notebook.name}\n    ```\n\n"
                f"    It goes with the step's page, [{step_page}](../steps/{notebook.stem}.md)."
            )
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    # One page per step's notebook, at notebooks/NN-name.md; other notebooks are not steps.
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        step = Path(config.docs_dir) / "steps" / f"{notebook.stem}.md"
        if not step.is_file():
            continue
        title = step.read_text(encoding="utf-8").partition("\n")[0].removeprefix("# ")
        step_page = title.partition(":")[0]  # "01 Setup: settings and a first app" -> "01 Setup"
        page = File.generated(
            config, f"notebooks/{notebook.stem}.md", content=render(notebook, step_page)
        )
        files.append(page)
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder: Any) -> LiveReloadServer:
    # `mkdocs serve` rebuilds when a notebook is saved, as it does for the pages.
    server.watch(str(_root(config) / "notebooks"))
    return server
