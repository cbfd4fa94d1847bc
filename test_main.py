"""Tests for the Book API: every route, its rules and its errors. Run them with `python -m pytest`.

Each test gets an empty database and an HTTP client for the app (the `client` fixture, in conftest.py), sends real
HTTP requests, and checks what a user would see: the status, the body, the headers, and what is stored. The long
lists of hostile and malformed inputs live in checks/, which CI runs; here are a few of each kind, to learn from.
"""

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import main

HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937, "isbn": "978-0-547-92822-7"}
HOBBIT_ISBN13 = "9780547928227"
AUSTEN_ISBN10, AUSTEN_ISBN13 = "0-14-143951-3", "9780141439518"


def book(**changes: Any) -> dict[str, Any]:
    return {**HOBBIT, **changes}


async def create(client: AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/books", json=book(**changes))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


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
    assert response.headers["location"] == f"/books/{created['id']}"
    assert await stored_books() == [created]


async def test_the_database_assigns_the_id_and_a_client_cannot(client: AsyncClient) -> None:
    first, second = await create(client, isbn=None), await create(client, isbn=None)
    assert first["id"] != second["id"]

    response = await client.post("/books", json=book(id=7))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "id"]]
    assert len(await stored_books()) == 2


@pytest.mark.parametrize("field", ["title", "author", "year"])
async def test_required_fields(client: AsyncClient, field: str) -> None:
    body = book()
    del body[field]
    response = await client.post("/books", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["body", field], "msg": "Field required"}]


async def test_a_body_that_is_not_json_is_told_to_send_json(client: AsyncClient) -> None:
    response = await client.post("/books", content=json.dumps(HOBBIT), headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["detail"][0]["msg"]
    assert await stored_books() == []


# --- Field rules: title, author, year, isbn --------------------------------------------------------------------------


async def test_title_and_author_lose_surrounding_spaces(client: AsyncClient) -> None:
    created = await create(client, title="  The Hobbit \t", author="\u00a0J. R. R. Tolkien ")
    assert (created["title"], created["author"]) == ("The Hobbit", "J. R. R. Tolkien")


@pytest.mark.parametrize(("field", "limit"), [("title", 200), ("author", 100)])
async def test_length_limits_count_after_stripping(client: AsyncClient, field: str, limit: int) -> None:
    longest = await client.post("/books", json=book(isbn=None, **{field: "  " + "x" * limit + "  "}))
    too_long = await client.post("/books", json=book(isbn=None, **{field: "x" * (limit + 1)}))
    assert longest.status_code == 201 and len(longest.json()[field]) == limit
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["type"] == "string_too_long"


@pytest.mark.parametrize("value", ["", " ", None, 42, "line\nbreak", "nul\u0000", "a\u2028b", "\u200b", "\u202e"])
async def test_bad_titles(client: AsyncClient, value: Any) -> None:
    response = await client.post("/books", json=book(title=value))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "title"]]
    assert await stored_books() == []


@pytest.mark.parametrize("year", [1, 2026, 9999])
async def test_years_from_1_to_9999(client: AsyncClient, year: int) -> None:
    assert (await create(client, isbn=None, year=year))["year"] == year


@pytest.mark.parametrize("year", [0, 10000, 2**64, "1937", 1937.0, True])
async def test_bad_years(client: AsyncClient, year: Any) -> None:
    response = await client.post("/books", json=book(year=year))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "year"]]
    assert await stored_books() == []


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("978-0-547-92822-7", HOBBIT_ISBN13), (" 978 0 547 92822 7 ", HOBBIT_ISBN13), (AUSTEN_ISBN10, AUSTEN_ISBN13)],
)
async def test_isbn_is_stored_as_13_digits(client: AsyncClient, sent: str, stored: str) -> None:
    assert (await create(client, isbn=sent))["isbn"] == stored


@pytest.mark.parametrize("isbn", ["9780547928228", "978054792822", "abcdefghij", "", "979-0-2600-0043-8"])
async def test_invalid_isbn(client: AsyncClient, isbn: str) -> None:
    response = await client.post("/books", json=book(isbn=isbn))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "isbn"]]
    assert response.json()["detail"][0]["msg"].startswith(("not a valid ISBN", "979-0 begins an ISMN"))


async def test_text_is_stored_in_one_unicode_spelling_and_found_in_either(client: AsyncClient) -> None:
    composed, decomposed = "Caf\u00e9", "Cafe\u0301"  # both print as Café
    assert (await create(client, isbn=None, title=decomposed))["title"] == composed
    assert [b["title"] for b in await stored_books()] == [composed]
    assert await listed(client, q=composed) == await listed(client, q=decomposed) == [composed]


async def test_a_duplicate_isbn_is_409_naming_it(client: AsyncClient) -> None:
    await create(client)
    response = await client.post("/books", json=book(title="Another"))
    assert response.status_code == 409
    assert response.json() == {"detail": f"A book with isbn {HOBBIT_ISBN13} already exists; isbn must be unique"}
    assert len(await stored_books()) == 1


async def test_of_concurrent_creates_of_one_isbn_exactly_one_wins(client: AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post("/books", json=book(title=f"Copy {i}")) for i in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert len(await stored_books()) == 1


# --- GET /books/{id} -------------------------------------------------------------------------------------------------


async def test_read_book(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.get(f"/books/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


async def test_a_missing_book_is_404_with_its_id(client: AsyncClient) -> None:
    response = await client.get("/books/42")
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}


@pytest.mark.parametrize("bad_id", ["0", str(2**63), "abc", "1_0", "1.0", "+1", "%201", "1%0A"])
async def test_ids_are_1_to_2_63_minus_1_in_plain_digits(client: AsyncClient, bad_id: str) -> None:
    await create(client)  # book 1 exists, and must not be what "1.0" or " 1" reads
    response = await client.get(f"/books/{bad_id}")
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


async def test_put_needs_the_whole_book(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json={"title": "Only a title"})
    assert response.status_code == 422
    assert error_locations(response) == [["body", "author"], ["body", "year"]]
    assert await stored_books() == [created]


async def test_put_of_a_missing_book_is_404_and_creates_nothing(client: AsyncClient) -> None:
    response = await client.put("/books/42", json=book())
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}
    assert await stored_books() == []


# --- PATCH /books/{id} -----------------------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={"year": 1951, "title": " The Hobbit, 2nd ed. "})
    assert response.status_code == 200
    expected = {**created, "year": 1951, "title": "The Hobbit, 2nd ed."}
    assert response.json() == expected
    assert await stored_books() == [expected]


async def test_patch_with_an_empty_body_changes_nothing(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={})
    assert response.status_code == 200
    assert response.json() == created
    assert (await client.patch("/books/42", json={})).status_code == 404


async def test_patch_isbn_null_clears_it(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={"isbn": None})
    assert response.json() == {**created, "isbn": None}
    assert await stored_books() == [{**created, "isbn": None}]


@pytest.mark.parametrize("body", [{"title": None}, {"year": 10000}, {"title": ""}, {"isbn": "123"}, {"id": 5}])
async def test_patch_follows_the_same_rules(client: AsyncClient, body: dict[str, Any]) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json=body)
    assert response.status_code == 422
    assert error_locations(response) == [["body", *body]]
    assert await stored_books() == [created]


async def test_patch_taking_another_books_isbn_is_409(client: AsyncClient) -> None:
    hobbit = await create(client)
    emma = await create(client, title="Emma", isbn=None)
    response = await client.patch(f"/books/{emma['id']}", json={"isbn": HOBBIT_ISBN13})
    assert response.status_code == 409
    assert HOBBIT_ISBN13 in response.json()["detail"]
    assert await stored_books() == [hobbit, emma]


# The next two tests race requests, which only a database with several connections lets happen at once.
ON_POSTGRESQL = pytest.mark.skipif(
    not os.getenv("TEST_DATABASE_URL"),
    reason="SQLite's one connection makes racing requests take turns, so this passes whatever the routes do; "
    "run it with TEST_DATABASE_URL=postgresql+asyncpg://... (CI does)",
)


@ON_POSTGRESQL
async def test_updates_racing_a_delete_get_404_not_500(client: AsyncClient) -> None:
    for _ in range(5):
        url = f"/books/{(await create(client, isbn=None))['id']}"
        patched, deleted, replaced = await asyncio.gather(
            client.patch(url, json={"year": 2000}), client.delete(url), client.put(url, json=book(isbn=None))
        )
        assert deleted.status_code == 204
        assert {patched.status_code, replaced.status_code} <= {200, 404}
        assert (await client.get(url)).status_code == 404


@ON_POSTGRESQL
async def test_concurrent_patches_never_lose_an_acknowledged_change(client: AsyncClient) -> None:
    # Either order leaves a book that one of the two responses shows. A patch that read the book first could instead
    # skip "title": "A" as unchanged after the other request had already written "B".
    for _ in range(10):
        url = f"/books/{(await create(client, isbn=None, title='A', year=1))['id']}"
        first, second = await asyncio.gather(
            client.patch(url, json={"title": "B"}), client.patch(url, json={"title": "A", "year": 2})
        )
        assert (await client.get(url)).json() in (first.json(), second.json())


# --- DELETE /books/{id} ----------------------------------------------------------------------------------------------


async def test_delete_is_204_with_no_body(client: AsyncClient) -> None:
    keep = await create(client, isbn=None, title="Keep me")
    gone = await create(client)
    response = await client.delete(f"/books/{gone['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/books/{gone['id']}")).status_code == 404
    assert await stored_books() == [keep]


async def test_the_id_of_a_deleted_book_is_never_given_again(client: AsyncClient) -> None:
    first = await create(client)
    await client.delete(f"/books/{first['id']}")
    assert (await create(client))["id"] > first["id"]


async def test_deleting_twice_is_204_then_404(client: AsyncClient) -> None:
    created = await create(client)
    first, second = await asyncio.gather(*(client.delete(f"/books/{created['id']}") for _ in range(2)))
    assert sorted([first.status_code, second.status_code]) == [204, 404]


# --- GET /books: paging, filters, sorting ----------------------------------------------------------------------------

LIBRARY = [  # ordered the same by title or author under any collation
    ("Jane Eyre", "Charlotte Brontë", 1847),
    ("Shirley", "Charlotte Brontë", 1849),
    ("The Hobbit", "J. R. R. Tolkien", 1937),
    ("100% Pure_Fiction", "O'Brien", 1990),
    ("Über den Fluss", "Zoë Ünal", 1871),
]


async def add_library(client: AsyncClient) -> list[int]:
    return [(await create(client, title=t, author=a, year=y, isbn=None))["id"] for t, a, y in LIBRARY]


async def listed(client: AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/books", params=params)
    assert response.status_code == 200, response.text
    return [b["title"] for b in response.json()]


async def test_list_in_id_order_with_the_total(client: AsyncClient) -> None:
    ids = await add_library(client)
    response = await client.get("/books")
    assert [b["id"] for b in response.json()] == ids
    assert response.headers["x-total-count"] == "5"
    assert set(response.json()[0]) == {"id", "title", "author", "year", "isbn"}
    head = await client.head("/books")  # what `curl -I` sends: the same status and headers, and no body
    assert head.status_code == 200 and head.headers["x-total-count"] == "5"


async def test_pages(client: AsyncClient) -> None:
    empty = await client.get("/books")
    assert empty.json() == [] and empty.headers["x-total-count"] == "0"
    for i in range(23):
        await create(client, title=f"Volume {i}", isbn=None)
    first = await client.get("/books")
    assert len(first.json()) == 20 and first.headers["x-total-count"] == "23"
    page = await client.get("/books", params={"limit": 2, "offset": 21})
    assert [b["title"] for b in page.json()] == ["Volume 21", "Volume 22"]
    assert page.headers["x-total-count"] == "23"
    beyond = await client.get("/books", params={"offset": 10**18})
    assert beyond.json() == [] and beyond.headers["x-total-count"] == "23"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", 0),
        ("limit", 101),
        ("offset", -1),
        ("sort", "pages"),
        ("sort", "year; DROP TABLE books"),
        ("q", "x" * 201),
    ],
)
async def test_bad_list_parameters_are_422(client: AsyncClient, param: str, value: Any) -> None:
    response = await client.get("/books", params={param: value})
    assert response.status_code == 422
    assert error_locations(response) == [["query", param]]


async def test_q_finds_text_in_the_title_or_author_in_any_case(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, q="BRONTË") == ["Jane Eyre", "Shirley"]
    assert await listed(client, q="hob") == ["The Hobbit"]
    assert await listed(client, q="über") == ["Über den Fluss"]
    assert await listed(client, q="nothing like it") == []
    response = await client.get("/books", params={"q": "brontë", "limit": 1})
    assert len(response.json()) == 1 and response.headers["x-total-count"] == "2"


async def test_q_takes_wildcards_and_quotes_literally(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, q="%") == ["100% Pure_Fiction"]
    assert await listed(client, q="pur_") == []  # "_" would match any one character if it were a wildcard
    assert await listed(client, q="o'brien") == ["100% Pure_Fiction"]
    assert await listed(client, q="'; DROP TABLE books; --") == []
    assert len(await stored_books()) == 5


async def test_author_is_an_exact_match_in_any_case(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, author="CHARLOTTE BRONTË") == ["Jane Eyre", "Shirley"]
    assert await listed(client, author=" Charlotte Brontë ") == ["Jane Eyre", "Shirley"]  # spaces go, as when stored
    assert await listed(client, author="charlotte brontë", q="eyre") == ["Jane Eyre"]
    assert await listed(client, author="Brontë") == []


async def test_year_range_is_inclusive(client: AsyncClient) -> None:
    await add_library(client)
    assert await listed(client, year_from=1849, year_to=1937) == ["Shirley", "The Hobbit", "Über den Fluss"]
    assert await listed(client, year_to=1847) == ["Jane Eyre"]


@pytest.mark.parametrize(
    ("sort", "titles"),
    [
        ("-id", ["Über den Fluss", "100% Pure_Fiction", "The Hobbit", "Shirley", "Jane Eyre"]),
        ("year", ["Jane Eyre", "Shirley", "Über den Fluss", "The Hobbit", "100% Pure_Fiction"]),
        ("title", ["100% Pure_Fiction", "Jane Eyre", "Shirley", "The Hobbit", "Über den Fluss"]),
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


async def test_ties_are_ordered_by_id_so_pages_never_overlap(client: AsyncClient) -> None:
    for i in range(6):
        await create(client, title=f"Same year {i}", year=2000, isbn=None)
    in_id_order = [f"Same year {i}" for i in range(6)]
    for sort, titles in [("year", in_id_order), ("-year", in_id_order[::-1])]:
        pages = [await listed(client, sort=sort, limit=2, offset=offset) for offset in (0, 2, 4)]
        assert [title for page in pages for title in page] == titles


# --- GET /health -----------------------------------------------------------------------------------------------------


async def test_health(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_every_route_is_503_when_the_database_cannot_be_reached(client: AsyncClient, tmp_path: Path) -> None:
    # app.dependency_overrides swaps a dependency for the length of a test: here, every route's session becomes one
    # on a database that cannot be opened. (The client fixture undoes it afterwards.)
    unreachable = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/no-such-folder/books.db")

    async def session_on_an_unreachable_database() -> Any:
        async with async_sessionmaker(unreachable)() as session:
            yield session

    main.app.dependency_overrides[main.get_session] = session_on_an_unreachable_database
    for response in [await client.get("/health"), await client.get("/books"), await client.post("/books", json=HOBBIT)]:
        assert response.status_code == 503
        assert response.json() == {"detail": "The database cannot be reached, or is busy: try again in a few seconds"}
        assert response.headers["retry-after"] == "5"
    await unreachable.dispose()


# --- API_KEY ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": "S3CRET"}])
async def test_with_api_key_writes_need_the_key(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    created = await create(client)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    json_headers = headers | {"Content-Type": "application/json"}
    for response in [
        await client.post("/books", json=book(isbn=None), headers=headers),
        await client.post("/books", content="{not json", headers=json_headers),  # the key is checked first
        await client.patch(f"/books/{created['id']}", json={"year": 2000}, headers=headers),
        await client.delete(f"/books/{created['id']}", headers=headers),
    ]:
        assert response.status_code == 401
        assert "X-API-Key" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "APIKey"
    assert await stored_books() == [created]


async def test_with_api_key_writes_succeed_with_it_and_reads_stay_open(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    created = (await client.post("/books", json=HOBBIT, headers={"X-API-Key": "s3cret"})).json()
    assert (await client.get("/books")).json() == [created]
    assert (await client.get(f"/books/{created['id']}")).status_code == 200
    assert (await client.delete(f"/books/{created['id']}", headers={"X-API-Key": "s3cret"})).status_code == 204


# --- Bodies that are too large, and errors that repeat nothing -------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_body_over_1_mib_is_413_and_changes_nothing(client: AsyncClient, method: str) -> None:
    created = await create(client)
    huge = json.dumps(book(title="x" * 2_000_000))
    url = "/books" if method == "POST" else f"/books/{created['id']}"
    response = await client.request(method, url, content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "1 MiB" in response.json()["detail"]
    assert await stored_books() == [created]


async def test_validation_errors_do_not_echo_the_input(client: AsyncClient) -> None:
    response = await client.post("/books", json=book(title="x" * 201, secret="do not repeat me"))
    assert response.status_code == 422
    assert "do not repeat me" not in response.text and "xxxx" not in response.text
    assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])


# --- The documentation -----------------------------------------------------------------------------------------------


async def test_every_error_a_route_can_answer_is_documented_with_an_example(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    errors = {
        (path, method): {code for code in operation["responses"] if code >= "400"}
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    every_route = {"400", "413", "503"}  # an unreadable or oversized body, or a database that cannot be used
    assert errors == {  # and no 401: this server was started without API_KEY, so writes need no key
        ("/books", "get"): every_route | {"422"},
        ("/books", "post"): every_route | {"409", "422"},
        ("/books/{book_id}", "get"): every_route | {"404", "422"},
        ("/books/{book_id}", "put"): every_route | {"404", "409", "422"},
        ("/books/{book_id}", "patch"): every_route | {"404", "409", "422"},
        ("/books/{book_id}", "delete"): every_route | {"404", "422"},
        ("/health", "get"): every_route,
    }
    created = schema["paths"]["/books"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert schema["components"]["schemas"][created["$ref"].split("/")[-1]]["examples"][0]["isbn"] == "9780141439587"
