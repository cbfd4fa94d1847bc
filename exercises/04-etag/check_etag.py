"""Checker for exercise 4, ETag and If-Match: python -m pytest exercises/04-etag/check_etag.py

Each test checks one line of the goal in exercises/04-etag/README.md, and says what to do when it fails.
"""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, make_url, select
from sqlalchemy.ext.asyncio import create_async_engine

import main

ROOT = Path(__file__).resolve().parent.parent.parent
HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}


def etag_of(response: Response, request: str) -> str:
    assert response.is_success, f"{request} answered {response.status_code}: {response.text}"
    assert "etag" in response.headers, f'{request} should send the header ETag: "<version>"'
    return response.headers["etag"]


async def new_book(client: AsyncClient) -> str:
    response = await client.post("/books", json=HOBBIT)
    assert response.status_code == 201, f"POST /books answered {response.status_code}: {response.text}"
    return f"/books/{response.json()['id']}"


async def patch(client: AsyncClient, url: str, if_match: str | None = None, **fields: Any) -> Response:
    return await client.patch(url, json=fields, headers={} if if_match is None else {"If-Match": if_match})


async def test_reads_and_creates_send_the_version_as_an_etag(client: AsyncClient) -> None:
    response = await client.post("/books", json=HOBBIT)
    assert etag_of(response, "POST /books") == '"1"', 'a new book is version 1: ETag: "1", with the quotes'
    assert etag_of(await client.get(f"/books/{response.json()['id']}"), "GET /books/{id}") == '"1"'
    assert "version" not in response.json(), "the JSON of a book does not change: the version travels in ETag"


async def test_every_change_makes_a_new_etag(client: AsyncClient) -> None:
    url = await new_book(client)
    patched = etag_of(await patch(client, url, year=1938), "PATCH")
    replaced = etag_of(await client.put(url, json=HOBBIT | {"year": 1951}), "PUT")
    assert [patched, replaced] == ['"2"', '"3"'], f"each change adds one to the version, not {[patched, replaced]}"
    assert etag_of(await client.get(url), "GET") == '"3"'


async def test_a_write_with_the_current_etag_succeeds(client: AsyncClient) -> None:
    url = await new_book(client)
    response = await patch(client, url, etag_of(await client.get(url), "GET"), year=1938)
    assert response.status_code == 200 and response.json()["year"] == 1938, f"If-Match current: {response.text}"


async def test_the_second_of_two_writers_from_one_read_gets_412(client: AsyncClient) -> None:
    url = await new_book(client)
    etag = etag_of(await client.get(url), "GET")  # two people open the same book
    first = await patch(client, url, etag, year=1938)
    second = await patch(client, url, etag, year=1999)
    assert first.status_code == 200, f"the first write, with the current ETag, should pass: {first.text}"
    assert second.status_code == 412, f"the second, with an ETag that is no longer current, is a 412: {second.text}"
    book_id = url.rsplit("/", 1)[1]
    detail = f"Book {book_id} changed since you read it: GET it for its new ETag and retry"
    assert second.json()["detail"] == detail, f"the 412's detail should be {detail!r}"
    assert (await client.get(url)).json()["year"] == 1938, "the first write must not be lost"


async def test_a_stale_put_or_delete_changes_nothing(client: AsyncClient) -> None:
    url = await new_book(client)
    before = (await patch(client, url, year=1938)).json()
    stale = {"If-Match": '"1"'}
    assert (await client.put(url, json=HOBBIT, headers=stale)).status_code == 412, "a stale PUT is a 412"
    assert (await client.delete(url, headers=stale)).status_code == 412, "a stale DELETE is a 412"
    assert (await client.get(url)).json() == before, "after a 412 the book is as it was"
    assert (await client.delete(url, headers={"If-Match": '"2"'})).status_code == 204, "a current DELETE works"


async def test_if_match_on_a_missing_book_is_404(client: AsyncClient) -> None:
    for response in [
        await patch(client, "/books/42", '"1"', year=2000),
        await client.delete("/books/42", headers={"If-Match": '"1"'}),
    ]:
        assert response.status_code == 404, (
            f"a missing book is a 404 whatever If-Match says, not {response.status_code}"
        )


async def test_star_and_no_header_mean_any_version(client: AsyncClient) -> None:
    url = await new_book(client)
    assert (await patch(client, url, "*", year=1938)).status_code == 200, "If-Match: * matches any version"
    assert (await patch(client, url, year=1939)).status_code == 200, "no If-Match means any version"


async def test_a_list_of_tags_matches_when_any_of_them_does(client: AsyncClient) -> None:
    url = await new_book(client)
    assert (await patch(client, url, '"5", "6"', year=1938)).status_code == 412, 'version 1 is not in "5", "6"'
    response = await patch(client, url, '"1", "2"', year=1938)
    assert response.status_code == 200, f'version 1 is in "1", "2": RFC 9110 13.1.1 says it matches ({response.text})'
    two_lines = [("If-Match", '"5"'), ("If-Match", '"2"')]  # version 2 now, named on the second of two lines
    response = await client.patch(url, json={"year": 1939}, headers=two_lines)
    assert response.status_code == 200, f"two If-Match lines are one list: version 2 is in it ({response.text})"


async def test_a_tag_this_api_never_sends_matches_nothing(client: AsyncClient) -> None:
    url = await new_book(client)
    for header in ['W/"1"', "1", '"one"', '"01"', '"' + "9" * 30 + '"']:
        response = await patch(client, url, header, year=2000)
        assert response.status_code == 412, f"If-Match: {header} should be a 412, not {response.status_code}"
    assert (await client.get(url)).json()["year"] == 1937, "nothing changed"


async def test_an_empty_patch_keeps_the_version_but_checks_if_match(client: AsyncClient) -> None:
    url = await new_book(client)
    assert (await patch(client, url, '"1"')).status_code == 200, "PATCH {} with the current ETag is fine"
    assert (await patch(client, url, '"7"')).status_code == 412, "PATCH {} with another version is a 412"
    assert etag_of(await client.get(url), "GET") == '"1"', "PATCH {} changes nothing, not even the version"


# --- The migration: a database that already has books --------------------------------------------------------------

STARTING = MetaData()  # the books table as the starting main.py makes it
STARTING_BOOKS = Table(
    "books",
    STARTING,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("author", String(100), nullable=False),
    Column("year", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("isbn", String(13), unique=True),
    Column("title_folded", String, nullable=False, index=True),
    Column("author_folded", String, nullable=False, index=True),
    sqlite_autoincrement=True,
)


async def empty_database() -> None:
    await main.engine.dispose()
    url = make_url(main.DATABASE_URL)
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            await asyncio.to_thread(Path(f"{url.database}{suffix}").unlink, missing_ok=True)
        return
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        await connection.exec_driver_sql("CREATE SCHEMA public")
    await engine.dispose()


async def test_alembic_upgrade_head_gives_the_books_already_there_version_1() -> None:
    await empty_database()
    engine = create_async_engine(main.DATABASE_URL)
    async with engine.begin() as connection:  # a database the starting code made, with one book
        await connection.run_sync(STARTING.create_all)
        folded = {"title_folded": "the hobbit", "author_folded": "j. r. r. tolkien"}
        await connection.execute(insert(STARTING_BOOKS).values(**HOBBIT, **folded))
    await engine.dispose()
    environment = {**os.environ, "DATABASE_URL": main.DATABASE_URL}
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        advice = "do exercise 3 (migrations) first, then add a third migration"
        pytest.fail(f"alembic upgrade head failed: {advice}.\n{(result.stdout + result.stderr)[-1500:]}")
    try:
        async with main.lifespan(main.app), main.SessionLocal() as session:
            versions = list(await session.scalars(select(main.BookModel.version)))
    finally:
        await empty_database()
    assert versions == [1], f"the book that was there should have version 1 after the migration, not {versions}"
