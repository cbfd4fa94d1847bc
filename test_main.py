"""Tests for the Book API: every route, every rule, the errors included. Run them with `pytest`.

Each test gets a fresh SQLite file and runs the app's own lifespan (tables created, engine disposed), then talks to
the app through httpx.AsyncClient over ASGITransport: real HTTP requests and responses, no server process.
"""

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import Connection, MetaData, inspect, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

import main

HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937, "isbn": "978-0-547-92822-7"}
HOBBIT_ISBN13 = "9780547928227"
AUSTEN_ISBN10, AUSTEN_ISBN13 = "0-14-143951-3", "9780141439518"
MAX_ID = 2**63 - 1
BAD_IDS = ["0", "-1", str(2**63), str(10**30), "abc", "1.5", "9" * 5000]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A new SQLite file, or the server that TEST_DATABASE_URL names (emptied for each test)."""
    return os.getenv("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'books.db'}"


@pytest.fixture
async def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncClient]:
    """A client for the app on a fresh database, with API_KEY unset."""
    engine = main.create_engine_for(db_url)
    async with engine.begin() as connection:
        await connection.run_sync(drop_every_table)
    monkeypatch.setattr(main, "engine", engine)
    monkeypatch.setattr(main, "SessionLocal", async_sessionmaker(engine, expire_on_commit=False))
    monkeypatch.setattr(main, "API_KEY", None)
    transport = ASGITransport(app=main.app)
    async with main.lifespan(main.app), AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def drop_every_table(connection: Connection) -> None:
    """Empty the database, including tables that another version of main.py made on the same server."""
    if connection.dialect.name == "postgresql":  # one statement, much faster than looking up every table
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")
        return
    tables = MetaData()
    tables.reflect(connection)
    tables.drop_all(connection)


def book(**changes: Any) -> dict[str, Any]:
    return {**HOBBIT, **changes}


async def create(client: AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/books", json=book(**changes))
    assert response.status_code == 201, response.text
    return response.json()


async def stored_books() -> list[dict[str, Any]]:
    """Every row in the table, read past the API."""
    async with main.SessionLocal() as session:
        books = await session.scalars(select(main.BookModel).order_by(main.BookModel.id))
        return [main.BookOut.model_validate(b).model_dump() for b in books]


def error_locations(response: Response) -> list[list[str | int]]:
    return [error["loc"] for error in response.json()["detail"]]


# --- POST /books -----------------------------------------------------------------------------------------------------


async def test_create_returns_201_location_and_the_stored_book(client: AsyncClient) -> None:
    response = await client.post("/books", json=HOBBIT)

    assert response.status_code == 201
    created = response.json()
    assert created == {"id": created["id"], **HOBBIT, "isbn": HOBBIT_ISBN13}
    assert isinstance(created["id"], int) and created["id"] >= 1
    assert response.headers["location"] == f"/books/{created['id']}"
    assert await stored_books() == [created]


async def test_database_assigns_distinct_ids(client: AsyncClient) -> None:
    first = await create(client, isbn=None)
    second = await create(client, isbn=None)
    assert first["id"] != second["id"]


async def test_client_cannot_send_an_id(client: AsyncClient) -> None:
    response = await client.post("/books", json=book(id=7))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "id"]]
    assert response.json()["detail"][0]["type"] == "extra_forbidden"
    assert await stored_books() == []


async def test_unknown_fields_are_rejected(client: AsyncClient) -> None:
    response = await client.post("/books", json=book(pages=310))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "pages"]]


async def test_isbn_is_optional_and_null_by_default(client: AsyncClient) -> None:
    created = await create(client, isbn=None)
    without = await client.post("/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    assert created["isbn"] is None
    assert without.status_code == 201 and without.json()["isbn"] is None


@pytest.mark.parametrize("field", ["title", "author", "year"])
async def test_required_fields(client: AsyncClient, field: str) -> None:
    body = book()
    del body[field]
    response = await client.post("/books", json=body)
    assert response.status_code == 422
    assert error_locations(response) == [["body", field]]
    assert response.json()["detail"][0]["type"] == "missing"


# --- Field rules: title, author, year, isbn ------------------------------------------------------------------------


async def test_title_and_author_are_stripped(client: AsyncClient) -> None:
    created = await create(client, title="  The Hobbit \t", author="\u00a0J. R. R. Tolkien ")
    assert (created["title"], created["author"]) == ("The Hobbit", "J. R. R. Tolkien")


@pytest.mark.parametrize(("field", "limit"), [("title", 200), ("author", 100)])
async def test_length_limits_count_after_stripping(client: AsyncClient, field: str, limit: int) -> None:
    longest = await client.post("/books", json=book(isbn=None, **{field: "  " + "x" * limit + "  "}))
    too_long = await client.post("/books", json=book(isbn=None, **{field: "x" * (limit + 1)}))
    assert longest.status_code == 201 and len(longest.json()[field]) == limit
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["type"] == "string_too_long"


@pytest.mark.parametrize("field", ["title", "author"])
@pytest.mark.parametrize("value", ["", "   ", "\t\n", None, 42, ["x"], "line\nbreak", "nul\u0000char", "bell\x07"])
async def test_bad_title_or_author(client: AsyncClient, field: str, value: Any) -> None:
    response = await client.post("/books", json=book(**{field: value}))
    assert response.status_code == 422
    assert error_locations(response) == [["body", field]]
    assert await stored_books() == []


def test_every_year_from_1000_to_2026_is_accepted() -> None:
    for year in range(1000, 2027):
        assert main.BookIn.model_validate(book(year=year)).year == year


@pytest.mark.parametrize("year", [1, 1000, 2026, 9999])
async def test_year_bounds_accepted(client: AsyncClient, year: int) -> None:
    assert (await create(client, isbn=None, year=year))["year"] == year


@pytest.mark.parametrize("year", [0, -1, 10000, 99999, 2**63, 2**64, 10**30, "1937", 1937.0, 1937.5, True, None])
async def test_year_rejected(client: AsyncClient, year: Any) -> None:
    response = await client.post("/books", json=book(year=year))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "year"]]
    assert await stored_books() == []


async def test_year_beyond_floating_point_range(client: AsyncClient) -> None:
    body = json.dumps(book()).replace("1937", "1e400")
    response = await client.post("/books", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "int_type"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("9780547928227", HOBBIT_ISBN13),
        ("978-0-547-92822-7", HOBBIT_ISBN13),
        (" 978 0 547 92822 7 ", HOBBIT_ISBN13),
        (AUSTEN_ISBN10, AUSTEN_ISBN13),
        ("0141439513", AUSTEN_ISBN13),
        ("0-8044-2957-X", "9780804429573"),
        ("0-8044-2957-x", "9780804429573"),
    ],
)
async def test_isbn_is_stored_as_isbn13(client: AsyncClient, sent: str, stored: str) -> None:
    assert (await create(client, isbn=sent))["isbn"] == stored


@pytest.mark.parametrize(
    "isbn",
    [
        "9780547928228",
        "0-14-143951-4",
        "978054792822",
        "97805479282270",
        "abcdefghij",
        "9770547928227",
        "",
        "٩٧٨٠٥٤٧٩٢٨٢٢٧",
    ],
)
async def test_invalid_isbn(client: AsyncClient, isbn: str) -> None:
    response = await client.post("/books", json=book(isbn=isbn))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "isbn"]]
    assert await stored_books() == []


async def test_duplicate_isbn_is_409_naming_it(client: AsyncClient) -> None:
    await create(client)
    response = await client.post("/books", json=book(title="Another"))
    assert response.status_code == 409
    assert HOBBIT_ISBN13 in response.json()["detail"]
    assert len(await stored_books()) == 1


async def test_same_book_cannot_enter_twice_under_two_spellings(client: AsyncClient) -> None:
    await create(client, isbn=AUSTEN_ISBN10)
    response = await client.post("/books", json=book(isbn=AUSTEN_ISBN13))
    assert response.status_code == 409
    assert AUSTEN_ISBN13 in response.json()["detail"]


async def test_many_books_without_isbn(client: AsyncClient) -> None:
    for _ in range(3):
        await create(client, isbn=None)
    assert len(await stored_books()) == 3


async def test_concurrent_creates_of_one_isbn_give_one_201_and_the_rest_409(client: AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post("/books", json=book(title=f"Copy {i}")) for i in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert len(await stored_books()) == 1


# --- GET /books/{id} -------------------------------------------------------------------------------------------------


async def test_read_book(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.get(f"/books/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


async def test_missing_book_is_404_with_its_id(client: AsyncClient) -> None:
    response = await client.get("/books/42")
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}


async def test_largest_id_is_a_plain_404(client: AsyncClient) -> None:
    response = await client.get(f"/books/{MAX_ID}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Book {MAX_ID} not found"}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_ids_outside_1_to_2_63_are_422(client: AsyncClient, method: str, bad_id: str) -> None:
    body = book() if method == "PUT" else {} if method == "PATCH" else None
    response = await client.request(method, f"/books/{bad_id}", json=body)
    assert response.status_code == 422
    assert error_locations(response) == [["path", "book_id"]]


# --- PUT /books/{id} -------------------------------------------------------------------------------------------------


async def test_put_replaces_every_field(client: AsyncClient) -> None:
    created = await create(client)
    replacement = {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": AUSTEN_ISBN10}
    response = await client.put(f"/books/{created['id']}", json=replacement)
    assert response.status_code == 200
    expected = {"id": created["id"], **replacement, "isbn": AUSTEN_ISBN13}
    assert response.json() == expected
    assert await stored_books() == [expected]


async def test_put_without_isbn_clears_it(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json={"title": "T", "author": "A", "year": 2000})
    assert response.status_code == 200
    assert response.json()["isbn"] is None
    assert (await stored_books())[0]["isbn"] is None


async def test_put_missing_book_is_404(client: AsyncClient) -> None:
    response = await client.put("/books/42", json=book())
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}
    assert await stored_books() == []


async def test_put_needs_the_whole_book(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json={"title": "Only a title"})
    assert response.status_code == 422
    assert error_locations(response) == [["body", "author"], ["body", "year"]]
    assert await stored_books() == [created]


async def test_put_rejects_id_in_body(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json=book(id=created["id"]))
    assert response.status_code == 422
    assert await stored_books() == [created]


async def test_put_taking_another_books_isbn_is_409(client: AsyncClient) -> None:
    hobbit = await create(client)
    emma = await create(client, title="Emma", isbn=None)
    response = await client.put(f"/books/{emma['id']}", json=book(title="Emma"))
    assert response.status_code == 409
    assert HOBBIT_ISBN13 in response.json()["detail"]
    assert await stored_books() == [hobbit, emma]


async def test_put_keeping_its_own_isbn_is_fine(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json=book(year=1938))
    assert response.status_code == 200
    assert response.json() == {**created, "year": 1938}


# --- PATCH /books/{id} -----------------------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={"year": 1951, "title": " The Hobbit, 2nd ed. "})
    assert response.status_code == 200
    expected = {**created, "year": 1951, "title": "The Hobbit, 2nd ed."}
    assert response.json() == expected
    assert await stored_books() == [expected]


async def test_patch_with_empty_body_changes_nothing(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={})
    assert response.status_code == 200
    assert response.json() == created
    assert await stored_books() == [created]


async def test_patch_isbn_null_clears_it(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={"isbn": None})
    assert response.status_code == 200
    assert response.json() == {**created, "isbn": None}
    assert await stored_books() == [{**created, "isbn": None}]


async def test_patch_isbn_is_normalised(client: AsyncClient) -> None:
    created = await create(client, isbn=None)
    response = await client.patch(f"/books/{created['id']}", json={"isbn": AUSTEN_ISBN10})
    assert response.json()["isbn"] == AUSTEN_ISBN13


@pytest.mark.parametrize("field", ["title", "author", "year"])
async def test_patch_null_for_a_required_field_is_422(client: AsyncClient, field: str) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={field: None})
    assert response.status_code == 422
    assert error_locations(response) == [["body", field]]
    assert "cannot be null" in response.json()["detail"][0]["msg"]
    assert await stored_books() == [created]


@pytest.mark.parametrize("body", [{"id": 5}, {"year": 10000}, {"title": ""}, {"isbn": "123"}, {"color": "red"}])
async def test_patch_applies_the_same_rules(client: AsyncClient, body: dict[str, Any]) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json=body)
    assert response.status_code == 422
    assert await stored_books() == [created]


async def test_patch_missing_book_is_404(client: AsyncClient) -> None:
    response = await client.patch("/books/42", json={"year": 2000})
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}


async def test_patch_taking_another_books_isbn_is_409(client: AsyncClient) -> None:
    hobbit = await create(client)
    emma = await create(client, title="Emma", isbn=None)
    response = await client.patch(f"/books/{emma['id']}", json={"isbn": HOBBIT_ISBN13})
    assert response.status_code == 409
    assert HOBBIT_ISBN13 in response.json()["detail"]
    assert await stored_books() == [hobbit, emma]


async def test_updates_racing_a_delete_get_404_not_500(client: AsyncClient) -> None:
    for _ in range(5):
        url = f"/books/{(await create(client, isbn=None))['id']}"
        patched, deleted, replaced = await asyncio.gather(
            client.patch(url, json={"year": 2000}), client.delete(url), client.put(url, json=book(isbn=None))
        )
        assert deleted.status_code == 204
        assert {patched.status_code, replaced.status_code} <= {200, 404}
        assert (await client.get(url)).status_code == 404


async def test_concurrent_patches_never_lose_an_acknowledged_field(client: AsyncClient) -> None:
    # Serially, either order leaves a book that one of the two responses shows. A read-then-write update could
    # instead skip "title": "A" as unchanged after the other request had already written "B".
    for _ in range(10):
        url = f"/books/{(await create(client, isbn=None, title='A', year=1))['id']}"
        first, second = await asyncio.gather(
            client.patch(url, json={"title": "B"}), client.patch(url, json={"title": "A", "year": 2})
        )
        final = (await client.get(url)).json()
        assert final in (first.json(), second.json())


# --- DELETE /books/{id} ----------------------------------------------------------------------------------------------


async def test_delete_is_204_with_an_empty_body(client: AsyncClient) -> None:
    keep = await create(client, isbn=None, title="Keep me")
    gone = await create(client)
    response = await client.delete(f"/books/{gone['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/books/{gone['id']}")).status_code == 404
    assert await stored_books() == [keep]


async def test_delete_missing_book_is_404(client: AsyncClient) -> None:
    response = await client.delete("/books/42")
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}


async def test_deleting_twice_is_204_then_404(client: AsyncClient) -> None:
    created = await create(client)
    first, second = await asyncio.gather(*(client.delete(f"/books/{created['id']}") for _ in range(2)))
    assert sorted([first.status_code, second.status_code]) == [204, 404]


# --- GET /books: paging, filters, sorting ----------------------------------------------------------------------------


async def add_library(client: AsyncClient) -> dict[str, int]:
    """Five books whose order by title or author is the same under any collation; returns their ids by title."""
    library = [
        ("Jane Eyre", "Charlotte Brontë", 1847),
        ("Shirley", "Charlotte Brontë", 1849),
        ("The Hobbit", "J. R. R. Tolkien", 1937),
        ("100% Pure_Fiction", "O'Brien", 1990),
        ("Über den Fluss", "Zoë Ünal", 1871),
    ]
    ids = {}
    for title, author, year in library:
        ids[title] = (await create(client, title=title, author=author, year=year, isbn=None))["id"]
    return ids


async def listed(client: AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/books", params=params)
    assert response.status_code == 200, response.text
    return [b["title"] for b in response.json()]


async def test_empty_list(client: AsyncClient) -> None:
    response = await client.get("/books")
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"


async def test_list_returns_books_in_id_order_with_total(client: AsyncClient) -> None:
    ids = await add_library(client)
    response = await client.get("/books")
    assert response.status_code == 200
    assert [b["id"] for b in response.json()] == sorted(ids.values())
    assert response.headers["x-total-count"] == "5"
    assert set(response.json()[0]) == {"id", "title", "author", "year", "isbn"}


async def test_default_page_is_20(client: AsyncClient) -> None:
    for i in range(23):
        await create(client, title=f"Volume {i}", isbn=None)
    response = await client.get("/books")
    assert len(response.json()) == 20
    assert response.headers["x-total-count"] == "23"


async def test_limit_and_offset(client: AsyncClient) -> None:
    ids = sorted((await add_library(client)).values())
    response = await client.get("/books", params={"limit": 2, "offset": 1})
    assert [b["id"] for b in response.json()] == ids[1:3]
    assert response.headers["x-total-count"] == "5"
    last_page = await client.get("/books", params={"limit": 20, "offset": 3})
    assert [b["id"] for b in last_page.json()] == ids[3:]
    assert last_page.headers["x-total-count"] == "5"
    beyond = await client.get("/books", params={"offset": 10**18})
    assert beyond.json() == [] and beyond.headers["x-total-count"] == "5"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", 0),
        ("limit", 101),
        ("limit", -1),
        ("limit", "ten"),
        ("limit", 10**30),
        ("offset", -1),
        ("offset", 2**63),
        ("offset", "1.5"),
        ("sort", "pages"),
        ("sort", "title desc"),
        ("sort", "--year"),
        ("sort", "year; DROP TABLE books"),
        ("sort", ""),
        ("year_from", 10000),
        ("year_to", "soon"),
        ("q", "x" * 201),
        ("q", "nul\u0000"),
        ("author", "x" * 201),
    ],
)
async def test_bad_list_parameters_are_422(client: AsyncClient, param: str, value: Any) -> None:
    await create(client)
    response = await client.get("/books", params={param: value})
    assert response.status_code == 422
    assert error_locations(response) == [["query", param]]


async def test_limit_100_is_allowed(client: AsyncClient) -> None:
    assert (await client.get("/books", params={"limit": 100})).status_code == 200


async def test_q_matches_title_or_author_case_insensitively(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, q="BRONTË") == ["Jane Eyre", "Shirley"]
    assert await listed(client, q="hob") == ["The Hobbit"]
    assert await listed(client, q="ÜBER") == ["Über den Fluss"]
    assert await listed(client, q="zoë") == ["Über den Fluss"]
    assert await listed(client, q="nothing like it") == []


async def test_q_total_count_follows_the_filter(client: AsyncClient) -> None:
    await add_library(client)
    response = await client.get("/books", params={"q": "brontë", "limit": 1})
    assert len(response.json()) == 1
    assert response.headers["x-total-count"] == "2"


async def test_q_wildcards_and_quotes_are_literal(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, q="%") == ["100% Pure_Fiction"]
    assert await listed(client, q="_") == ["100% Pure_Fiction"]
    assert await listed(client, q="pur_") == []  # "_" would match any one character if it were a wildcard
    assert await listed(client, q="1%pure") == []  # and "%" any run of characters
    assert await listed(client, q="o'brien") == ["100% Pure_Fiction"]
    assert await listed(client, q="'; DROP TABLE books; --") == []
    assert len(await stored_books()) == 5


async def test_author_is_a_case_insensitive_exact_match(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, author="charlotte brontë") == ["Jane Eyre", "Shirley"]
    assert await listed(client, author="CHARLOTTE BRONTË", q="eyre") == ["Jane Eyre"]
    assert await listed(client, author="ZOË ÜNAL") == ["Über den Fluss"]
    assert await listed(client, author="Brontë") == []


async def test_year_range_is_inclusive(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, year_from=1849, year_to=1937) == ["Shirley", "The Hobbit", "Über den Fluss"]
    assert await listed(client, year_from=1937) == ["The Hobbit", "100% Pure_Fiction"]
    assert await listed(client, year_to=1847) == ["Jane Eyre"]
    assert await listed(client, year_from=2000, year_to=1000) == []


@pytest.mark.parametrize(
    ("sort", "titles"),
    [
        ("id", ["Jane Eyre", "Shirley", "The Hobbit", "100% Pure_Fiction", "Über den Fluss"]),
        ("-id", ["Über den Fluss", "100% Pure_Fiction", "The Hobbit", "Shirley", "Jane Eyre"]),
        ("year", ["Jane Eyre", "Shirley", "Über den Fluss", "The Hobbit", "100% Pure_Fiction"]),
        ("-year", ["100% Pure_Fiction", "The Hobbit", "Über den Fluss", "Shirley", "Jane Eyre"]),
        ("title", ["100% Pure_Fiction", "Jane Eyre", "Shirley", "The Hobbit", "Über den Fluss"]),
        ("-title", ["Über den Fluss", "The Hobbit", "Shirley", "Jane Eyre", "100% Pure_Fiction"]),
        ("author", ["Jane Eyre", "Shirley", "The Hobbit", "100% Pure_Fiction", "Über den Fluss"]),
        ("-author", ["Über den Fluss", "100% Pure_Fiction", "The Hobbit", "Shirley", "Jane Eyre"]),
    ],
)
async def test_sort(client: AsyncClient, sort: str, titles: list[str]) -> None:
    await add_library(client)
    assert await listed(client, sort=sort) == titles


async def test_sort_ignores_case(client: AsyncClient) -> None:
    for title in ["banana", "Cherry", "apple"]:
        await create(client, title=title, isbn=None)
    assert await listed(client, sort="title") == ["apple", "banana", "Cherry"]


async def test_ties_are_broken_by_id_so_pages_are_stable(client: AsyncClient) -> None:
    for i in range(6):
        await create(client, title=f"Same year {i}", year=2000, isbn=None)
    in_id_order = [f"Same year {i}" for i in range(6)]
    for sort, titles in [("year", in_id_order), ("-year", in_id_order[::-1])]:
        pages = [await listed(client, sort=sort, limit=2, offset=offset) for offset in (0, 2, 4)]
        assert [title for page in pages for title in page] == titles


# --- GET /health -----------------------------------------------------------------------------------------------------


async def test_health_ok(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_health_503_when_the_database_cannot_be_reached(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unreachable = main.create_engine_for(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'books.db'}")
    monkeypatch.setattr(main, "SessionLocal", async_sessionmaker(unreachable))
    response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "database" in response.json()["detail"]
    await unreachable.dispose()


# --- API_KEY ---------------------------------------------------------------------------------------------------------

WRITES = [
    ("POST", "/books", HOBBIT),
    ("PUT", "/books/1", HOBBIT),
    ("PATCH", "/books/1", {}),
    ("DELETE", "/books/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize("key", [None, "", "wrong", "s3cret ", "S3CRET", "ünïcode-kéy"])
async def test_with_api_key_writes_need_the_right_key(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: Any, key: str | None
) -> None:
    created = await create(client, isbn=None)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    headers = {} if key is None else {"X-API-Key": key.encode("utf-8")}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "APIKey"
    assert await stored_books() == [created]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), [(*w, s) for w, s in zip(WRITES, [201, 200, 200, 204], strict=True)]
)
async def test_with_api_key_writes_succeed_with_it(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: Any, expected: int
) -> None:
    await create(client, isbn=None)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    response = await client.request(method, path, json=body, headers={"X-API-Key": "s3cret"})
    assert response.status_code == expected


async def test_with_api_key_reads_stay_open(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    created = await create(client)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    assert (await client.get("/books")).json() == [created]
    assert (await client.get(f"/books/{created['id']}")).json() == created
    assert (await client.get("/health")).status_code == 200


async def test_without_api_key_writes_are_open(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.delete(f"/books/{created['id']}", headers={"X-API-Key": "anything"})
    assert response.status_code == 204


async def test_docs_offer_an_authorize_button_for_the_key(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["APIKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    for method in ["post", "put", "patch", "delete"]:
        path = "/books" if method == "post" else "/books/{book_id}"
        assert schema["paths"][path][method]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in schema["paths"]["/books"]["get"]


# --- Hostile input: always a 4xx, never a 5xx, never a change to stored data ----------------------------------------

HOSTILE_BODIES: list[tuple[str, bytes, str]] = [
    ("lone surrogate in title", b'{"title": "\\ud800", "author": "A", "year": 2000}', "application/json"),
    ("lone surrogate as a key", b'{"title": "T", "author": "A", "year": 2000, "\\udfff": 1}', "application/json"),
    ("NUL in title", b'{"title": "a\\u0000b", "author": "A", "year": 2000}', "application/json"),
    ("1 MB title", json.dumps(book(title="x" * 1_000_000)).encode(), "application/json"),
    ("malformed JSON", b'{"title": "T", "author":', "application/json"),
    ("not JSON at all", b"title=T&author=A&year=2000", "application/json"),
    ("invalid UTF-8", b'{"title": "\xff\xfe", "author": "A", "year": 2000}', "application/json"),
    ("deeply nested JSON", b"[" * 10_000 + b"]" * 10_000, "application/json"),
    ("deeply nested title", b'{"title": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "application/json"),
    ("huge year", json.dumps(book(year=10**4000)).encode(), "application/json"),
    ("year 1e400", json.dumps(book()).replace("1937", "1e400").encode(), "application/json"),
    ("year NaN", json.dumps(book()).replace("1937", "NaN").encode(), "application/json"),
    ("array body", json.dumps([HOBBIT]).encode(), "application/json"),
    ("string body", b'"The Hobbit"', "application/json"),
    ("null body", b"null", "application/json"),
    ("empty body", b"", "application/json"),
    ("plain-text content type", json.dumps(HOBBIT).encode(), "text/plain"),
    ("form content type", b"title=T&author=A&year=2000", "application/x-www-form-urlencoded"),
    ("duplicate keys, last one bad", b'{"title": "T", "author": "A", "year": 2000, "year": 0}', "application/json"),
]


@pytest.mark.parametrize(("method", "path"), [("POST", "/books"), ("PUT", "/books/{id}"), ("PATCH", "/books/{id}")])
@pytest.mark.parametrize(("name", "body", "content_type"), HOSTILE_BODIES, ids=[b[0] for b in HOSTILE_BODIES])
async def test_hostile_bodies_get_a_4xx_and_change_nothing(
    client: AsyncClient, method: str, path: str, name: str, body: bytes, content_type: str
) -> None:
    created = await create(client)
    url = path.format(id=created["id"])
    response = await client.request(method, url, content=body, headers={"content-type": content_type})
    if name == "empty body" and method == "PATCH":
        assert response.status_code == 422  # an empty body is not `{}`
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert await stored_books() == [created]


async def test_body_over_1_mib_is_413_before_parsing(client: AsyncClient) -> None:
    huge = json.dumps(book(title="x" * 10_000_000)).encode()
    response = await client.post("/books", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert await stored_books() == []


async def test_streamed_body_over_1_mib_is_413(client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'", "author": "A", "year": 2000}'

    response = await client.post("/books", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert await stored_books() == []


async def test_body_of_exactly_1_mib_is_parsed(client: AsyncClient) -> None:
    body = json.dumps(book(title="x")).encode()
    body = body.replace(b'"x"', b'"x' + b" " * (2**20 - len(body)) + b'"')  # trailing spaces are stripped
    assert len(body) == 2**20
    response = await client.post("/books", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201
    assert response.json()["title"] == "x"


async def test_percent_encoded_surrogate_in_q_is_harmless(client: AsyncClient) -> None:
    await create(client)
    response = await client.get("/books?q=%ED%A0%80&author=%ED%A0%80")
    assert response.status_code == 200
    assert response.json() == []


async def test_validation_errors_do_not_echo_the_input(client: AsyncClient) -> None:
    response = await client.post("/books", json=book(title="x" * 201, secret="do not repeat me"))
    assert response.status_code == 422
    assert "do not repeat me" not in response.text and "xxxx" not in response.text
    assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])


# --- Persistence, settings and start-up ------------------------------------------------------------------------------


async def test_writes_survive_a_new_engine_on_the_same_file(client: AsyncClient, db_url: str) -> None:
    created = await create(client)
    patched = (await client.patch(f"/books/{created['id']}", json={"year": 1938})).json()
    await main.engine.dispose()

    fresh = main.create_engine_for(db_url)
    async with async_sessionmaker(fresh)() as session:
        stored = await session.get(main.BookModel, created["id"])
        assert stored is not None
        assert main.BookOut.model_validate(stored).model_dump() == patched
    await fresh.dispose()


@pytest.mark.skipif(bool(os.getenv("TEST_DATABASE_URL")), reason="SQLite's settings; this run uses another server")
async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        assert (await connection.scalar(text("PRAGMA journal_mode"))) == "wal"
        assert (await connection.scalar(text("PRAGMA busy_timeout"))) >= 5000
        assert (await connection.scalar(text("PRAGMA foreign_keys"))) == 1


async def test_a_write_left_uncommitted_is_rolled_back_before_the_connection_is_reused(client: AsyncClient) -> None:
    await create(client, title="Kept")
    async with main.engine.connect() as connection:  # a write SQLAlchemy does not know of, as a failure might leave
        driver = (await connection.get_raw_connection()).dbapi_connection
        await connection.run_sync(lambda _: driver.cursor().execute("UPDATE books SET title = 'Lost'"))
    await create(client, title="Also kept", isbn=None)
    assert [b["title"] for b in await stored_books()] == ["Kept", "Also kept"]


async def test_sql_echo_logs_the_sql(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(main, "SQL_ECHO", True)
    engine = main.create_engine_for("sqlite+aiosqlite://")
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        async with engine.connect() as connection:
            await connection.run_sync(main.Base.metadata.create_all)
    await engine.dispose()
    logging.getLogger("sqlalchemy.engine.Engine").handlers.clear()
    assert "CREATE TABLE books" in caplog.text


def test_importing_main_touches_no_database(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "sqlite+aiosqlite:///./books.db", "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run([sys.executable, "-c", "import main"], cwd=tmp_path, env=env, check=True)
    assert list(tmp_path.iterdir()) == []


async def test_lifespan_creates_the_table(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        assert await connection.run_sync(lambda sync: inspect(sync).has_table("books"))


async def test_server_processes_starting_together_all_find_their_tables(client: AsyncClient) -> None:
    async with main.engine.begin() as connection:
        await connection.run_sync(main.Base.metadata.drop_all)
    await asyncio.gather(*(main.create_tables() for _ in range(4)))
    async with main.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) == set(main.Base.metadata.tables)


async def test_root_redirects_to_the_docs(client: AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/docs"


# --- /docs, demo books, and the errors a learner can cause -----------------------------------------------------------

ERROR_RESPONSES = {
    ("/books", "get"): {"422"},
    ("/books", "post"): {"401", "409", "422"},
    ("/books/{book_id}", "get"): {"404", "422"},
    ("/books/{book_id}", "put"): {"401", "404", "409", "422"},
    ("/books/{book_id}", "patch"): {"401", "404", "409", "422"},
    ("/books/{book_id}", "delete"): {"401", "404", "422"},
    ("/health", "get"): {"503"},
}


async def test_every_operation_is_documented_with_examples_of_its_errors(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {(path, method): op for path, methods in schema["paths"].items() for method, op in methods.items()}
    assert set(operations) == set(ERROR_RESPONSES)
    for key, operation in operations.items():
        assert operation["summary"] and operation["description"], key
        assert operation["tags"] == (["health"] if key[0] == "/health" else ["books"])
        errors = {code for code in operation["responses"] if code >= "400"}
        assert errors == ERROR_RESPONSES[key], key
        for code in errors:
            assert operation["responses"][code]["content"]["application/json"]["example"], (key, code)
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            body_schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
            assert schema["components"]["schemas"][body_schema]["examples"], key
    assert [tag["name"] for tag in schema["tags"]] == ["books", "health"]
    assert "Try it out" in schema["info"]["description"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_this_server(client: AsyncClient, page: str) -> None:
    html = (await client.get(page)).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        assert (await client.get(asset)).status_code == 200, asset
    assert "cdn." not in html


async def test_demo_books_fill_an_empty_database(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "DEMO_BOOKS", True)
    async with main.lifespan(main.app):
        listed_books = (await client.get("/books", params={"limit": 100})).json()
    assert len(listed_books) == len(main.DEMO) == 12
    assert {b["title"] for b in listed_books} == {title for title, *_ in main.DEMO}
    assert all(b["isbn"] is not None and len(b["isbn"]) == 13 for b in listed_books)
    assert (await client.get("/books", params={"q": "brontë"})).json()[0]["author"] == "Charlotte Brontë"


async def test_demo_books_never_touch_a_database_with_data(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await create(client)
    monkeypatch.setattr(main, "DEMO_BOOKS", True)
    async with main.lifespan(main.app):
        assert await stored_books() == [created]


async def test_demo_books_are_off_by_default(client: AsyncClient) -> None:
    assert main.DEMO_BOOKS is False
    assert await stored_books() == []


@pytest.mark.parametrize(
    "url", ["not a url", "sqlite:///books.db", "postgresql+psycopg2://u@localhost/db", "nosuchdb+driver://u@h/db"]
)
def test_a_bad_database_url_says_what_to_use_instead(url: str) -> None:
    with pytest.raises(SystemExit, match=r"DATABASE_URL=.* cannot be used .* sqlite\+aiosqlite:///\./books\.db"):
        main.create_engine_for(url)


@pytest.mark.parametrize("problem", ["not a database", "a folder", "a missing folder"])
async def test_an_unusable_database_file_says_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    path = {"not a database": tmp_path / "books.db", "a folder": tmp_path, "a missing folder": tmp_path / "no" / "x.db"}
    path["not a database"].write_bytes(b"these are not the pages of a database " * 200)
    engine = main.create_engine_for(f"sqlite+aiosqlite:///{path[problem]}")
    monkeypatch.setattr(main, "engine", engine)
    with pytest.raises(
        RuntimeError, match=r"Cannot use the database at DATABASE_URL=\S+ \([^\n]+\)\. Check that it exists"
    ):
        async with main.lifespan(main.app):
            pass
    await engine.dispose()
    # After a failed connect aiosqlite stops its thread without waiting for it (omnilib/aiosqlite#389): wait here,
    # or the thread may report to this test's event loop after it closed, and pytest warns.
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


def test_python_main_py_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PORT": str(port), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"}
        result = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "main.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"Port {port} is in use" in result.stderr and f"PORT={port + 1}" in result.stderr
