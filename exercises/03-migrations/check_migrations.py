"""Checker for exercise 3, migrations: python -m pytest exercises/03-migrations/check_migrations.py

Each test checks one line of the goal in exercises/03-migrations/README.md, and says what to do when it fails. It runs
`alembic` itself, on a database of its own (a new SQLite file, or the PostgreSQL server that TEST_DATABASE_URL names).
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from migration_tools import ROOT, STARTING, STARTING_BOOKS, empty_database, run_alembic, the_api
from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

import main

OLD_BOOKS = [
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": None},
    {"title": "Dune", "author": "Frank Herbert", "year": 1965, "isbn": "9780441172719"},
    {"title": "Jane Eyre", "author": "Charlotte Brontë", "year": 1847, "isbn": None},
]


def alembic(*arguments: str) -> None:
    """Run `alembic ...` in the top folder, on the database main.py uses, as a learner would."""
    result = run_alembic(*arguments)
    said = (result.stdout + result.stderr)[-1500:]
    if "No module named alembic" in result.stderr:
        pytest.fail("Alembic is not installed: add it to requirements.txt, then pip install -r requirements.txt")
    assert result.returncode == 0, (
        f"`alembic {' '.join(arguments)}` failed. Is Alembic set up as the goal says (its settings in pyproject.toml,"
        f" migrations/env.py using main.DATABASE_URL and main.Base.metadata)?\n{said}"
    )


async def database_as_the_starting_code_left_it() -> None:
    """An empty database, then the books table and three books, as the starting main.py would have stored them."""
    await empty_database()
    engine = create_async_engine(main.DATABASE_URL)
    async with engine.begin() as connection:
        await connection.run_sync(STARTING.create_all)
        for book in OLD_BOOKS:
            folded = {"title_folded": book["title"].casefold(), "author_folded": book["author"].casefold()}
            await connection.execute(insert(STARTING_BOOKS).values(**book, **folded))
    await engine.dispose()


async def inspect_database() -> dict[str, Any]:
    """What the database holds: tables, the columns of books, the books, and how it differs from main.py's models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_async_engine(main.DATABASE_URL)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        columns = await connection.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("books")])
        books = [dict(row._mapping) for row in await connection.execute(select(STARTING_BOOKS.c.title))]
        differences = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), main.Base.metadata)
        )
    await engine.dispose()
    titles = [b["title"] for b in books]
    return {"tables": tables, "columns": columns, "titles": titles, "differences": differences}


def first_revision() -> str:
    """The id of the first migration, the one that makes the books table."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    base = ScriptDirectory.from_config(Config(toml_file=ROOT / "pyproject.toml")).get_base()
    assert base, "no first migration (one with down_revision None): see the goal"
    return base


@pytest.fixture
async def own_database() -> AsyncIterator[None]:
    yield
    await empty_database()  # leave nothing behind for the next test


def test_alembic_is_set_up_with_at_least_two_migrations() -> None:
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        pytest.fail("Alembic is not installed: add it to requirements.txt, then pip install -r requirements.txt")
    config = Config(toml_file=ROOT / "pyproject.toml")
    assert config.get_alembic_option("script_location"), (
        "no [tool.alembic] in pyproject.toml: run `alembic init -t pyproject_async migrations` (see the hints)"
    )
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())
    assert len(revisions) >= 2, f"{len(revisions)} migration(s): the goal asks for two, the table and then pages"


async def test_alembic_upgrade_head_makes_a_new_database_match_the_models(own_database: None) -> None:
    await empty_database()
    alembic("upgrade", "head")
    found = await inspect_database()
    assert "books" in found["tables"], "after alembic upgrade head, a new database should have the table books"
    assert "pages" in found["columns"], "after alembic upgrade head, books should have the column pages"
    assert found["differences"] == [], f"the migrations and the models in main.py differ: {found['differences']}"


async def test_an_old_database_keeps_every_book_through_alembic_upgrade_head(own_database: None) -> None:
    await database_as_the_starting_code_left_it()
    alembic("upgrade", "head")
    found = await inspect_database()
    assert found["titles"] == [b["title"] for b in OLD_BOOKS], (
        f"the books of a database made before migrations should all be there, not {found['titles']}: the first"
        " migration must leave an existing books table alone"
    )
    assert "pages" in found["columns"], "alembic upgrade head should add the column pages to an existing table"
    assert found["differences"] == [], f"the migrated database and the models differ: {found['differences']}"


async def test_alembic_downgrade_undoes_the_newest_migration_and_keeps_the_books(own_database: None) -> None:
    await database_as_the_starting_code_left_it()
    alembic("upgrade", "head")
    newest = await inspect_database()
    alembic("downgrade", "-1")
    undone = await inspect_database()
    assert undone["columns"] != newest["columns"], "alembic downgrade -1 should undo the newest migration (pages)"
    assert undone["titles"] == [b["title"] for b in OLD_BOOKS], "alembic downgrade -1 must keep every book"
    alembic("upgrade", "head")
    redone = await inspect_database()
    assert redone["columns"] == newest["columns"], "alembic upgrade head should redo it"
    assert redone["titles"] == [b["title"] for b in OLD_BOOKS], "alembic upgrade head must keep every book"


async def test_a_deleted_books_id_is_never_given_again_after_migrating_down_and_up(own_database: None) -> None:
    await empty_database()
    alembic("upgrade", "head")
    async with the_api() as client:
        ids = [(await client.post("/books", json=book)).json().get("id") for book in OLD_BOOKS]
        assert (await client.delete(f"/books/{ids[-1]}")).status_code == 204
    first = first_revision()
    alembic("downgrade", first)
    alembic("upgrade", "head")
    async with the_api() as client:
        created = await client.post("/books", json=OLD_BOOKS[0])
    assert created.status_code == 201, f"after the migrations, POST /books answered {created.text}"
    assert created.json()["id"] not in ids, (
        f"books {ids} were added and the last deleted, then `alembic downgrade {first}` and `alembic upgrade head`"
        f" ran, and a new book got id {created.json()['id']}: a deleted book's id must never be given again. On"
        " SQLite, a migration that copies the table must keep AUTOINCREMENT and the table's largest id so far,"
        " which SQLite keeps in sqlite_sequence: see hints 4 and 6"
    )


async def test_starting_the_api_upgrades_an_old_database(own_database: None) -> None:
    await database_as_the_starting_code_left_it()
    async with main.lifespan(main.app):
        pass
    found = await inspect_database()
    assert "pages" in found["columns"], "starting the API should run the migrations (alembic upgrade head)"
    assert found["titles"] == [b["title"] for b in OLD_BOOKS], "starting the API must keep every book"


async def test_pages_are_optional_whole_numbers_from_1_to_100000(client: AsyncClient) -> None:
    book = {"title": "Dune", "author": "Frank Herbert", "year": 1965}
    without = await client.post("/books", json=book)
    assert without.status_code == 201 and without.json().get("pages", "missing") is None, (
        f'a book sent without pages is stored with "pages": null, not {without.text}'
    )
    created = await client.post("/books", json=book | {"pages": 1200})
    assert created.status_code == 201 and created.json().get("pages") == 1200, f"pages 1200 is stored: {created.text}"
    url = f"/books/{created.json()['id']}"
    assert (await client.get(url)).json().get("pages") == 1200, "GET /books/{id} shows pages"
    assert (await client.patch(url, json={"pages": 100000})).json().get("pages") == 100000, "PATCH sets pages"
    assert (await client.patch(url, json={"pages": None})).json().get("pages", 0) is None, "PATCH null clears it"
    assert (await client.put(url, json=book | {"pages": 2500})).json().get("pages") == 2500, "PUT takes pages"
    assert (await client.put(url, json=book)).json().get("pages", 0) is None, "a PUT without pages clears it"
    for bad in (0, 100001, "1200", 41.5):
        response = await client.post("/books", json=book | {"pages": bad})
        assert response.status_code == 422, f"pages {bad!r} should be a 422, not {response.status_code}"
