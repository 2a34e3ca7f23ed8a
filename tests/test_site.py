"""The course site in a real browser: the system's Chromium, driven by Playwright, opens the
built site served on 127.0.0.1 with every other host unresolvable, as in a room with no Wi-Fi.

Where Chromium is missing the tests skip (a learner's laptop); CI sets WORKSHOP_REQUIRE_BROWSER
and installs it, so there they fail instead."""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from workshop.course import Course, Step
from workshop.postgres import Server

from .faults import serve_step

SCREENSHOTS = Path("build") / "site-screenshots"
INSTALL = "sudo apt-get install chromium"


def chromium() -> str | None:
    """WORKSHOP_CHROMIUM names any Chromium or Chrome; otherwise Debian's and Ubuntu's names."""
    named = os.environ.get("WORKSHOP_CHROMIUM")
    return named or shutil.which("chromium") or shutil.which("chromium-browser")


def pages(site: Path) -> list[str]:
    """Every page the build wrote, as a path under the site's root (`steps/01-setup/`)."""
    found = []
    for html in sorted(site.rglob("*.html")):
        relative = html.relative_to(site).as_posix()
        if relative != "404.html":
            found.append(relative.removesuffix("index.html"))
    return found


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would bury pytest's own output


@pytest.fixture(scope="module")
def origin(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (a port the system picks, free by construction)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    if executable is None:
        reason = f"no Chromium to open the site in: `{INSTALL}` installs it"
        if os.environ.get("WORKSHOP_REQUIRE_BROWSER"):
            pytest.fail(f"{reason} (WORKSHOP_REQUIRE_BROWSER is set)")
        pytest.skip(reason)
    # Every host but the site's own fails to resolve: a request that would leave the site
    # fails here as it would offline, and the tab records it.
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=[offline])
        yield launched
        launched.close()


@dataclass
class Tab:
    """One browser tab for the whole module (the browser keeps mermaid compiled from one page
    to the next), and what the page in it did that a reader would suffer from."""

    page: Page
    origin: str
    problems: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.problems.clear()
        self.page.goto(urljoin(self.origin, path))

    def watch(self) -> None:
        """Record console errors, uncaught exceptions, failed loads and other hosts."""
        page, host = self.page, urlsplit(self.origin).netloc

        def request(request: Any) -> None:
            url = urlsplit(request.url)
            if url.scheme in ("http", "https", "ws", "wss") and url.netloc != host:
                self.problems.append(f"request to another origin: {request.url}")

        def response(response: Any) -> None:
            if response.status >= 400:
                self.problems.append(f"{response.status} for {response.url}")

        def console(message: Any) -> None:
            if message.type == "error":
                self.problems.append(f"console error: {message.text}")

        page.on("request", request)
        page.on("response", response)
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", console)


@pytest.fixture(scope="module")
def tab(browser: Browser, origin: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    opened = Tab(context.new_page(), origin)
    opened.watch()
    yield opened
    context.close()


def diagrams_drawn(page: Page) -> list[str]:
    """What each mermaid host holds. Material draws a diagram into a closed shadow root, which
    the page's own scripts cannot read: the DevTools protocol can."""
    session = page.context.new_cdp_session(page)
    try:
        root = session.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
    finally:
        session.detach()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        flat = node.get("attributes", [])
        attributes = dict(zip(flat[::2], flat[1::2], strict=True))
        if node.get("localName") == "div" and "mermaid" in attributes.get("class", "").split():
            shadow = node.get("shadowRoots", [{}])[0].get("children", [])
            svg = next((child for child in shadow if child.get("localName") == "svg"), None)
            if svg is None:
                found.append("no svg")
            else:
                drawn = svg.get("attributes", [])
                # Mermaid draws its own error picture as an SVG too: a bomb, not a diagram.
                error = "aria-roledescription" in drawn and "error" in drawn
                found.append("error" if error else "svg")
        for child in node.get("children", []) + node.get("shadowRoots", []):
            walk(child)

    walk(root)
    return found


CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)|@import\s+['"]([^'"]+)""")
OUTSIDE = re.compile(r"^(https?:)?//", re.I)
# <link> relations a browser does not fetch: they name a page, like a plain link.
NOT_FETCHED = {"canonical", "alternate", "author", "license", "next", "prev", "help", "me"}


class Fetched(HTMLParser):
    """Every address in a page that a browser fetches by itself (not the links to follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_style = tag == "style"
        rel = set((dict(attrs).get("rel") or "").lower().split())
        followed = tag == "a" or (tag == "link" and rel <= NOT_FETCHED)
        for name, value in attrs:
            if not value or (followed and name == "href"):
                continue
            if name in ("src", "href", "xlink:href", "poster", "data"):
                self.addresses.append(value)
            elif name in ("srcset", "imagesrcset"):
                self.addresses += [part.split()[0] for part in value.split(",") if part.strip()]
            elif name == "style":
                self.addresses += [a or b for a, b in CSS_URL.findall(value)]

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.addresses += [a or b for a, b in CSS_URL.findall(data)]


def test_no_page_or_stylesheet_loads_anything_from_another_origin(site: Path) -> None:
    """What the browser walk below may not see: an image too far down to be loaded, a
    preconnect, a stylesheet's url(). Plain links (<a href>) may leave the site."""
    found = []
    for html in site.rglob("*.html"):
        parser = Fetched()
        parser.feed(html.read_text("utf-8"))
        found += [f"{html.relative_to(site)}: {a}" for a in parser.addresses if OUTSIDE.match(a)]
    for css in site.rglob("*.css"):
        addresses = [a or b for a, b in CSS_URL.findall(css.read_text("utf-8"))]
        found += [f"{css.relative_to(site)}: {a}" for a in addresses if OUTSIDE.match(a)]
    assert not found, "\n".join(found)


@pytest.mark.exhaustive  # a browser: CI runs it (`uv run pytest -m exhaustive`)
def test_every_page_loads_offline_draws_its_diagrams_and_is_photographed(
    tab: Tab, site: Path, course: Course
) -> None:
    """Each page: no console error, no request to another host, every mermaid block an SVG.
    One screenshot per page in build/site-screenshots/, at its first diagram if it has one."""
    shots = course.root / SCREENSHOTS
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    walked = pages(site)
    assert len(walked) >= 5, walked
    tab.open("")
    nav = tab.page.eval_on_selector_all(
        "nav.md-nav--primary a.md-nav__link[href]", "links => links.map(a => a.href)"
    )
    in_nav = {urlsplit(urljoin(tab.origin, href)).path.lstrip("/") for href in nav}
    assert in_nav <= set(walked), f"the nav links pages the build did not write: {in_nav}"

    problems: dict[str, list[str]] = {}
    for path in walked:
        tab.open(path)
        expected = (site / path / "index.html").read_text("utf-8").count('<pre class="mermaid">')
        if expected:
            try:
                # Material swaps each <pre class="mermaid"> for a <div class="mermaid"> host.
                tab.page.wait_for_function(
                    "n => document.querySelectorAll('div.mermaid').length === n",
                    arg=expected,
                    timeout=10_000,
                )
                tab.page.eval_on_selector("div.mermaid", "d => d.scrollIntoView({block: 'center'})")
            except PlaywrightTimeout:
                tab.problems.append(f"{expected} mermaid diagrams were not drawn")
            drawn = diagrams_drawn(tab.page)
            if drawn != ["svg"] * expected:
                tab.problems.append(f"mermaid: {expected} diagrams, drawn: {drawn}")
        name = path.strip("/").replace("/", "--") or "home"
        tab.page.screenshot(path=shots / f"{name}.png")
        if tab.problems:
            problems[path or "/"] = list(tab.problems)
    assert not problems, "\n".join(
        f"{path}: {line}" for path, lines in problems.items() for line in lines
    )


@pytest.mark.exhaustive  # a browser: CI runs it (`uv run pytest -m exhaustive`)
def test_the_search_finds_pool_size(tab: Tab) -> None:
    tab.open("")
    tab.page.locator("input.md-search__input").click()
    tab.page.keyboard.type("pool_size")
    first = tab.page.locator(".md-search-result__item").first
    expect(first).to_contain_text("pool_size", timeout=10_000)
    assert not tab.problems, tab.problems


@pytest.mark.exhaustive  # a browser: CI runs it (`uv run pytest -m exhaustive`)
def test_a_collapsed_hint_opens_on_click(tab: Tab, site: Path) -> None:
    """The site's first `??? ` block: closed when its page loads, open after a click."""
    closed = re.compile(r"<details(?![^>]*\bopen)")
    path = next(
        (p for p in pages(site) if closed.search((site / p / "index.html").read_text("utf-8"))),
        None,
    )
    assert path is not None, "no page has a collapsed block"
    tab.open(path)
    first = tab.page.evaluate("[...document.querySelectorAll('details')].findIndex(d => !d.open)")
    hint = tab.page.locator("details").nth(first)
    inside = hint.locator(":scope > :not(summary)").first
    expect(inside).to_be_hidden()
    hint.locator(":scope > summary").click()
    expect(hint).to_have_js_property("open", True)
    expect(inside).to_be_visible()
    assert not tab.problems, tab.problems


@pytest.mark.exhaustive  # a browser: CI runs it (`uv run pytest -m exhaustive`)
def test_dark_mode_switches(tab: Tab) -> None:
    """The palette toggle, and back: the tab is left in light mode, as it was."""
    tab.open("")
    scheme = "document.body.getAttribute('data-md-color-scheme')"
    assert tab.page.evaluate(scheme) == "default"
    tab.page.locator("label.md-header__button[title='Dark mode']").click()
    tab.page.wait_for_function(f"{scheme} === 'slate'", timeout=5_000)
    tab.page.locator("label.md-header__button[title='Light mode']").click()
    tab.page.wait_for_function(f"{scheme} === 'default'", timeout=5_000)
    assert not tab.problems, tab.problems


@contextmanager
def served_in_background(step: Step, server: Server) -> Iterator[str]:
    """The step's reference under uvicorn (tests/faults.py), kept up by an event loop in a
    thread of its own while the sync browser works; yields its base URL."""
    ready: queue.Queue[str | BaseException] = queue.Queue()
    done = threading.Event()

    async def serve() -> None:
        try:
            async with serve_step(step, server) as served:
                ready.put(served.base_url)
                await asyncio.to_thread(done.wait)
        except BaseException as exc:  # handed to the test, which raises it
            ready.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    started = ready.get(timeout=120)
    try:
        if isinstance(started, BaseException):
            raise started
        yield started
    finally:
        done.set()
        thread.join(timeout=60)


@pytest.mark.exhaustive  # a browser: CI runs it (`uv run pytest -m exhaustive`)
@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
def test_a_steps_docs_page_renders_its_operations_offline(
    browser: Browser, course: Course, server: Server, number: str
) -> None:
    """The page a learner opens most, `/docs`, with no network: Swagger UI comes from the
    app itself (fastapi-offline), not a CDN, and draws every operation of the schema."""
    with served_in_background(course.step(number), server) as base_url:
        schema = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
        operations = sum(
            1
            for methods in schema["paths"].values()
            for method in methods
            if method in {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            tab = Tab(context.new_page(), f"{base_url}/")
            tab.watch()
            tab.open("docs")
            tab.page.wait_for_function(
                "n => document.querySelectorAll('.opblock').length === n",
                arg=operations,
                timeout=15_000,
            )
            assert not tab.page.locator(".errors-wrapper").count(), "Swagger UI shows errors"
            assert not tab.problems, tab.problems
        finally:
            context.close()
