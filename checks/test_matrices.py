"""The full matrices behind test_main.py's few examples, and tests of the machinery under the API.

    python -m pytest checks/test_matrices.py                                  # SQLite
    TEST_DATABASE_URL=postgresql+asyncpg://... python -m pytest checks/test_matrices.py

Same fixtures as the learners' suite (conftest.py at the top: an empty database per test), run by CI on SQLite and
PostgreSQL. What a learner should imitate is in test_main.py; here is everything else that must keep holding.
"""

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, inspect, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import main
from test_main import (
    AUSTEN_ISBN10,
    AUSTEN_ISBN13,
    HOBBIT,
    HOBBIT_ISBN13,
    add_library,
    book,
    create,
    error_locations,
    stored_books,
)

ROOT = Path(__file__).resolve().parent.parent
MAX_ID = 2**63 - 1
SQLITE_ONLY = pytest.mark.skipif(bool(os.getenv("TEST_DATABASE_URL")), reason="SQLite's own settings")


# --- Every field rule ------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("year", [0, -1, 10000, 99999, 2**63, 2**64, 10**30, "1937", 1937.0, 1937.5, True, None])
async def test_year_rejected(client: AsyncClient, year: Any) -> None:
    response = await client.post("/books", json=book(year=year))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "year"]]
    assert await stored_books() == []


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "NaN", "Infinity", "9" * 4000])
async def test_years_json_cannot_hold_as_an_int(client: AsyncClient, raw: str) -> None:
    body = json.dumps(book()).replace("1937", raw)
    response = await client.post("/books", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert await stored_books() == []


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("9780547928227", HOBBIT_ISBN13),
        ("978-0-547-92822-7", HOBBIT_ISBN13),
        (" 978 0 547 92822 7 ", HOBBIT_ISBN13),
        ("0-14-143951-3", AUSTEN_ISBN13),
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


async def test_many_books_without_isbn(client: AsyncClient) -> None:
    for _ in range(3):
        await create(client, isbn=None)
    assert len(await stored_books()) == 3


async def test_put_keeping_its_own_isbn_and_patch_normalising_one(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json=book(year=1938))
    assert response.json() == {**created, "year": 1938}
    other = await create(client, isbn=None, title="Emma")
    patched = await client.patch(f"/books/{other['id']}", json={"isbn": "0-14-143951-3"})
    assert patched.json()["isbn"] == AUSTEN_ISBN13


@pytest.mark.parametrize("field", ["title", "author", "year"])
async def test_patch_null_for_a_required_field_is_422(client: AsyncClient, field: str) -> None:
    created = await create(client)
    response = await client.patch(f"/books/{created['id']}", json={field: None})
    assert response.status_code == 422
    assert error_locations(response) == [["body", field]]
    assert await stored_books() == [created]


async def test_put_rejects_an_id_in_the_body(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json=book(id=created["id"]))
    assert response.status_code == 422
    assert await stored_books() == [created]


# --- Moved from test_main.py: rules that hold, with fewer examples there --------------------------------------------


async def test_unknown_fields_are_rejected(client: AsyncClient) -> None:
    response = await client.post("/books", json=book(pages=310))
    assert response.status_code == 422
    assert error_locations(response) == [["body", "pages"]]


async def test_isbn_is_optional(client: AsyncClient) -> None:
    response = await client.post("/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    assert response.status_code == 201
    assert response.json()["isbn"] is None


async def test_put_taking_another_books_isbn_is_409(client: AsyncClient) -> None:
    hobbit = await create(client)
    emma = await create(client, title="Emma", isbn=None)
    response = await client.put(f"/books/{emma['id']}", json=book(title="Emma"))
    assert response.status_code == 409
    assert await stored_books() == [hobbit, emma]


async def test_patch_of_a_missing_book_is_404(client: AsyncClient) -> None:
    response = await client.patch("/books/42", json={"year": 2000})
    assert response.status_code == 404
    assert response.json() == {"detail": "Book 42 not found"}


async def test_the_root_points_to_the_docs(client: AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 404
    assert "/docs lists them all" in response.json()["detail"]


async def test_head_gives_the_headers_of_get(client: AsyncClient) -> None:
    created = await create(client)
    get, head = await client.get(f"/books/{created['id']}"), await client.head(f"/books/{created['id']}")
    assert head.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert (await client.head("/books")).headers["x-total-count"] == "1"


async def test_one_book_cannot_enter_twice_under_two_spellings(client: AsyncClient) -> None:
    await create(client, isbn=AUSTEN_ISBN10)
    response = await client.post("/books", json=book(isbn=AUSTEN_ISBN13))
    assert response.status_code == 409


async def test_put_without_isbn_clears_it(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.put(f"/books/{created['id']}", json={"title": "T", "author": "A", "year": 2000})
    assert response.json()["isbn"] is None
    assert (await stored_books())[0]["isbn"] is None


# --- Every bad id, on every route that takes one ---------------------------------------------------------------------

BAD_IDS = ["0", "-1", str(2**63), str(10**30), "abc", "1.5", "9" * 5000, "1_0", "1.0", "+1", "%201", "1%0A", "%D9%A1"]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_ids_outside_1_to_2_63_are_422(client: AsyncClient, method: str, bad_id: str) -> None:
    body = book() if method == "PUT" else {} if method == "PATCH" else None
    response = await client.request(method, f"/books/{bad_id}", json=body)
    assert response.status_code == 422
    assert error_locations(response) == [["path", "book_id"]]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_the_largest_id_is_a_plain_404(client: AsyncClient, method: str) -> None:
    body = book() if method == "PUT" else {} if method == "PATCH" else None
    response = await client.request(method, f"/books/{MAX_ID}", json=body)
    assert response.status_code == 404
    assert response.json() == {"detail": f"Book {MAX_ID} not found"}


# --- Every list parameter --------------------------------------------------------------------------------------------


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
        ("limit", "1_0"),
        ("offset", " 1"),
        ("year_from", "+1937"),
        ("q", "a\u2029b"),
    ],
)
async def test_bad_list_parameters_are_422(client: AsyncClient, param: str, value: Any) -> None:
    await create(client)
    response = await client.get("/books", params={param: value})
    assert response.status_code == 422
    assert error_locations(response) == [["query", param]]


async def test_limit_100_is_allowed(client: AsyncClient) -> None:
    assert (await client.get("/books", params={"limit": 100})).status_code == 200


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
async def test_every_sort(client: AsyncClient, sort: str, titles: list[str]) -> None:
    await add_library(client)
    response = await client.get("/books", params={"sort": sort})
    assert [b["title"] for b in response.json()] == titles


async def test_text_that_case_folds_longer_than_its_limit_is_stored_and_found(client: AsyncClient) -> None:
    created = await create(client, title="ß" + "a" * 199, author="Groß" + "e" * 96, isbn=None)  # "ß" folds to "ss"
    response = await client.get("/books", params={"q": "SSAAA", "author": "GROSS" + "E" * 96})
    assert response.json() == [created]


@pytest.mark.parametrize(("q", "found"), [("ZOË", 1), ("zoë ünal", 1), ("ÜBER", 1), ("brontË", 2), ("_fic", 1)])
async def test_search_in_any_case_of_any_alphabet(client: AsyncClient, q: str, found: int) -> None:
    await add_library(client)
    response = await client.get("/books", params={"q": q})
    assert response.headers["x-total-count"] == str(found)


# --- API_KEY: every write, every wrong key ---------------------------------------------------------------------------

WRITES = [
    ("POST", "/books", HOBBIT),
    ("PUT", "/books/1", HOBBIT),
    ("PATCH", "/books/1", {}),
    ("DELETE", "/books/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize("key", [None, "", "wrong", "s3cret-", "s 3cret", "S3CRET", "ünïcode-kéy", "s3cret\u00a0"])
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
    for key in ["s3cret", " s3cret", "s3cret ", "\ts3cret\t"]:  # spaces and tabs around a key are not part of it
        response = await client.request(method, path, json=body, headers={"X-API-Key": key})
        assert response.status_code == expected if key == "s3cret" else response.status_code != 401


async def test_without_api_key_any_key_is_ignored(client: AsyncClient) -> None:
    created = await create(client)
    response = await client.delete(f"/books/{created['id']}", headers={"X-API-Key": "anything"})
    assert response.status_code == 204


# The document's security, with API_KEY set and without: checks/test_start_up.py (it is written at import).


# --- Hostile bodies: always a 4xx with a `detail`, never a change to stored data -------------------------------------

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
    ("array body", json.dumps([HOBBIT]).encode(), "application/json"),
    ("string body", b'"The Hobbit"', "application/json"),
    ("null body", b"null", "application/json"),
    ("empty body", b"", "application/json"),
    ("plain-text content type", json.dumps(HOBBIT).encode(), "text/plain"),
    ("form content type", b"title=T&author=A&year=2000", "application/x-www-form-urlencoded"),
    ("no content type", json.dumps(HOBBIT).encode(), ""),
    ("duplicate keys, last one bad", b'{"title": "T", "author": "A", "year": 2000, "year": 0}', "application/json"),
]


@pytest.mark.parametrize(("method", "path"), [("POST", "/books"), ("PUT", "/books/{id}"), ("PATCH", "/books/{id}")])
@pytest.mark.parametrize(("name", "body", "content_type"), HOSTILE_BODIES, ids=[b[0] for b in HOSTILE_BODIES])
async def test_hostile_bodies_get_a_4xx_and_change_nothing(
    client: AsyncClient, method: str, path: str, name: str, body: bytes, content_type: str
) -> None:
    created = await create(client)
    headers = {"content-type": content_type} if content_type else {}
    response = await client.request(method, path.format(id=created["id"]), content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert await stored_books() == [created]


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_is_told_to_send_json(client: AsyncClient, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/books", content=json.dumps(HOBBIT), headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == (
        "Send the body as JSON, with the header Content-Type: application/json"
    )


async def test_streamed_body_over_1_mib_is_413(client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'", "author": "A", "year": 2000}'

    response = await client.post("/books", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert await stored_books() == []


async def test_a_body_of_exactly_1_mib_is_parsed(client: AsyncClient) -> None:
    body = json.dumps(book(title="x")).encode()
    body = body.replace(b'"x"', b'"x' + b" " * (2**20 - len(body)) + b'"')  # trailing spaces are stripped
    assert len(body) == 2**20
    response = await client.post("/books", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201
    assert response.json()["title"] == "x"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_streamed_body_over_1_mib_is_413_on_every_write_and_changes_nothing(
    client: AsyncClient, method: str
) -> None:
    created = await create(client)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows only as the body arrives
        for _ in range(20):
            yield b"x" * 100_000

    url = "/books" if method == "POST" else f"/books/{created['id']}"
    response = await client.request(method, url, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert await stored_books() == [created]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "words"),
    [
        ("GET", "/nothing", None, 404, "/docs"),
        ("GET", "/books/", None, 404, "/docs"),  # not a redirect, which would be built from the Host header
        ("PUT", "/books", None, 405, "Allow header"),
        ("POST", "/books", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
    ],
)
async def test_errors_from_fastapi_itself_say_what_to_do(
    client: AsyncClient, method: str, path: str, content: bytes | None, status: int, words: str
) -> None:
    headers = {"content-type": "application/json", "host": "evil.example"}
    response = await client.request(method, path, content=content, headers=headers)
    assert response.status_code == status and "location" not in response.headers
    assert words in response.json()["detail"]


INVISIBLE = ["\u200b", "\u202e", "\u2060\u00a0", "\ufeff", "\u034f", "\ufe0f", "\U000e0100", "\u180b", "\u17b4"]


@pytest.mark.parametrize("sent", [*INVISIBLE, "\u200b \u200b", "a\u2028b", "a\u2029b", "a\x85b"])
async def test_text_without_a_visible_character_or_with_line_separators_is_refused(
    client: AsyncClient, sent: str
) -> None:
    for field in ("title", "author"):
        response = await client.post("/books", json=book(**{field: sent}))
        assert response.status_code == 422
    assert await stored_books() == []


@pytest.mark.parametrize("sent", ["鍵", "ب", "e\u0301", "\u00a7", "7", "?", "Shaking \U0001fae8", "\u3164"])
async def test_any_letter_number_punctuation_or_symbol_will_do(client: AsyncClient, sent: str) -> None:
    # Unicode calls the Hangul filler U+3164 a letter, though it shows nothing: Unicode's word is the rule. A character
    # this Python's Unicode does not know yet (U+1FAE8 is newer than Python 3.11's) is accepted beside a known one.
    response = await client.post("/books", json=book(title=sent, isbn=None))
    assert response.status_code == 201, response.text


async def test_zero_width_joiners_and_spaces_inside_a_title_are_kept(client: AsyncClient) -> None:
    for title in [
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "Où\u00a0?",
        "東京\u3000物語",
    ]:
        assert (await create(client, title=title, isbn=None))["title"] == title


async def test_a_patch_stores_nfc_too_and_the_author_filter_finds_either_spelling(client: AsyncClient) -> None:
    created = await create(client, isbn=None)
    response = await client.patch(f"/books/{created['id']}", json={"author": "Bronte\u0308"})
    assert response.json()["author"] == "Bront\u00eb"
    for spelling in ("Bront\u00eb", "Bronte\u0308", "BRONTË"):
        assert len((await client.get("/books", params={"author": spelling})).json()) == 1


async def test_a_percent_encoded_surrogate_in_q_is_harmless(client: AsyncClient) -> None:
    await create(client)
    response = await client.get("/books?q=%ED%A0%80&author=%ED%A0%80")
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("path", ["/books", "/books/1", "/health", "/docs", "/openapi.json"])
async def test_head_on_every_get_route(client: AsyncClient, path: str) -> None:
    await create(client)
    get, head = await client.get(path), await client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]


# --- When the database, not the request, is at fault: 503, saying why -----------------------------------------------


def session_on(engine: Any) -> Any:
    """A replacement for main.get_session, on another engine (see app.dependency_overrides in test_main.py)."""

    async def get_session() -> AsyncIterator[Any]:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            yield session

    return get_session


async def test_a_read_only_database_serves_reads_and_refuses_writes_with_503(client: AsyncClient, db_url: str) -> None:
    created = await create(client)
    if main.engine.dialect.name == "sqlite":  # SQLite's own read-only mode, as for a file the server may not write
        read_only = create_async_engine(f"sqlite+aiosqlite:///file:{main.engine.url.database}?mode=ro&uri=true")
    else:  # a PostgreSQL replica, or a database set read-only, says the same
        read_only = create_async_engine(
            db_url, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
        )
    main.app.dependency_overrides[main.get_session] = session_on(read_only)
    assert (await client.get(f"/books/{created['id']}")).status_code == 200
    for response in [
        await client.post("/books", json=book(isbn=None)),
        await client.patch(f"/books/{created['id']}", json={"year": 1}),
        await client.delete(f"/books/{created['id']}"),
    ]:
        assert response.status_code == 503
        assert "read-only" in response.json()["detail"] and "retry-after" not in response.headers
    await read_only.dispose()
    assert await stored_books() == [created]


@pytest.mark.parametrize(
    "error",
    [main.exc.TimeoutError("QueuePool limit reached"), ConnectionRefusedError(111, "Connect call failed")],
)
async def test_a_full_pool_or_a_refused_connection_is_503_with_retry_after(
    client: AsyncClient, error: Exception
) -> None:
    async def failing_session() -> AsyncIterator[Any]:
        raise error
        yield

    main.app.dependency_overrides[main.get_session] = failing_session
    response = await client.get("/books")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5" and "try again" in response.json()["detail"]


def coded(code: str) -> Exception:
    """A driver's error as SQLAlchemy raises it: SQLite names its code, PostgreSQL gives its SQLSTATE."""
    cause = Exception("words that change with the database's version and language")
    setattr(cause, "sqlite_errorname" if code.startswith("SQLITE") else "sqlstate", code)
    return main.exc.OperationalError("SELECT", {}, cause)


@pytest.mark.parametrize(
    ("code", "status", "words"),
    [
        *[
            (code, 503, "try again")
            for code in ["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR_WRITE"]
        ],
        *[(code, 503, "try again") for code in ["08006", "40001", "40P01", "53300", "57P01", "57P03"]],
        *[(code, 503, "read-only") for code in ["SQLITE_READONLY", "25006"]],
        *[(code, 503, "full") for code in ["SQLITE_FULL", "53100"]],
        *[(code, 503, "damaged") for code in ["SQLITE_CORRUPT", "SQLITE_NOTADB"]],
        ("SQLITE_READONLY_DBMOVED", 503, "deleted or replaced"),
        *[(code, 500, "log") for code in ["SQLITE_ERROR", "42703", "42P01", "57014", "22P02"]],  # bugs, and a cancel
    ],
)
async def test_an_outage_is_503_by_its_code_and_a_bug_stays_a_500(
    client: AsyncClient, code: str, status: int, words: str
) -> None:
    async def failing_session() -> AsyncIterator[Any]:
        raise coded(code)
        yield

    main.app.dependency_overrides[main.get_session] = failing_session
    transport = ASGITransport(main.app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as other:
        response = await other.get("/books")
    assert response.status_code == status and words in response.json()["detail"]
    assert ("retry-after" in response.headers) == (words == "try again")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/books", "GET, HEAD, POST"),
        ("POST", "/books/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("OPTIONS", "/books/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
async def test_a_405_lists_every_method_of_the_path(client: AsyncClient, method: str, path: str, allow: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allow


@pytest.mark.parametrize("sent", ["bytes=5-2", "bytes=abc", "items=0-5", "bytes=999999999-", "bytes=0-9"])
async def test_a_range_is_ignored_and_the_whole_file_sent(client: AsyncClient, sent: str) -> None:
    whole = await client.get("/static-offline-docs/swagger-ui.css")
    response = await client.get("/static-offline-docs/swagger-ui.css", headers={"range": sent})
    assert response.status_code == 200 and response.content == whole.content


async def test_without_the_api_key_a_body_that_is_not_even_json_is_401(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    for body in [b"[" * 5000 + b"]" * 5000, "caf\u00e9".encode("latin-1"), b"{not json"]:
        response = await client.post("/books", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 401


@SQLITE_ONLY
async def test_a_write_is_not_acknowledged_when_the_file_is_deleted_while_it_waits(client: AsyncClient) -> None:
    def delete_the_file(*_: Any) -> None:  # as the INSERT runs: after the connection was checked out, before commit
        for suffix in ("", "-wal", "-shm"):
            Path(f"{main.engine.url.database}{suffix}").unlink(missing_ok=True)

    event.listen(main.engine.sync_engine, "before_cursor_execute", delete_the_file, once=True)
    response = await client.post("/books", json=book())
    assert response.status_code == 503 and "deleted or replaced" in response.json()["detail"]


async def test_a_bug_is_a_json_500(client: AsyncClient) -> None:
    async def buggy_session() -> AsyncIterator[Any]:
        raise RuntimeError("a bug")
        yield

    main.app.dependency_overrides[main.get_session] = buggy_session
    transport = ASGITransport(main.app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as buggy:
        response = await buggy.get("/books")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error: the server's log says what went wrong"}


@SQLITE_ONLY
async def test_a_deleted_database_file_is_503_until_a_restart(client: AsyncClient) -> None:
    await create(client)
    for suffix in ("", "-wal", "-shm"):
        await asyncio.to_thread(Path(f"{main.engine.url.database}{suffix}").unlink)
    for _ in range(3):  # each time: the connection is replaced, and a new file may get the old one's inode number
        for response in [await client.get("/health"), await client.post("/books", json=book(isbn=None))]:
            assert response.status_code == 503
            assert "deleted or replaced: restart the API" in response.json()["detail"]


# --- Start-up, settings and the machinery under the API --------------------------------------------------------------


async def test_writes_survive_a_new_engine_on_the_same_database(client: AsyncClient, db_url: str) -> None:
    created = await create(client)
    patched = (await client.patch(f"/books/{created['id']}", json={"year": 1938})).json()
    await main.engine.dispose()
    fresh = create_async_engine(db_url)
    async with async_sessionmaker(fresh)() as session:
        stored = await session.get(main.BookModel, created["id"])
        assert stored is not None
        assert main.BookOut.model_validate(stored).model_dump() == patched
    await fresh.dispose()


@SQLITE_ONLY
async def test_sqlite_uses_one_connection_with_wal_and_foreign_keys(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        assert (await connection.scalar(text("PRAGMA journal_mode"))) == "wal"
        assert (await connection.scalar(text("PRAGMA foreign_keys"))) == 1
    assert (main.engine.pool.size(), main.engine.pool._max_overflow) == (1, 0)  # one connection, no overflow


async def test_a_write_left_uncommitted_is_rolled_back_before_the_connection_is_reused(client: AsyncClient) -> None:
    await create(client, title="Kept")
    async with main.engine.connect() as connection:  # a write SQLAlchemy does not know of, as a failure might leave
        driver = (await connection.get_raw_connection()).dbapi_connection
        await connection.run_sync(lambda _: driver.cursor().execute("UPDATE books SET title = 'Lost'"))
    await create(client, title="Also kept", isbn=None)
    assert [b["title"] for b in await stored_books()] == ["Kept", "Also kept"]


async def test_lifespan_creates_the_table(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        assert await connection.run_sync(lambda sync: inspect(sync).has_table("books"))


async def test_server_processes_starting_together_all_find_their_tables(client: AsyncClient) -> None:
    async def create_all() -> None:  # as the lifespan does, in each of several server processes at once
        async with main.engine.begin() as connection:
            await connection.run_sync(main.Base.metadata.create_all)

    async with main.engine.begin() as connection:
        await connection.run_sync(main.Base.metadata.drop_all)
    await asyncio.gather(*(create_all() for _ in range(4)))
    async with main.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) == set(main.Base.metadata.tables)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_this_server(client: AsyncClient, page: str) -> None:
    html = (await client.get(page)).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        assert (await client.get(asset)).status_code == 200, asset
    assert "cdn." not in html


async def test_every_operation_has_a_summary_a_description_and_examples(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert operation["summary"] and operation["description"], (path, method)
            assert operation["tags"] == (["health"] if path == "/health" else ["books"])
            for code, response in operation["responses"].items():
                if code >= "400" and code != "422":
                    assert response["content"]["application/json"]["example"]["detail"], (path, method, code)
            if "requestBody" in operation:
                name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
                assert schema["components"]["schemas"][name]["examples"], (path, method)
    assert "Try it out" in schema["info"]["description"]


async def test_demo_books_fill_an_empty_table_and_nothing_else(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "DEMO_BOOKS", True)
    async with main.app.router.lifespan_context(main.app):
        listed_books = (await client.get("/books", params={"limit": 100})).json()
    assert [b["title"] for b in listed_books] == [book["title"] for book in main.DEMO]
    assert (await client.get("/books", params={"q": "brontë"})).json()[0]["author"] == "Charlotte Brontë"
    async with main.app.router.lifespan_context(main.app):  # a table with books is never touched
        assert len(await stored_books()) == len(main.DEMO)


async def test_demo_books_are_off_by_default(client: AsyncClient) -> None:
    assert main.DEMO_BOOKS is False
    assert await stored_books() == []


@pytest.mark.parametrize(
    ("content_type", "body", "hint"),
    [
        ("text/json", b'{"title": "A", "author": "B", "year": 2000}', True),  # FastAPI does not read text/json
        ("text/plain", b'{"title": "A", "author": "B", "year": 2000}', True),
        ("APPLICATION/JSON", b"[]", False),  # read as JSON (media types ignore case): the hint would mislead
        ("application/ld+json", b"[]", False),
    ],
)
async def test_the_send_as_json_hint_follows_what_fastapi_read(
    client: AsyncClient, content_type: str, body: bytes, hint: bool
) -> None:
    response = await client.post("/books", content=body, headers={"content-type": content_type})
    assert response.status_code == 422
    assert ("Send the body as JSON" in response.json()["detail"][0]["msg"]) == hint
