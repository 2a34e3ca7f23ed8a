"""Step 04's test helpers (the SQL statement recorder, `statements`, is the plugin's)."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def new_item() -> Callable[..., dict[str, Any]]:
    """A valid POST /items body with a name no other test uses."""

    def make(**fields: Any) -> dict[str, Any]:
        return {"name": f"Item {uuid.uuid4().hex[:12]}", "price": "9.99", **fields}

    return make
