"""tests/test_fuzz.py's hooks: two refusals by design let through, and names made unique.

A schema-valid request answered 422 fails schemathesis's ST202. Two such requests are refused by
design, because JSON Schema has no word for their rule; each is let through only in its exact
case (a 422 that names that one field, for that one reason), and the step pages say why:

- GET /items?after=...: the cursor is opaque. The schema can say "a string", not "one of the
  strings this API made"; any other is a 422 (docs/steps/04-crud.md).
- POST /users: `format: email` is an address's syntax. The API also refuses the special-use
  domains no mail reaches (`.test`, `.localhost`, `.invalid`, ...: RFC 6761), as
  email-validator does (docs/steps/05-security.md).

A check of their own, beside schemathesis's: every 405 names in Allow exactly the methods the
schema documents for the path. (schemathesis's ST205 looks at OPTIONS only, and takes an empty
Allow header for none at all.)

And each name (or email) a valid request writes is made one of its own, so that the request
reaches PostgreSQL: generated values repeat ("0", then "0" again), and most writes would stop at
the 409 of a name taken, leaving the INSERT or UPDATE behind them untested.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from schemathesis.core.transport import HTTP_METHODS_SCHEMA
from schemathesis.openapi.checks import RejectedPositiveData


def refused_fields(response: Any) -> set[tuple[str | int, ...]]:
    """Where a 422 of the API's error shape says the request is wrong."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return set()
    return {tuple(error["loc"]) for error in errors}


def special_use(email: object) -> bool:
    """Whether the address is at a special-use domain (email-validator's list)."""
    if not isinstance(email, str):
        return False
    domain = email.rpartition("@")[2].lower().rstrip(".")
    return any(domain == name or domain.endswith(f".{name}") for name in SPECIAL_USE_DOMAIN_NAMES)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the two refusals by design."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    where = refused_fields(response)
    label = case.operation.label
    if label == "GET /items" and where == {("query", "after")}:
        return False  # a cursor this API did not make
    body = case.body if isinstance(case.body, dict) else {}
    # An address no mail can reach.
    return not (
        label == "POST /users" and where == {("body", "email")} and special_use(body.get("email"))
    )


WRITES = {"POST /items", "POST /items/bulk", "PATCH /items/{item_id}"}
serial = itertools.count(1)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """A valid write's names, and a sign-up's email, made unique and still valid: at most 90
    characters of the generated name, a space and a number (a name is 1 to 100 characters once
    stripped); the email's local part gets a +number."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case  # a request meant to be refused stays as it was made
    if case.operation.label in WRITES:
        for item in case.body if isinstance(case.body, list) else [case.body]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                item["name"] = f"{item['name'][:90]} {next(serial)}"
    elif case.operation.label == "POST /users" and isinstance(case.body, dict):
        local, at, domain = str(case.body.get("email")).rpartition("@")
        if at:  # a local part is at most 64 characters
            case.body["email"] = f"{local[:56]}+{next(serial)}@{domain}"
    return case


@schemathesis.check
def allow_names_the_methods_of_the_path(ctx: Any, response: Any, case: Any) -> None:
    """A 405's Allow header: exactly the methods the schema documents for the path."""
    if response.status_code != 405:
        return
    header = ", ".join(response.headers.get("allow", []))
    allowed = {method.strip().upper() for method in header.split(",") if method.strip()}
    path = case.operation.path
    documented = {method.upper() for method in case.operation.schema[path]}
    documented &= {method.upper() for method in HTTP_METHODS_SCHEMA}
    if allowed != documented:
        raise AssertionError(
            f"A 405 for {path} says `Allow: {header}`; the schema documents {sorted(documented)}"
        )
