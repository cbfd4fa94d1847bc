"""Checker for exercise 4, ETag and If-Match: python -m pytest exercises/04-etag/check_etag.py

Each test checks one line of the goal in exercises/04-etag/README.md, and says what to do when it fails.
"""

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

import main

sys.path.append(str(Path(__file__).resolve().parent.parent / "03-migrations"))  # this exercise builds on exercise 3
from migration_tools import ROOT, STARTING, STARTING_BOOKS, empty_database, run_alembic, the_api

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


async def test_of_writes_sent_at_once_with_one_etag_exactly_one_happens(client: AsyncClient) -> None:
    for _ in range(5):  # on PostgreSQL, which runs them at once, a check made apart from the write lets several pass
        url = await new_book(client)
        etag = etag_of(await client.get(url), "GET")
        writes = [patch(client, url, etag, year=1900 + n) for n in range(10)]
        responses = await asyncio.gather(*writes)
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [412] * 9, (
            f"10 PATCHes sent at once with If-Match: {etag} answered {statuses}: exactly one should happen, and the"
            " others get the 412. Check the version in the statement that writes, not in Python before it"
        )
        winner = next(response for response in responses if response.status_code == 200)
        stored = await client.get(url)
        assert stored.json()["year"] == winner.json()["year"] and etag_of(stored, "GET") == '"2"', (
            "the book should hold the one write that was answered 200, as version 2"
        )


async def test_a_stale_put_or_delete_changes_nothing(client: AsyncClient) -> None:
    url = await new_book(client)
    before = (await patch(client, url, year=1938)).json()
    stale = {"If-Match": '"1"'}
    assert (await client.put(url, json=HOBBIT, headers=stale)).status_code == 412, "a stale PUT is a 412"
    assert (await client.delete(url, headers=stale)).status_code == 412, "a stale DELETE is a 412"
    assert (await client.get(url)).json() == before, "after a 412 the book is as it was"
    assert (await client.delete(url, headers={"If-Match": '"2"'})).status_code == 204, "a current DELETE works"


async def test_if_match_on_a_missing_book_is_404(client: AsyncClient) -> None:
    for if_match in ['"1"', "*"]:
        for response in [
            await patch(client, "/books/42", if_match, year=2000),
            await client.put("/books/42", json=HOBBIT, headers={"If-Match": if_match}),
            await client.delete("/books/42", headers={"If-Match": if_match}),
        ]:
            method = response.request.method
            assert response.status_code == 404, (
                f"{method} of a missing book with If-Match: {if_match} answered {response.status_code}: a missing"
                " book is a 404 whatever If-Match says, even * (the goal says why)"
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


async def test_an_empty_if_match_names_no_version_and_matches_nothing(client: AsyncClient) -> None:
    url = await new_book(client)
    empty = {"If-Match": ""}  # the header is there, with no tag in it: not the same as no header
    for response in [
        await patch(client, url, "", year=2000),
        await client.put(url, json=HOBBIT | {"year": 2000}, headers=empty),
        await client.delete(url, headers=empty),
    ]:
        method = response.request.method
        assert response.status_code == 412, (
            f"{method} with an empty If-Match answered {response.status_code}: a precondition that names no version"
            " matches nothing, so it is a 412 (only a missing If-Match, or *, means any version)"
        )
    after = await client.get(url)
    assert after.status_code == 200, "a DELETE with an empty If-Match must not delete the book"
    assert etag_of(after, "GET") == '"1"' and after.json()["year"] == 1937, "after a 412 the book is as it was"


async def test_a_list_may_name_up_to_100_versions(client: AsyncClient) -> None:
    url = await new_book(client)  # version 1
    transport = ASGITransport(main.app, raise_app_exceptions=False)  # here an error is a 500, not an exception
    async with AsyncClient(transport=transport, base_url="http://test") as answering:
        hundred = ", ".join(f'"{version}"' for version in range(100, 0, -1))  # 100 versions, the current one last
        response = await patch(answering, url, hundred, year=1938)
        assert response.status_code == 200, f"If-Match with 100 versions, the current one among them: {response.text}"
        twice = ", ".join(['"2"'] * 40_000)  # one version, named 40 000 times: it counts once
        response = await patch(answering, url, twice, year=1939)
        assert response.status_code == 200, (
            f"If-Match naming the current version 40 000 times answered {response.status_code}: a tag named twice"
            " counts once (send each version to the database once)"
        )
        for count in (101, 40_000):
            many = ", ".join(f'"{version}"' for version in range(count, 0, -1))  # the current one (3) among them
            response = await patch(answering, url, many, year=2000)
            assert response.status_code == 412, (
                f"If-Match with {count} different versions answered {response.status_code}: a list of more than 100"
                " versions matches nothing (a database takes only so many values with one statement: PostgreSQL's"
                " driver 32767), so it is a 412"
            )
    assert (await client.get(url)).json()["year"] == 1939, "after a 412 the book is as it was"


async def test_the_etag_and_if_match_are_documented(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method, status in [
        ("/books", "post", "201"),
        ("/books/{book_id}", "get", "200"),
        ("/books/{book_id}", "put", "200"),
        ("/books/{book_id}", "patch", "200"),
    ]:
        headers = {name.lower() for name in paths[path][method]["responses"][status].get("headers", {})}
        assert "etag" in headers, (
            f"/openapi.json should document the ETag header of {method.upper()} {path}'s {status}, as the starting"
            " code documents Location (see responses=)"
        )
    for method in ("put", "patch", "delete"):
        operation = paths["/books/{book_id}"][method]
        names = {p["name"].lower() for p in operation["parameters"] if p["in"] == "header"}
        assert "if-match" in names, f"/openapi.json should list the If-Match header of {method.upper()} /books/{{id}}"
        assert "412" in operation["responses"], f"/openapi.json should document {method.upper()} /books/{{id}}'s 412"


async def test_a_tag_this_api_never_sends_matches_nothing(client: AsyncClient) -> None:
    url = await new_book(client)
    for header in ['W/"1"', "1", '"one"', '"01"', '"' + "9" * 30 + '"']:
        response = await patch(client, url, header, year=2000)
        assert response.status_code == 412, f"If-Match: {header} should be a 412, not {response.status_code}"
    assert (await client.get(url)).json()["year"] == 1937, "nothing changed"


async def test_an_if_match_that_does_not_parse_as_a_whole_matches_nothing(client: AsyncClient) -> None:
    url = await new_book(client)  # version 1
    for header in [
        b'"x,"1"',  # one well-formed tag, "x," (a tag may hold a comma), then 1" which is not one
        b'\xa0"1"\xa0',  # NO-BREAK SPACE around the tag: only spaces and tabs may surround a list's members
        b"\xa0*",
        b'"1", *',  # * stands alone: in a list it is not a tag
    ]:
        response = await client.patch(url, json={"year": 2000}, headers={"If-Match": header})
        assert response.status_code == 412, (
            f"If-Match: {header.decode('latin-1')!r} answered {response.status_code}: a header that does not follow"
            " RFC 9110's grammar as a whole (tags in double quotes, which may hold commas, separated by commas with"
            " only spaces or tabs around them) matches nothing, so it is a 412"
        )
    assert (await client.get(url)).json()["year"] == 1937, "after a 412 the book is as it was"


async def test_an_empty_patch_keeps_the_version_but_checks_if_match(client: AsyncClient) -> None:
    url = await new_book(client)
    assert (await patch(client, url, '"1"')).status_code == 200, "PATCH {} with the current ETag is fine"
    assert (await patch(client, url, '"7"')).status_code == 412, "PATCH {} with another version is a 412"
    assert etag_of(await client.get(url), "GET") == '"1"', "PATCH {} changes nothing, not even the version"


# --- The migrations: a database that already has books ------------------------------------------------------------

DO_EXERCISE_3 = "do exercise 3 (migrations) first: this exercise adds a third migration to its two"


def first_revision() -> str:
    """The first migration's revision id, as `alembic history` lists it last."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        pytest.fail(f"Alembic is not installed: {DO_EXERCISE_3}")
    config = Config(toml_file=ROOT / "pyproject.toml")
    if not config.get_alembic_option("script_location"):
        pytest.fail(f"no [tool.alembic] in pyproject.toml: {DO_EXERCISE_3}")
    return ScriptDirectory.from_config(config).get_bases()[0]


async def alembic(*arguments: str) -> None:
    """Run `python -m alembic ...` in the top folder, on the database main.py uses, as a learner would."""
    first_revision()  # fails, saying what to do, if Alembic is not set up
    result = await asyncio.to_thread(run_alembic, *arguments)
    if result.returncode != 0:
        said = (result.stdout + result.stderr)[-1500:]
        pytest.fail(
            f"`alembic {' '.join(arguments)}` failed: is it your third migration? A column that may not be empty"
            f" needs a value for the books already there (see the goal), and a downgrade must undo it.\n{said}"
        )


async def test_alembic_upgrade_head_gives_the_books_already_there_version_1() -> None:
    await empty_database()
    engine = create_async_engine(main.DATABASE_URL)
    async with engine.begin() as connection:  # a database the starting code made, with one book
        await connection.run_sync(STARTING.create_all)
        folded = {"title_folded": "the hobbit", "author_folded": "j. r. r. tolkien"}
        await connection.execute(insert(STARTING_BOOKS).values(**HOBBIT, **folded))
    await engine.dispose()
    await alembic("upgrade", "head")
    try:
        async with the_api(raise_app_exceptions=False) as client:
            listed = await client.get("/books")
            read = await client.get("/books/1")
            written = await patch(client, "/books/1", '"1"', year=1938)
    finally:
        await empty_database()
    assert listed.status_code == 200 and read.status_code == 200, (
        f"after alembic upgrade head, GET /books/1 answered {read.status_code} ({read.text}): do BookModel and the"
        " migrations agree? A third migration must add the version column that BookModel has"
    )
    assert [book["title"] for book in listed.json()] == [HOBBIT["title"]], "alembic upgrade head must keep every book"
    assert read.headers.get("etag") == '"1"', (
        f'after alembic upgrade head, the book already there should have ETag: "1", not {read.headers.get("etag")}:'
        " give BookModel a version (see the goal), and a third migration that adds it, 1 for the books there"
    )
    assert written.status_code == 200 and written.headers.get("etag") == '"2"', (
        f'after alembic upgrade head, PATCH with If-Match: "1" should write version 2: {written.text}'
    )


async def test_a_deleted_books_id_is_never_given_again_after_a_round_trip_of_the_migrations() -> None:
    await empty_database()
    try:
        async with the_api(raise_app_exceptions=False) as client:
            ids = [int((await new_book(client)).rsplit("/", 1)[1]) for _ in range(3)]
            assert (await client.delete(f"/books/{ids[-1]}")).status_code == 204, "DELETE the third book"
        first = first_revision()
        await alembic("downgrade", first)
        await alembic("upgrade", "head")
        async with the_api(raise_app_exceptions=False) as client:
            created = await client.post("/books", json=HOBBIT)
            kept = [book["id"] for book in (await client.get("/books")).json()]
    finally:
        await empty_database()
    assert created.status_code == 201, f"POST /books after the migrations answered {created.status_code}"
    assert kept[:2] == ids[:2], f"the books must survive alembic downgrade {first} and upgrade head: {kept}"
    new_id = created.json()["id"]
    assert new_id not in ids, (
        f"books {ids}, book {ids[-1]} deleted, alembic downgrade {first}, alembic upgrade head: then POST /books gave"
        f" id {new_id}, the deleted book's id, again. On SQLite, a batch migration copies the table into a new one,"
        " whose AUTOINCREMENT counter (in the table sqlite_sequence) restarts at the largest id left: migrations/env.py"
        " must put back any counter that the migrations lowered (see the goal)"
    )
