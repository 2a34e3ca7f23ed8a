"""Step 04 checks: pages that stay fast and complete, full-text search, JSONB filters."""

import uuid
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def add(pkg: ModuleType, session: AsyncSession, **fields: Any) -> Any:
    item = pkg.models.Item(**{"name": f"Item {uuid.uuid4().hex[:8]}", "price": 1, **fields})
    session.add(item)
    await session.commit()
    return item


async def walk(client: httpx.AsyncClient, **params: Any) -> list[list[int]]:
    """Follow next_cursor from the first page to the last; the ids of each page."""
    pages, after = [], None
    while True:
        query = {**params, **({"after": after} if after else {})}
        response = await client.get("/items", params=query)
        assert response.status_code == 200
        page = response.json()
        pages.append([item["id"] for item in page["items"]])
        if (after := page["next_cursor"]) is None:
            return pages


async def test_pages_cover_every_item_once_in_id_order(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tag = f"t{uuid.uuid4().hex}"  # a letter first: never read as a JSON number
    ids = [(await add(pkg, session, attributes={"tag": tag})).id for _ in range(7)]
    everything = [i for page in await walk(client, limit=3) for i in page]
    assert [i for i in everything if i in ids] == ids  # each once, in order
    assert everything == sorted(everything)


@pytest.mark.parametrize("after", ["nonsense", "WzEsMl0", "Wy0xXQ", "WzEwMDAwMDAwMDAwMF0"])
async def test_a_cursor_we_did_not_make_is_422(client: httpx.AsyncClient, after: str) -> None:
    # Not base64 JSON; [1, 2] (a search's cursor); [-1]; [10000000000000]: all refused.
    response = await client.get("/items", params={"after": after})
    assert response.status_code == 422


@pytest.mark.parametrize("attr", ["color", ":red", "nul\x00:1"])
async def test_a_malformed_attr_is_422(client: httpx.AsyncClient, attr: str) -> None:
    response = await client.get("/items", params={"attr": attr})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "attr"]  # as FastAPI's own 422s


@pytest.mark.exercise("04.5")
async def test_search_ranks_name_matches_first(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tag = uuid.uuid4().hex[:8]
    in_description = await add(
        pkg, session, name=f"Shade {tag}", description=f"fits any {tag} lamp"
    )
    in_name = await add(pkg, session, name=f"Lamp {tag}", description="brass")
    await add(pkg, session, name=f"Chair {tag}", description="oak")
    page = (await client.get("/items", params={"q": f"lamp {tag}"})).json()
    assert [i["id"] for i in page["items"]] == [in_name.id, in_description.id]
    # The search box's syntax: a phrase in quotes, a word to leave out with a minus.
    page = (await client.get("/items", params={"q": f"{tag} -brass -oak"})).json()
    assert [i["id"] for i in page["items"]] == [in_description.id]


@pytest.mark.exercise("04.5")
async def test_search_reduces_words_as_the_search_column_does(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The column's words were reduced with 'english' (models.py): a query's words must be
    reduced the same way, whatever the server's default configuration says."""
    tag = uuid.uuid4().hex[:8]
    lamp = await add(pkg, session, name=f"Reading lamp {tag}", description="A brass shade")
    await add(pkg, session, name=f"Lamp shade {tag}", description="Linen, for a lamp to read by")
    await add(pkg, session, name=f"Oak shelf {tag}", description="For books")
    # Names in other scripts, which another language's configuration would reduce otherwise.
    cyrillic = await add(pkg, session, name=f"Лампы {tag}")
    devanagari = await add(pkg, session, name=f"किताबें {tag}")
    # On this connection, a query that names no configuration gets 'simple', which stems
    # nothing and drops no word: only the configuration of the column finds what follows.
    await session.execute(text("SELECT set_config('default_text_search_config', 'simple', true)"))
    await session.commit()

    async def found(words: str) -> list[int]:
        response = await client.get("/items", params={"q": f"{words} {tag}"})
        assert response.status_code == 200
        return [item["id"] for item in response.json()["items"]]

    # A plural, a stop word, another form of the word; then a phrase, in quotes.
    for words in ("lamps", "the lamp", "reading", '"reading lamps"'):
        if lamp.id not in await found(words):
            pytest.fail(f"q={words!r} does not find the reading lamp: search with 'english'")
    assert await found('"reading lamps"') == [lamp.id]  # the shade has the words apart
    for words, item in (("лампы", cyrillic), ("किताबें", devanagari)):
        if await found(words) != [item.id]:
            pytest.fail(f"q={words!r} does not find {item.name!r}: search with 'english'")


@pytest.mark.exercise("04.5")
async def test_search_and_attributes_together_keep_what_matches_both(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tag = uuid.uuid4().hex[:8]
    red_lamp = await add(pkg, session, name=f"Lamp {tag}", attributes={"color": "red"})
    await add(pkg, session, name=f"Lamp {tag} blue", attributes={"color": "blue"})
    await add(pkg, session, name=f"Chair {tag}", attributes={"color": "red"})
    response = await client.get("/items", params={"q": f"lamp {tag}", "attr": "color:red"})
    found = [item["id"] for item in response.json()["items"]]
    assert found == [red_lamp.id], "q and attr together: the items that match both, only"


@pytest.mark.exercise("04.5")
async def test_search_pages_walk_every_match_once(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Seven matches of different ranks (the word once or more), and one item that is not.
    ids = {
        (await add(pkg, session, name=f"{tag} {n}", description=f"{tag} " * (n % 3))).id
        for n in range(7)
    }
    await add(pkg, session, name="Not a match")
    pages = await walk(client, q=tag, limit=2)
    seen = [i for page in pages for i in page]
    assert sorted(seen) == sorted(ids)  # every match, once, across 4 pages


@pytest.mark.exercise("04.5")
async def test_attr_filters_by_jsonb_containment(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tag = f"t{uuid.uuid4().hex}"  # a letter first: never read as a JSON number
    red_10 = await add(pkg, session, attributes={"tag": tag, "color": "red", "size": 10})
    red_12 = await add(pkg, session, attributes={"tag": tag, "color": "red", "size": 12})
    await add(pkg, session, attributes={"tag": tag, "color": "blue", "size": 10})
    red_text = await add(pkg, session, attributes={"tag": tag, "color": "red", "size": "10"})

    async def ids(*attrs: str) -> list[int]:
        page = (await client.get("/items", params={"attr": [f"tag:{tag}", *attrs]})).json()
        return [item["id"] for item in page["items"]]

    assert await ids("color:red") == [red_10.id, red_12.id, red_text.id]
    assert await ids("color:red", "size:10") == [red_10.id]  # size:10 is the number 10
    assert await ids('size:"10"') == [red_text.id]  # and size:"10" the string
    assert await ids("color:green") == []


@pytest.mark.exercise("04.5")
async def test_each_filter_is_sent_only_when_asked_and_uses_its_index(
    client: httpx.AsyncClient,
    session: AsyncSession,
    selects: list[Any],
    explain: Callable[[Any], Awaitable[str]],
) -> None:
    """A filter nobody asked for costs every listing; a filter no index serves reads every row."""
    assert (await client.get("/items")).status_code == 200
    assert "WHERE" not in selects[-1].sql, "GET /items with no q and no attr filtered anyway"
    # What the client sends travels beside the SQL, as parameters: never inside its text,
    # escaped or not. (One statement text for every search, too, which the server keeps ready.)
    word = f"w{uuid.uuid4().hex[:12]}"
    for query in (f"q={word}", f"attr=maker:{word}", f"attr={word}:1"):
        assert (await client.get(f"/items?{query}")).status_code == 200
        if word in selects[-1].sql:
            pytest.fail(f"GET /items?{query} pasted the client's words into the SQL: bind them")
    # The stored `search` column's GIN index answers @@; the attributes' GIN index answers @>.
    for query, index in (("q=lamp", "ix_items_search"), ("attr=color:red", "ix_items_attributes")):
        assert (await client.get(f"/items?{query}")).status_code == 200
        if index not in await explain(selects[-1]):
            pytest.fail(f"GET /items?{query} sends a filter that the index {index} cannot serve")
