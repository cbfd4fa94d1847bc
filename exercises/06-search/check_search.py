"""Checker for exercise 6, search at scale: python -m pytest exercises/06-search/check_search.py

Each test checks one line of the goal in exercises/06-search/README.md, and says what to do when it fails.
"""

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import func, insert, select, text

import main

ROOT = Path(__file__).resolve().parent.parent.parent
WORDS = ["hobbit", "Straße", "Éclair", "naïve", "100%", "snake_case", 'say "hi"', "ring", "dune", "emma", "ß"]
QUERIES = ["hob", "ho", "b", "STRASSE", "straße", "éclair", "100%", "e_c", '"hi"', "ring", "xyzzy", "%", "_", "ook 0"]
RARE = "004321"  # in one title only, and each of its runs of three in at most 1,299 of 100,000 books
PAIRS = 100  # requests timed at each size: GET /books/1, then the q page, this many times
EXERCISE_3 = "do exercise 3, migrations, first; then add the index as a migration"


def alembic(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `alembic ...` in the top folder, on the database main.py uses, as a learner would."""
    environment = {**os.environ, "DATABASE_URL": main.DATABASE_URL}
    command = [sys.executable, "-m", "alembic", *arguments]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


async def alembic_ok(*arguments: str) -> None:
    """`alembic ...`, with the app's pool closed first (a migration may change the tables under it); fails if it did."""
    await main.engine.dispose()
    result = await asyncio.to_thread(alembic, *arguments)
    said = (result.stdout + result.stderr)[-1500:]
    assert result.returncode == 0, (
        f"`alembic {' '.join(arguments)}` failed. Is exercise 3 (migrations) done, and does your migration run?\n{said}"
    )


def first_revision() -> str:
    """The id of the first migration, the one that makes the books table."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        base = ScriptDirectory.from_config(Config(toml_file=ROOT / "pyproject.toml")).get_base()
    except Exception as error:  # Alembic missing, or not set up
        pytest.fail(f"no migrations found ({type(error).__name__}: {error}): {EXERCISE_3}")
    return base or "base"


async def fill(first: int, last: int) -> None:
    """Books first..last, straight into the table (as a data import would), in batches."""
    rng = random.Random(first)
    for start in range(first, last + 1, 5000):
        rows = []
        for n in range(start, min(start + 5000, last + 1)):
            title, author = f"Book {n:06d} {rng.choice(WORDS)}", f"Author {n % 500} {rng.choice(WORDS)}"
            folded = {"title_folded": title.casefold(), "author_folded": author.casefold()}
            rows.append({"title": title, "author": author, "year": 2000, **folded})
        async with main.engine.begin() as connection:
            await connection.execute(insert(main.BookModel), rows)
    if main.engine.dialect.name == "postgresql":
        # As after any large import: statistics for the planner, and new entries of a GIN index moved from its pending
        # list (read in full by every search) into the index. VACUUM does both; ANALYZE alone leaves the pending list.
        async with main.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE books"))


async def reference(q: str) -> tuple[list[int], int]:
    """What `q` found before the exercise: LIKE '%q%' on the folded columns, read past the API."""
    folded = q.strip().casefold()
    where = main.BookModel.title_folded.contains(folded, autoescape=True) | main.BookModel.author_folded.contains(
        folded, autoescape=True
    )
    async with main.SessionLocal() as session:
        ids = list(await session.scalars(select(main.BookModel.id).where(where).order_by(main.BookModel.id).limit(100)))
        total = await session.scalar(select(func.count()).select_from(main.BookModel).where(where))
    return ids, int(total or 0)


async def searched(client: AsyncClient, q: str) -> tuple[list[int], int]:
    response = await client.get("/books", params={"q": q, "limit": 100})
    assert response.status_code == 200, f"GET /books?q={q} answered {response.status_code}: {response.text}"
    return [book["id"] for book in response.json()], int(response.headers["x-total-count"])


async def test_the_trigram_index_is_there(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            sql = await connection.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'books_search'")) or ""
            assert "fts5" in sql.lower() and "trigram" in sql.lower(), (
                "no FTS5 table books_search with the trigram tokenizer: add it by a migration (see the goal)"
            )
        else:
            rows = await connection.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'books'"))
            trigram = [row[0] for row in rows if "gin_trgm_ops" in row[0]]
            for column in ("title_folded", "author_folded"):
                assert any(column in index for index in trigram), f"no GIN index with gin_trgm_ops on {column}"


async def test_q_answers_exactly_as_before(client: AsyncClient) -> None:
    await fill(1, 2000)
    for q in QUERIES:
        assert await searched(client, q) == await reference(q), f"q={q!r} should find what LIKE '%...%' found"


async def test_the_index_stays_in_step_with_every_write(client: AsyncClient) -> None:
    created = await client.post("/books", json={"title": "Quixotic", "author": "Cervantes", "year": 1605})
    assert created.status_code == 201, created.text
    url = f"/books/{created.json()['id']}"
    assert (await searched(client, "quixot"))[1] == 1, "a book just created should be found"
    await client.patch(url, json={"title": "Rocinante"})
    assert (await searched(client, "quixot"))[1] == 0, "after a PATCH, the old title should not be found"
    assert (await searched(client, "rocinan"))[1] == 1, "after a PATCH, the new title should be found"
    await client.put(url, json={"title": "Dulcinea", "author": "Cervantes", "year": 1605})
    assert (await searched(client, "rocinan")) == ([], 0), "after a PUT, the old title should not be found"
    await client.delete(url)
    assert (await searched(client, "dulcin")) == ([], 0), "after a DELETE, the book should not be found"
    assert (await searched(client, "cervantes")) == ([], 0), "after a DELETE, nothing of it should be found"


async def cost_of_a_page(client: AsyncClient, q: str) -> float:
    """How long a page of q takes, as a multiple of GET /books/1 (one book, by its primary key, at any size): the
    median time of PAIRS pages over the median time of PAIRS of those, sent in turn with them, so that a busy
    machine, which slows both alike, changes the multiple little."""
    pages, lookups = [], []
    for _ in range(PAIRS):
        for path, params, times in (("/books/1", {}, lookups), ("/books", {"q": q, "limit": 20}, pages)):
            started = time.perf_counter()
            response = await client.get(path, params=params)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, f"GET {path} answered {response.status_code}: {response.text}"
    return statistics.median(pages) / statistics.median(lookups)


async def test_a_search_page_at_100000_books_costs_at_most_twice_one_at_10000(client: AsyncClient) -> None:
    await fill(1, 10_000)
    small = await cost_of_a_page(client, RARE)
    await fill(10_001, 100_000)
    large = await cost_of_a_page(client, RARE)
    assert large <= 2 * small, (
        f"a page of q={RARE} took {large:.1f} times as long as GET /books/1 at 100,000 books, and {small:.1f} times"
        f" at 10,000: {large / small:.1f} times as much, not at most 2. Without an index, the database reads every"
        " row (see the hints: EXPLAIN QUERY PLAN)"
    )


async def test_alembic_upgrade_head_indexes_the_books_already_there(client: AsyncClient) -> None:
    await alembic_ok("downgrade", "-1")
    await fill(1, 300)  # books stored before the index existed
    await alembic_ok("upgrade", "head")
    for q in ("hob", "author 7", "straße"):
        assert await searched(client, q) == await reference(q), f"q={q!r}: index the books already there"


async def test_alembic_check_finds_nothing_to_do(client: AsyncClient) -> None:
    checked = await asyncio.to_thread(alembic, "check")
    if checked.returncode != 0 and "New upgrade operations detected" not in checked.stdout + checked.stderr:
        pytest.fail(f"`alembic check` failed: {EXERCISE_3}\n{(checked.stdout + checked.stderr)[-1500:]}")
    assert checked.returncode == 0, (
        "after alembic upgrade head, `alembic check` should find nothing to do, but it found differences between the"
        " database and the models: tell autogenerate to leave the index out (see the goal)\n"
        f"{(checked.stdout + checked.stderr)[-1500:]}"
    )


async def test_a_deleted_books_id_is_never_given_again_after_migrating_down_and_up(client: AsyncClient) -> None:
    book = {"title": "Quixotic", "author": "Cervantes", "year": 1605}
    ids = [(await client.post("/books", json=book)).json().get("id") for _ in range(3)]
    assert (await client.delete(f"/books/{ids[-1]}")).status_code == 204
    first = first_revision()
    await alembic_ok("downgrade", first)
    await alembic_ok("upgrade", "head")
    await main.engine.dispose()
    created = await client.post("/books", json=book)
    assert created.status_code == 201, f"after the migrations, POST /books answered {created.text}"
    assert created.json()["id"] not in ids, (
        f"books {ids} were added and the last deleted, then `alembic downgrade {first}` and `alembic upgrade head`"
        f" ran, and a new book got id {created.json()['id']}: a deleted book's id must never be given again (as"
        " exercise 3's goal says; its env.py keeps SQLite's sqlite_sequence through every migration)"
    )
    found = (await searched(client, "quixot"))[0]
    assert found == [*ids[:-1], created.json()["id"]], (
        f"after the migrations, q=quixot should find those books: {found}"
    )
