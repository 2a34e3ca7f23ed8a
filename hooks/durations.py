"""MkDocs hook: the course map's times, worked out from the files at build time.

A time in the map is an estimate, and says what it rests on: the page's words at a reading
pace, a time per exercise, a time per demonstration of the notebook. Written by hand, such a
figure drifts as the pages grow; made here, it cannot. `<!-- estimate: steps/01-setup.md -->`
in a page becomes that page's estimate, `<!-- estimate: total -->` the sum of the page's
others, and `<!-- estimate: basis -->` the sentence that says how they are made.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig

# Technical prose read to be done, not skimmed.
WORDS_PER_MINUTE = 150
# Write the code, run the check, read what it says, try again.
MINUTES_PER_EXERCISE = 15
# A notebook cell: run it, read its output.
MINUTES_PER_DEMONSTRATION = 2
MARKER = re.compile(r"<!-- estimate: (?P<what>[\w./-]+) -->")
FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1\s*$", re.M | re.S)


def words(markdown: str) -> int:
    """The prose of a page: code blocks, includes and comments left out."""
    prose = FENCE.sub("", markdown)
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
    prose = re.sub(r"^\s*--8<--.*$", "", prose, flags=re.M)
    return len(re.findall(r"[A-Za-z0-9][\w'-]*", prose))


def minutes(root: Path, page: str) -> int:
    """A page's estimate: reading it, its step's exercises and its notebook's demonstrations
    (the step and the notebook that share the page's name, when there are)."""
    docs = root / "docs"
    name = Path(page).stem
    total = words((docs / page).read_text(encoding="utf-8")) / WORDS_PER_MINUTE
    if (exercises := root / "steps" / name / "exercises.toml").is_file():
        found = tomllib.loads(exercises.read_text(encoding="utf-8")).get("exercise", [])
        total += MINUTES_PER_EXERCISE * len(found)
    if (notebook := root / "notebooks" / f"{name}.ipynb").is_file():
        cells: list[dict[str, Any]] = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        total += MINUTES_PER_DEMONSTRATION * sum(c["cell_type"] == "code" for c in cells)
    return max(5, round(total / 5) * 5)


def spoken(total: int) -> str:
    """`about 1 h 35`, `about 45 min`, `about 2 h`."""
    hours, rest = divmod(total, 60)
    if not hours:
        return f"about {rest} min"
    return f"about {hours} h {rest:02d}" if rest else f"about {hours} h"


BASIS = (
    f"each page's words at {WORDS_PER_MINUTE} a minute, {MINUTES_PER_EXERCISE} minutes per "
    f"exercise and {MINUTES_PER_DEMONSTRATION} per demonstration of its notebook"
)


def fill(markdown: str, root: Path) -> str:
    """The page with every estimate marker replaced by its figure."""
    pages = [m["what"] for m in MARKER.finditer(markdown) if m["what"] not in ("total", "basis")]
    figures = {page: minutes(root, page) for page in pages}

    def figure(match: re.Match[str]) -> str:
        what = match["what"]
        if what == "basis":
            return BASIS
        if what == "total":
            return spoken(sum(figures.values()))
        return spoken(figures[what])

    return MARKER.sub(figure, markdown)


def on_page_markdown(markdown: str, page: Any, config: MkDocsConfig, files: Any) -> str:
    return fill(markdown, Path(config.config_file_path).parent)
