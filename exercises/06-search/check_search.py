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
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, insert, select, text

import main

ROOT = Path(__file__).resolve().parent.parent.parent
WORDS = ["hobbit", "Straße", "Éclair", "naïve", "100%", "snake_case", 'say "hi"', "ring", "dune", "emma", "ß"]
QUERIES = ["hob", "ho", "b", "STRASSE", "straße", "éclair", "100%", "e_c", '"hi"', "ring", "xyzzy", "%", "_", "ook 0"]


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


async def timed_page(client: AsyncClient, q: str) -> float:
    times = []
    for _ in range(20):
        started = time.perf_counter()
        response = await client.get("/books", params={"q": q, "limit": 20})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(times)


async def test_a_search_page_at_100000_books_costs_at_most_twice_one_at_10000(client: AsyncClient) -> None:
    await fill(1, 10_000)
    small = await timed_page(client, "004321")
    await fill(10_001, 100_000)
    large = await timed_page(client, "004321")
    assert large <= 2 * small, (
        f"a q page took {large * 1000:.1f} ms at 100,000 books and {small * 1000:.1f} ms at 10,000: without an index,"
        " the database reads every row (see the hints: EXPLAIN QUERY PLAN)"
    )


async def test_alembic_upgrade_head_indexes_the_books_already_there(client: AsyncClient) -> None:
    def alembic(*arguments: str) -> Any:
        environment = {**os.environ, "DATABASE_URL": main.DATABASE_URL}
        command = [sys.executable, "-m", "alembic", *arguments]
        return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)

    await main.engine.dispose()
    undone = await asyncio.to_thread(alembic, "downgrade", "-1")
    advice = "do exercise 3 (migrations) first, then add the index as a migration"
    assert undone.returncode == 0, f"alembic downgrade -1 failed: {advice}.\n{undone.stdout + undone.stderr}"
    await fill(1, 300)  # books stored before the index existed
    done = await asyncio.to_thread(alembic, "upgrade", "head")
    assert done.returncode == 0, f"alembic upgrade head failed:\n{done.stdout + done.stderr}"
    await main.engine.dispose()
    for q in ("hob", "author 7", "straße"):
        assert await searched(client, q) == await reference(q), f"q={q!r}: index the books already there"
