"""Each step's reference against one catalogue of bad input, shared by all steps.

For every route that takes input: oversize and unicode-edge strings (NUL, lone surrogates, which
JSON carries as "\\ud800"), huge, negative and over-precise numbers, deep and huge JSON, wrong
content types, malformed bodies, ids no column can hold, bad tokens, and injection payloads in
every typed parameter. Each one must be refused with a 4xx in the step's one error shape (steps
04-05: {status, detail, request_id}; before that, FastAPI's {detail}), with no stack trace, SQL
or driver message in the body, and must write nothing: every table of the step's database is
fingerprinted (row count and checksum) before and after each request.

Text that is only unusual (right-to-left marks, emoji, combining accents, HTML) and injection
payloads in free-text fields are not bad input: they are stored and read back exactly as sent.

Real servers on real PostgreSQL (tests/faults.py); a few seconds a step.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from workshop.course import Course
from workshop.postgres import Server

from .faults import Served, serve_step

# A catalogue of attacks on every step's reference: CI runs it (`uv run pytest -m exhaustive`),
# the README's run does not.
pytestmark = pytest.mark.exhaustive

# What a body must never show: a traceback, SQL, the driver, the database's own words.
LEAKS = [
    "Traceback",
    'File "',
    "site-packages",
    "sqlalchemy",
    "sqlalche.me",
    "asyncpg",
    "psycopg",
    "[SQL:",
    "[parameters:",
    "INSERT INTO",
    "UPDATE items",
    "DELETE FROM",
    "SQLSTATE",
    "violates",
    "duplicate key",
    "uq_items",
    "ck_items",
    "uq_users",
]
# Steps 04-05: every error's body (errors.py's Problem).
PROBLEM_KEYS = {"status", "detail", "request_id", "errors", "field"}
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE items; --",
    "1); DELETE FROM users; --",
    "\\' UNION SELECT hashed_password FROM users --",
    "lamp' AND pg_sleep(2) IS NULL --",
]
# Valid, if unusual: stored and read back exactly as sent.
EDGE_TEXT = [
    "\u202egnp.exe",  # a right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # a right-to-left mark, then Hebrew
    "\u0645\u0635\u0628\u0627\u062d",  # Arabic
    "\U0001f984 lamp",  # an emoji beyond the BMP (a surrogate pair in JSON)
    "\U0001f469\u200d\U0001f4bb",  # a zero-width joiner
    "cafe\u0301",  # a combining accent
    "two\nlines\tand a tab",
    "<script>alert(1)</script>",
    "{{7*7}} ${7*7}",
    "../../etc/passwd",
    "100% _sure_ \\ C:\\temp\\",
    "n" * 100,
]

NUL = "lamp\x00shade"
UNSTORABLE = {"NUL": NUL, "lone high surrogate": "\ud800", "lone low surrogate": "x\udfffy"}
VALID_ITEM = {"name": "lamp", "price": "12.50", "attributes": {"color": "red"}}


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


BAD_FIELDS: dict[str, dict[str, Any]] = {
    "name": {
        **UNSTORABLE,
        "101 characters": "n" * 101,
        "blank": "   ",
        "empty": "",
        "a number": 42,
        "a list": ["lamp"],
    },
    "price": {
        # A JSON number is a float before the schema sees it: a price is sent as a string.
        "a JSON number with cents": 9.99,
        "a whole JSON number": 10,
        "21 decimals as a string": "0.10000000000000000001",
        "an exponent": "1e2",
        "spaces around it": " 9.99 ",
        "full-width digits": "\uff19.\uff19\uff19",
        "negative": -1,
        "a cent below zero": "-0.01",
        "three decimals": "1.005",
        "nine digits before the point": "123456789",
        "1e300": 1e300,
        "NaN": "NaN",
        "Infinity": "Infinity",
        "words": "twelve",
        "an injection": "1; DROP TABLE items",
        "empty": "",
        "true": True,
        "an object": {"amount": 1},
    },
    "description": {**UNSTORABLE, "10,001 characters": "d" * 10_001, "a number": 5},
    "attributes": {
        "NaN": {"x": float("nan")},
        "Infinity": {"x": float("-inf")},
        "a NUL in a key": {"a\x00": 1},
        "a NUL in a value": {"a": NUL},
        "a surrogate deep in a list": {"a": [["\ud800"]]},
        "33 levels deep": nested(33),
        "a list": [1],
        "a string": "red",
    },
}
MALFORMED = {
    "cut short": b'{"name": "lamp", "price": ',
    "empty": b"",
    "null": b"null",
    "a string": b'"lamp"',
    "a trailing comma": b'{"name": "lamp", "price": "1",}',
    "single quotes": b"{'name': 'lamp', 'price': '1'}",
    "invalid UTF-8": b'{"name": "\xff", "price": "1"}',
    "a 1e400 price": b'{"name": "lamp", "price": 1e400}',
    "a 5,000-digit number": b'{"name": "lamp", "price": "1", "attributes": {"n": '
    + b"9" * 5000
    + b"}}",
    "100,000 levels deep": b"[" * 100_000,
    # Valid but for its size: 2 MiB of attributes.
    "2 MiB": json.dumps(
        {**VALID_ITEM, "attributes": {f"k{n}": n for n in range(160_000)}}
    ).encode(),
}
WRONG_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    None,
]
BAD_IDS = [
    "0",
    "-1",
    "2147483648",
    "99999999999999999999",
    "1e3",
    "0x10",
    "abc",
    "\uff11",  # a full-width digit one
    "%00",
    "' OR '1'='1",
    "1;DROP TABLE items",
]
BAD_LIMITS = ["0", "-1", "101", "99999999999999999999", "1.5", "ten", "", *INJECTIONS]
BAD_OFFSETS = ["-1", str(2**63), "99999999999999999999999", "1e3", "ten", *INJECTIONS]


def cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


BAD_QUERIES: list[dict[str, Any]] = [
    *({"limit": limit} for limit in BAD_LIMITS),
    {"q": ""},
    {"q": "q" * 201},
    {"q": NUL},
    {"attr": "color"},
    {"attr": ":red"},
    {"attr": f"color:{NUL}"},
    {"attr": f"{NUL}:red"},
    *({"attr": payload.replace(":", "")} for payload in INJECTIONS),  # no colon: not key:value
    {"after": "not a cursor!"},
    {"after": ""},
    {"after": "A" * 10_000},
    {"after": cursor([2**40])},
    {"after": cursor([0])},
    {"after": cursor([1.5])},
    {"after": cursor({"id": 1})},
    {"after": cursor([float("nan"), 1]), "q": "lamp"},
    *({"after": payload} for payload in INJECTIONS),
]


@dataclass(frozen=True)
class Bad:
    """One bad request: what it is, and how it is sent."""

    what: str
    method: str
    path: str
    json: Any = None  # sent with \\u escapes, so a lone surrogate travels as JSON allows
    raw: bytes | None = None
    content_type: str | None = "application/json"
    params: dict[str, Any] = field(default_factory=dict)
    form: dict[str, str] | None = None
    headers: dict[str, str] | None = None  # None: the step's usual ones (step 05's token)

    async def send(self, client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        headers = dict(headers if self.headers is None else self.headers)
        if self.form is not None:
            return await client.request(self.method, self.path, data=self.form, headers=headers)
        content = self.raw
        if content is None and self.json is not None:
            content = json.dumps(self.json).encode()
        if content is not None and self.content_type:
            headers["Content-Type"] = self.content_type
        return await client.request(
            self.method, self.path, content=content, params=self.params, headers=headers
        )


def bodies(method: str, path: str, bulk: bool = False) -> Iterator[Bad]:
    """Bad bodies for a route that takes an item (or, in bulk, a list of them)."""

    def wrap(item: Any) -> Any:  # in bulk, the bad one comes last: all or nothing
        return [{**VALID_ITEM, "name": f"{item['name']}, first"}, item] if bulk else item

    for name, values in BAD_FIELDS.items():
        for n, (what, value) in enumerate(values.items()):
            # Names of their own: should one get through, the next is not a 409 for it.
            item = {**VALID_ITEM, "name": f"{method} {path} {name} {n}", name: value}
            yield Bad(f"{name}: {what}", method, path, json=wrap(item))
    yield Bad("an unknown field", method, path, json=wrap({**VALID_ITEM, "owner_id": 2}))
    yield Bad("the id", method, path, json=wrap({**VALID_ITEM, "id": 7}))
    for what, raw in MALFORMED.items():
        yield Bad(f"malformed: {what}", method, path, raw=raw)
    for content_type in WRONG_CONTENT_TYPES:
        body = json.dumps(wrap(VALID_ITEM)).encode()
        yield Bad(f"content type {content_type}", method, path, raw=body, content_type=content_type)


def item_routes(item_id: int, *, writes: bool) -> Iterator[Bad]:
    """The /items routes of a step: steps 04-05 write, step 03 only reads."""
    methods = ["GET", "PATCH", "DELETE"] if writes else ["GET"]
    for bad_id in BAD_IDS:
        for method in methods:
            body = {"price": "1.00"} if method == "PATCH" else None
            yield Bad(f"id {bad_id!r}", method, f"/items/{bad_id}", json=body)
    if not writes:
        for limit in BAD_LIMITS:
            yield Bad(f"limit {limit!r}", "GET", "/items", params={"limit": limit})
        for offset in BAD_OFFSETS:
            yield Bad(f"offset {offset!r}", "GET", "/items", params={"offset": offset})
        return
    for params in BAD_QUERIES:
        yield Bad(f"query {params!r}"[:120], "GET", "/items", params=params)
    yield from bodies("POST", "/items")
    yield from bodies("POST", "/items/bulk", bulk=True)
    yield from (bad for bad in bodies("PATCH", f"/items/{item_id}") if bad.what != "the id")
    yield Bad("the name of another item", "POST", "/items", json={**VALID_ITEM, "name": "taken"})
    yield Bad("a name twice in a bulk", "POST", "/items/bulk", json=[VALID_ITEM, VALID_ITEM])
    yield Bad("no items in a bulk", "POST", "/items/bulk", json=[])
    yield Bad("101 items in a bulk", "POST", "/items/bulk", json=[VALID_ITEM] * 101)
    yield Bad("an object for a bulk", "POST", "/items/bulk", json=VALID_ITEM)
    patch = f"/items/{item_id}"
    yield Bad("rename to a name taken", "PATCH", patch, json={"name": "taken"})
    for name in ("name", "price", "attributes"):
        yield Bad(f"{name} set to null", "PATCH", patch, json={name: None})
    yield Bad("created_at", "PATCH", patch, json={"created_at": "2000-01-01T00:00:00Z"})


# Step 05: tokens that are not a valid one of ours.
def token(claims: dict[str, Any], key: str = "another key, not the server's: 0123456789") -> str:
    return jwt.encode(claims, key, algorithm="HS256")


FAULTS_KEY = "a-secret-key-for-the-fault-tests-only-0123456789"  # tests/faults.py's SECRET_KEY
BAD_TOKENS = {
    "no header": {},
    "no token": {"Authorization": "Bearer"},
    "Basic": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    "garbage": {"Authorization": "Bearer not.a.token"},
    "an injection": {"Authorization": f"Bearer {INJECTIONS[0]}"},
    "alg none": {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "1", "aud": "workshop-api"}, None, algorithm="none")
    },
    "another key": {"Authorization": f"Bearer {token({'sub': '1', 'aud': 'workshop-api'})}"},
    "expired": {
        "Authorization": "Bearer "
        + token({"sub": "1", "aud": "workshop-api", "iat": 1, "exp": 2}, FAULTS_KEY)
    },
    "another audience": {
        "Authorization": "Bearer "
        + token({"sub": "1", "aud": "elsewhere", "iat": 1, "exp": 2**40}, FAULTS_KEY)
    },
    "8,000 characters": {"Authorization": "Bearer " + "a" * 8000},
}
ACCOUNT = {"email": "mallory@example.com", "password": "a long enough password"}


def account_routes() -> Iterator[Bad]:
    """Step 05's /users and /auth/token, and every bad token on the routes that need one."""
    emails = {
        "not an email": "lamp",
        "no domain": "lamp@",
        "no local part": "@example.com",
        "255 characters": "m" * 243 + "@example.com",
        "a NUL": "mal\x00lory@example.com",
        "a lone surrogate": "\ud800@example.com",
        "an injection": "' OR 1=1 --@example.com",
        "taken, in capitals": ACCOUNT["email"].upper(),
        "a number": 42,
        "null": None,
    }
    for what, email in emails.items():
        yield Bad(f"email: {what}", "POST", "/users", json={**ACCOUNT, "email": email})
    passwords = {
        "11 characters": "p" * 11,
        "129 characters": "p" * 129,
        "surrogates": "\ud800" * 12,
    }
    for what, password in passwords.items():
        yield Bad(f"password: {what}", "POST", "/users", json={**ACCOUNT, "password": password})
    for extra in ({"is_active": False}, {"hashed_password": "x"}, {"id": 1}):
        yield Bad(f"sign-up with {extra}", "POST", "/users", json={**ACCOUNT, **extra})
    for what, raw in MALFORMED.items():
        yield Bad(f"sign-up malformed: {what}", "POST", "/users", raw=raw)
    forms = {
        "no username": {"password": "whatever it is"},
        "no password": {"username": ACCOUNT["email"]},
        "both empty": {"username": "", "password": ""},
        "another grant type": {"username": "mallory", "password": "x", "grant_type": "implicit"},
        "a NUL in the username": {"username": "mallory\x00@example.com", "password": "whatever"},
        "2 MiB": {"username": "m" * 2**21, "password": "whatever"},
    }
    for what, form in forms.items():
        yield Bad(f"login: {what}", "POST", "/auth/token", form=form)
    yield Bad("login with JSON", "POST", "/auth/token", json=ACCOUNT)
    for what, headers in BAD_TOKENS.items():
        for method, path in [("GET", "/users/me"), ("GET", "/items"), ("POST", "/items")]:
            body = VALID_ITEM if method == "POST" else None
            yield Bad(f"token: {what}", method, path, json=body, headers=headers)


def catalogue(number: str, item_id: int) -> list[Bad]:
    """The bad requests for a step's routes."""
    if number in {"01", "02"}:  # no route takes input: asking for others is refused
        return [
            *(Bad(f"GET /items/{bad}", "GET", f"/items/{bad}") for bad in BAD_IDS),
            Bad("POST /health", "POST", "/health", json=VALID_ITEM),
            Bad("DELETE /health", "DELETE", "/health"),
        ]
    bad = list(item_routes(item_id, writes=number != "03"))
    return [*bad, *account_routes()] if number == "05" else bad


async def fingerprint(connection: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    """Every table of the step's database: its row count, and a checksum of its rows."""
    tables = await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    )
    seen = {}
    for (table,) in tables:
        row = await connection.fetchrow(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            f' FROM "{table}" t'
        )
        seen[table] = (row[0], row[1])
    return seen


@asynccontextmanager
async def as_owner(served: Served) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the step's database as its owner (not bound by row-level security)."""
    connection = await asyncpg.connect(served.url.replace("+asyncpg", ""))
    try:
        yield connection
    finally:
        await connection.close()


def problems(number: str, response: httpx.Response) -> list[str]:
    """What is wrong with the answer to a bad request (nothing, when it is refused well)."""
    found = []
    if not 400 <= response.status_code < 500:
        found.append(f"answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        return [*found, f"not JSON: {response.text[:200]!r}"]
    if not isinstance(body, dict):
        return [*found, f"not an error: {response.text[:200]!r}"]
    if number in {"04", "05"}:
        if not ({"status", "detail", "request_id"} <= set(body) <= PROBLEM_KEYS):
            found.append(f"not the error shape: {sorted(body)}")
        elif body["status"] != response.status_code:
            found.append(f"status {body['status']} in a {response.status_code}")
        elif body["request_id"] != response.headers.get("X-Request-ID"):
            found.append("request_id differs from the X-Request-ID header")
    elif set(body) != {"detail"}:
        found.append(f"not FastAPI's error shape: {sorted(body)}")
    else:
        # FastAPI's own 422 repeats the input, injections included: look past it.
        errors = body["detail"] if isinstance(body["detail"], list) else []
        for error in errors:
            error.pop("input", None)
            error.pop("ctx", None)
    text = json.dumps(body, ensure_ascii=False)
    found += [f"shows {leak!r}" for leak in LEAKS if leak in text]
    return found


async def setup(served: Served, number: str) -> tuple[dict[str, str], int]:
    """A user (step 05), an item to aim at, and one named "taken"; the headers to send.

    VALID_ITEM's name is free: a bad body is refused for what is bad in it, not for a 409."""
    if number in {"01", "02"}:
        return {}, 1
    if number == "03":  # no route writes: straight into the table
        rows = await served.sql(
            "INSERT INTO items (name, price) VALUES ('aimed at', 12.50), ('taken', 1) RETURNING id"
        )
        return {}, rows[0]["id"]
    headers = {}
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        if number == "05":
            assert (await client.post("/users", json=ACCOUNT)).status_code == 201
            form = {"username": ACCOUNT["email"], "password": ACCOUNT["password"]}
            token = (await client.post("/auth/token", data=form)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
        items = [{**VALID_ITEM, "name": "aimed at"}, {**VALID_ITEM, "name": "taken"}]
        response = await client.post("/items/bulk", json=items, headers=headers)
        assert response.status_code == 201, response.text
        return headers, response.json()[0]["id"]


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
async def test_bad_input_is_refused_in_the_error_shape_and_writes_nothing(
    course: Course, server: Server, number: str
) -> None:
    async with serve_step(course.step(number), server) as served:
        headers, item_id = await setup(served, number)
        bad_requests = catalogue(number, item_id)
        failures = []
        async with (
            httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
            as_owner(served) as owner,
        ):
            before = await fingerprint(owner)
            for bad in bad_requests:
                response = await bad.send(client, headers)
                found = problems(number, response)
                after = await fingerprint(owner)
                if after != before:
                    found.append(f"wrote: {before} -> {after}")
                    before = after
                if found:
                    failures.append(f"{bad.method} {bad.path[:60]} ({bad.what}): {found}")
    if failures:  # pytest.fail: an assert's message would be cut after 8 lines
        log = "\n".join(line for line in served.log if "Error" in line)
        pytest.fail("\n".join(failures) + f"\n\nThe server's log:\n{log}", pytrace=False)
    print(f"{served.step.name}: {len(bad_requests)} bad requests refused, no row changed")


@pytest.mark.parametrize("number", ["04", "05"])
async def test_unusual_text_and_injections_are_stored_exactly_as_sent(
    course: Course, server: Server, number: str
) -> None:
    """Not bad input: right-to-left marks, emoji, HTML, SQL. Kept to the character, one row each;
    as search words and filters, they find nothing and change nothing."""
    async with serve_step(course.step(number), server) as served:
        headers, _ = await setup(served, number)
        failures = []
        async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as client:
            for text in [*EDGE_TEXT, *INJECTIONS]:
                sent = {
                    "name": text,
                    "description": text,
                    "price": "0.10",
                    "attributes": {text: [text]},
                }
                rows = (await served.sql("SELECT count(*) FROM items"))[0][0]
                created = await Bad(text, "POST", "/items", json=sent).send(client, headers)
                if created.status_code != 201:
                    failures.append(f"{text!r}: answered {created.status_code}: {created.text}")
                    continue
                read = (await client.get(f"/items/{created.json()['id']}")).json()
                kept = {key: read[key] for key in ("name", "description", "attributes")}
                if kept != {key: sent[key] for key in kept}:
                    failures.append(f"{text!r}: read back as {kept!r}")
                if (await served.sql("SELECT count(*) FROM items"))[0][0] != rows + 1:
                    failures.append(f"{text!r}: not exactly one row more")
            async with as_owner(served) as owner:
                before = await fingerprint(owner)
            # Not JSON that PostgreSQL holds, so an attr reads it as the text it is (NaN is no
            # JSON, 1e400 no double, and json.loads gives up on 1,500 brackets).
            not_json = ["NaN", "-Infinity", "1e400", "[" * 40 + "]" * 40, "[" * 1500 + "]" * 1500]
            for text in [*EDGE_TEXT, *INJECTIONS, *not_json]:
                key = text.replace(":", "")
                for params in ({"q": text[:200]}, {"attr": f"color:{text}"}, {"attr": f"{key}:1"}):
                    response = await client.get("/items", params=params)
                    if response.status_code != 200:
                        failures.append(f"GET /items {params!r}: answered {response.status_code}")
            async with as_owner(served) as owner:
                changed = await fingerprint(owner) != before
            if changed:
                failures.append("searching and filtering changed rows")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
