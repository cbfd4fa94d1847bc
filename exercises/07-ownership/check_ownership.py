"""Checker for exercise 7, owners: python -m pytest exercises/07-ownership/check_ownership.py

Each test checks one line of the goal in exercises/07-ownership/README.md, and says what to do when it fails. Users
log in as the goal of exercise 2 says (POST /users, then POST /token); the migrations are run with `alembic`, as
exercise 3 set it up, on a database of the checker's own (a new SQLite file, or the server TEST_DATABASE_URL names).
"""

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

import main

# This exercise builds on exercises 2 and 3, and its checker on theirs: it loads a helper of each
sys.path.extend(str(Path(__file__).resolve().parent.parent / name) for name in ("02-jwt", "03-migrations"))
from fake_user_probe import run_with_probe  # watches a test's dependency_overrides
from migration_tools import ROOT, STARTING, STARTING_BOOKS, empty_database, run_alembic, the_api

HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}
NO_TOKEN = {"Authorization": ""}  # replaces whatever token the client fixture sends
PASSWORD = "correct horse battery"
DO_EXERCISE_2 = (
    "no logins yet: POST /users is not a route. Do exercise 2 (logins with JWT) first: this exercise gives each book"
    " the user who logged in to add it"
)
DO_EXERCISE_3 = "no migrations yet: do exercise 3 (migrations with Alembic) first, then add the migrations of the goal"


class User:
    """A user who logged in: their id (as POST /users answered it) and the header that carries their token."""

    def __init__(self, user_id: int, token: str) -> None:
        self.id, self.headers = user_id, {"Authorization": f"Bearer {token}"}


async def log_in_as(client: AsyncClient, username: str) -> User:
    created = await client.post("/users", json={"username": username, "password": PASSWORD}, headers=NO_TOKEN)
    if created.status_code in (404, 405):
        pytest.fail(DO_EXERCISE_2)
    assert created.status_code == 201, f"POST /users answered {created.status_code}: {created.text} (see exercise 2)"
    form = {"username": username, "password": PASSWORD}
    token = await client.post("/token", data=form, headers=NO_TOKEN)
    assert token.status_code == 200, f"POST /token answered {token.status_code}: {token.text} (see exercise 2)"
    return User(created.json()["id"], token.json()["access_token"])


async def new_book(client: AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    response = await client.post("/books", json=HOBBIT | fields, headers=user.headers)
    assert response.status_code == 201, (
        f"POST /books by a logged-in user answered {response.status_code}: {response.text}"
    )
    book: dict[str, Any] = response.json()
    assert "owner_id" in book, f"every book in an answer shows owner_id (add it to BookOut), not only {sorted(book)}"
    return book


async def read(client: AsyncClient, book: dict[str, Any]) -> Any:
    return (await client.get(f"/books/{book['id']}", headers=NO_TOKEN)).json()


async def writes(client: AsyncClient, url: str, headers: dict[str, str]) -> AsyncIterator[tuple[str, Response]]:
    """PUT, PATCH (with a field, and empty) and DELETE of one book, in turn: each request's name and response."""
    yield "PUT", await client.put(url, json=HOBBIT | {"title": "Not yours"}, headers=headers)
    yield "PATCH", await client.patch(url, json={"year": 2000}, headers=headers)
    yield "PATCH {}", await client.patch(url, json={}, headers=headers)
    yield "DELETE", await client.delete(url, headers=headers)


# --- Owners -----------------------------------------------------------------------------------------------------------


async def test_a_new_book_belongs_to_the_user_who_added_it(client: AsyncClient) -> None:
    ada = await log_in_as(client, "ada")
    book = await new_book(client, ada)
    assert book["owner_id"] == ada.id, (
        f"owner_id is the id POST /users gave its owner ({ada.id}), not {book['owner_id']}"
    )
    assert (await read(client, book)).get("owner_id") == ada.id, "GET /books/{id} shows owner_id too"
    listed = (await client.get("/books", headers=NO_TOKEN)).json()
    assert [b.get("owner_id") for b in listed] == [ada.id], "GET /books shows each book's owner_id (and needs no token)"


async def test_another_user_gets_403_and_changes_nothing(client: AsyncClient) -> None:
    ada, bob = await log_in_as(client, "ada"), await log_in_as(client, "bob")
    book = await new_book(client, ada)
    detail = f"Book {book['id']} belongs to another user: only its owner may change or delete it"
    async for request, response in writes(client, f"/books/{book['id']}", bob.headers):
        assert response.status_code == 403, (
            f"{request} of another user's book should be a 403, not {response.status_code}"
        )
        assert response.json() == {"detail": detail}, f"{request}: the goal gives the 403's detail, {detail!r}"
    assert await read(client, book) == book, "after the 403s, the book must be as its owner left it"


async def test_the_owner_changes_and_deletes_their_book(client: AsyncClient) -> None:
    ada = await log_in_as(client, "ada")
    book = await new_book(client, ada)
    url = f"/books/{book['id']}"
    replaced = await client.put(url, json=HOBBIT | {"year": 1951}, headers=ada.headers)
    assert replaced.status_code == 200, f"PUT by the owner answered {replaced.status_code}: {replaced.text}"
    assert replaced.json().get("owner_id") == ada.id, "a PUT replaces the fields a client sends; the owner stays"
    patched = await client.patch(url, json={"year": 1966}, headers=ada.headers)
    assert patched.status_code == 200, f"PATCH by the owner answered {patched.status_code}: {patched.text}"
    assert patched.json().get("owner_id") == ada.id, "a PATCH keeps the owner"
    deleted = await client.delete(url, headers=ada.headers)
    assert deleted.status_code == 204, f"DELETE by the owner answered {deleted.status_code}: {deleted.text}"


async def test_a_missing_book_is_404_before_any_403(client: AsyncClient) -> None:
    ada, bob = await log_in_as(client, "ada"), await log_in_as(client, "bob")
    gone = await new_book(client, ada)
    assert (await client.delete(f"/books/{gone['id']}", headers=ada.headers)).status_code == 204
    for book_id in (gone["id"], 42):
        async for request, response in writes(client, f"/books/{book_id}", bob.headers):
            assert response.status_code == 404, (
                f"{request} of book {book_id}, which does not exist, should be a 404 (it has no owner to refuse"
                f" you), not {response.status_code}: the goal says why 404 comes before 403"
            )
            assert response.json() == {"detail": f"Book {book_id} not found"}


async def test_without_a_token_it_is_401_before_404_or_403(client: AsyncClient) -> None:
    ada = await log_in_as(client, "ada")
    book = await new_book(client, ada)
    for url in (f"/books/{book['id']}", "/books/42"):
        async for request, response in writes(client, url, NO_TOKEN):
            assert response.status_code == 401, f"{request} {url} without a token is a 401, not {response.status_code}"
    assert await read(client, book) == book, "after the 401s, the book is unchanged"


async def test_a_client_cannot_choose_or_change_the_owner(client: AsyncClient) -> None:
    ada, bob = await log_in_as(client, "ada"), await log_in_as(client, "bob")
    book = await new_book(client, ada)
    url = f"/books/{book['id']}"
    for request, response in {
        "POST /books": await client.post("/books", json=HOBBIT | {"owner_id": bob.id}, headers=bob.headers),
        "PUT": await client.put(url, json=HOBBIT | {"owner_id": bob.id}, headers=ada.headers),
        "PATCH": await client.patch(url, json={"owner_id": bob.id}, headers=ada.headers),
        "PATCH (null)": await client.patch(url, json={"owner_id": None}, headers=ada.headers),
    }.items():
        assert response.status_code == 422, (
            f"{request} with owner_id in the body is a 422 (the server sets the owner), not {response.status_code}"
        )
    assert await read(client, book) == book, "owner_id in a body must change nothing"
    listed = (await client.get("/books", headers=NO_TOKEN)).json()
    assert len(listed) == 1, f"a POST that names an owner must add no book, but there are {len(listed)}"


async def test_a_book_without_an_owner_is_changed_by_no_user(client: AsyncClient) -> None:
    ada = await log_in_as(client, "ada")
    async with main.engine.begin() as connection:  # as the starting code stored its books, before owners
        book_id = await connection.scalar(
            text(
                "INSERT INTO books (title, author, year, title_folded, author_folded)"
                " VALUES ('Emma', 'Jane Austen', 1815, 'emma', 'jane austen') RETURNING id"
            )
        )
    book = (await client.get(f"/books/{book_id}", headers=NO_TOKEN)).json()
    assert book.get("owner_id", "missing") is None, f'a book without an owner shows "owner_id": null, not {book}'
    async for request, response in writes(client, f"/books/{book_id}", ada.headers):
        assert response.status_code == 403, (
            f"{request} of a book with no owner should be a 403 (no user may change it), not {response.status_code}"
        )
    assert (await client.get(f"/books/{book_id}", headers=NO_TOKEN)).json() == book, "the book must be unchanged"


async def test_deleting_a_user_keeps_their_books_with_no_owner(client: AsyncClient) -> None:
    ada = await log_in_as(client, "ada")
    book = await new_book(client, ada)
    try:
        async with main.engine.begin() as connection:  # there is no route for it: an administrator does it in SQL
            await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": ada.id})
    except Exception as error:  # the database refused: the foreign key does not say what happens to the books
        pytest.fail(
            f"deleting a user who has books failed ({type(error).__name__}): give owner_id's foreign key"
            ' ondelete="SET NULL", so their books stay, with no owner'
        )
    after = (await client.get(f"/books/{book['id']}", headers=NO_TOKEN)).json()
    assert after == {**book, "owner_id": None}, (
        f'after its owner was deleted, the book should stay with "owner_id": null, not {after}: make owner_id a foreign'
        ' key to users.id with ondelete="SET NULL"'
    )
    response = await client.patch(f"/books/{book['id']}", json={"year": 2000}, headers=ada.headers)
    assert response.status_code == 401, f"a token of the deleted user is a 401 (exercise 2), not {response.status_code}"


async def test_a_user_deleted_while_adding_a_book_gets_401(client: AsyncClient) -> None:
    users = next((m.class_ for m in main.Base.registry.mappers if m.local_table.name == "users"), None)
    if users is None or not hasattr(main, "require_user"):  # the model of users, and the dependency exercise 2 names
        pytest.fail(DO_EXERCISE_2)
    main.app.dependency_overrides[main.require_user] = lambda: users(id=10**9)  # found by require_user, gone since
    response = await client.post("/books", json=HOBBIT, headers=NO_TOKEN)
    assert response.status_code == 401, (
        f"POST /books by a user who is in no row of users (one deleted while the request ran) answered"
        f" {response.status_code}, not 401 as for a token of a user who does not exist. owner_id is a foreign key to"
        " users.id, so the database refuses the book: that IntegrityError is not the isbn's 409"
    )
    assert response.headers.get("www-authenticate") == "Bearer", "a 401 says how to log in: WWW-Authenticate: Bearer"
    assert (await client.get("/books", headers=NO_TOKEN)).json() == [], "no book may have been stored"


async def test_writes_racing_the_owners_delete_get_404_never_500(client: AsyncClient) -> None:
    # On PostgreSQL the three run at once; on SQLite, whose one connection makes requests take turns, in some order.
    ada = await log_in_as(client, "ada")
    for _ in range(5):
        url = f"/books/{(await new_book(client, ada))['id']}"
        answers = await asyncio.gather(
            client.patch(url, json={"year": 2000}, headers=ada.headers),
            client.delete(url, headers=ada.headers),
            client.put(url, json=HOBBIT, headers=ada.headers),
            return_exceptions=True,  # an error the app did not handle (a 500) comes back here, not as a response
        )
        for request, answer in zip(("PATCH", "DELETE", "PUT"), answers, strict=True):
            status = answer.status_code if isinstance(answer, Response) else f"a 500 ({type(answer).__name__})"
            assert status in ((204,) if request == "DELETE" else (200, 404)), (
                f"a {request} racing the owner's DELETE of the same book answered {status}: a write that comes first"
                " succeeds, one that comes after is a 404. Check the owner and write in one statement (UPDATE or"
                " DELETE ... WHERE id and owner match), then tell a 404 from a 403 if it matched no book"
            )


async def test_the_documentation_lists_the_403_of_each_write(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    if "/users" not in schema["paths"]:
        pytest.fail(DO_EXERCISE_2)
    operations = schema["paths"]["/books/{book_id}"]
    for method in ("put", "patch", "delete"):
        documented = operations[method]["responses"]
        assert "403" in documented, f"{method.upper()} /books/{{book_id}} may answer 403: add it to its responses="


# --- The migrations: databases that already have books ----------------------------------------------------------------

EXERCISE_2 = MetaData()  # and the users table, as exercise 2's main.py makes it, with create_all
EXERCISE_2_USERS = Table(
    "users",
    EXERCISE_2,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("username", String(50), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    sqlite_autoincrement=True,
)
OLD_BOOKS = [
    {"title": "Emma", "author": "Jane Austen", "year": 1815},
    {"title": "Dune", "author": "Frank Herbert", "year": 1965},
]


def alembic_config() -> Any:
    try:
        from alembic.config import Config
    except ImportError:
        pytest.fail(DO_EXERCISE_3)
    config = Config(toml_file=ROOT / "pyproject.toml")
    if not config.get_alembic_option("script_location"):
        pytest.fail(DO_EXERCISE_3)
    return config


def alembic(*arguments: str, advice: str = "") -> None:
    """Run `alembic ...` in the top folder, on the database main.py uses, as a learner would."""
    alembic_config()
    result = run_alembic(*arguments)
    said = (result.stdout + result.stderr)[-1500:]
    assert result.returncode == 0, f"`alembic {' '.join(arguments)}` failed{advice}. It said:\n{said}"


async def old_database(*tables: MetaData) -> None:
    """An empty database, then the tables as older code made them (with create_all), and two books."""
    await empty_database()
    engine = create_async_engine(main.DATABASE_URL)
    async with engine.begin() as connection:
        for metadata in tables:
            await connection.run_sync(metadata.create_all)
        for book in OLD_BOOKS:
            folded = {"title_folded": book["title"].casefold(), "author_folded": book["author"].casefold()}
            await connection.execute(insert(STARTING_BOOKS).values(**book, **folded))
        if EXERCISE_2 in tables:
            await connection.execute(insert(EXERCISE_2_USERS).values(username="grace", password_hash="$argon2id$..."))
    await engine.dispose()


async def differences_from_the_models() -> list[Any]:
    """What `alembic check` would find: how the database differs from the models in main.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_async_engine(main.DATABASE_URL)
    async with engine.connect() as connection:
        found: list[Any] = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), main.Base.metadata)
        )
    await engine.dispose()
    return found


@pytest.fixture
async def own_database() -> AsyncIterator[None]:
    yield
    await empty_database()  # leave nothing behind for the next test


async def test_a_database_the_starting_code_made_keeps_its_books_with_no_owner(own_database: None) -> None:
    await old_database(STARTING)
    alembic("upgrade", "head", advice=" on a database the starting code made (books, without users or owner_id)")
    differences = await differences_from_the_models()
    assert differences == [], f"after alembic upgrade head, the database and the models differ: {differences}"
    async with the_api() as client:
        books = (await client.get("/books", headers=NO_TOKEN)).json()
        assert [b["title"] for b in books] == [b["title"] for b in OLD_BOOKS], (
            f"alembic upgrade head must keep every book of a database the starting code made, not {books}"
        )
        assert [b.get("owner_id", "missing") for b in books] == [None, None], (
            f'the books from before logins have no owner: "owner_id": null, not {books}'
        )
        ada = await log_in_as(client, "ada")
        response = await client.patch(f"/books/{books[0]['id']}", json={"year": 1816}, headers=ada.headers)
        assert response.status_code == 403, f"a book with no owner is a 403 for every user, not {response.status_code}"
        assert (await new_book(client, ada))["owner_id"] == ada.id, "a user's new book is theirs"


async def test_a_database_exercise_2_made_keeps_its_books_and_users(own_database: None) -> None:
    await old_database(STARTING, EXERCISE_2)
    advice = (
        " on a database that exercise 2's create_all made, which has users already: the migration that makes users"
        " must then change nothing (as exercise 3's first migration leaves books alone)"
    )
    alembic("upgrade", "head", advice=advice)
    differences = await differences_from_the_models()
    assert differences == [], f"after alembic upgrade head, the database and the models differ: {differences}"
    async with main.engine.connect() as connection:
        usernames = list(await connection.scalars(text("SELECT username FROM users")))
        titles = list(await connection.scalars(text("SELECT title FROM books ORDER BY id")))
    await main.engine.dispose()
    assert usernames == ["grace"], (
        f"a database that exercise 2's create_all made already has users: the migration that makes the table must"
        f" then change nothing and keep its users, not leave {usernames}"
    )
    assert titles == [b["title"] for b in OLD_BOOKS], f"every book must be kept, not {titles}"


async def test_a_deleted_books_id_is_never_given_again_after_a_migration_round_trip(own_database: None) -> None:
    from alembic.script import ScriptDirectory

    await empty_database()
    alembic("upgrade", "head")
    async with the_api() as client:
        ada = await log_in_as(client, "ada")
        ids = [(await new_book(client, ada, title=f"Book {n}"))["id"] for n in (1, 2, 3)]
        assert (await client.delete(f"/books/{ids[-1]}", headers=ada.headers)).status_code == 204
    [first] = ScriptDirectory.from_config(alembic_config()).get_bases()
    alembic("downgrade", first)
    alembic("upgrade", "head")
    async with the_api() as client:
        mallory = await log_in_as(client, "mallory")
        again = await new_book(client, mallory)
        still_ada = await client.post("/books", json=HOBBIT | {"title": "Ada's"}, headers=ada.headers)
    assert mallory.id != ada.id, (
        f"after alembic downgrade {first} and upgrade head, a new user got id {mallory.id}, ada's: ada's token, still"
        " valid, now names that user. A migration round trip must keep the users (and so their ids): make the"
        " downgrade of the migration that makes users keep the table (see the goal)"
    )
    assert still_ada.status_code == 201 and still_ada.json().get("owner_id") == ada.id, (
        f"ada's token from before the round trip should still write as ada: {still_ada.status_code} {still_ada.text}"
    )
    assert again["id"] > ids[-1], (
        f"book {ids[-1]} was deleted, and after alembic downgrade {first} and upgrade head a new book got id"
        f" {again['id']}: on SQLite a batch migration copies the table, whose AUTOINCREMENT sequence restarts at the"
        " largest id left. Make migrations/env.py put back the sequences the migrations lowered (see the hints)"
    )


# --- The learner's own test -------------------------------------------------------------------------------------------


def test_the_learners_suite_acts_as_two_users(tmp_path: Path) -> None:
    name = "test_only_the_owner_changes_or_deletes_a_book"
    result = run_with_probe(name, tmp_path / "report.json", ignore_overrides=False)
    assert "not found" not in result.stdout + result.stderr, f"add {name} to test_main.py (see the goal)"
    assert result.returncode == 0, f"{name} fails:\n{result.stdout[-2000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["require_user_replaced"] >= 2, (
        f"{name} passes, but replaces main.require_user in main.app.dependency_overrides"
        f" {report['require_user_replaced']} time(s): set it once for each of the two users (see the goal)"
    )
    still_passes = run_with_probe(name, tmp_path / "ignored.json", ignore_overrides=True).returncode == 0
    assert not still_passes, (
        f"{name} passes even when its replacements of require_user do nothing, so it does not test who may write:"
        ' send the writes with an empty Authorization header (headers={"Authorization": ""}) and expect the 403s'
    )
