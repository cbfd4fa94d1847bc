"""What the checkers of exercises 3, 4 and 7 share; not a test. The books table as the starting main.py made it, and
the database main.py uses: emptied, migrated with Alembic as a learner would, and served.

Exercises 4 and 7 build on exercise 3's migrations, and their checkers load this file from here.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from httpx import ASGITransport, AsyncClient
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, make_url
from sqlalchemy.ext.asyncio import create_async_engine

import main

ROOT = Path(__file__).resolve().parent.parent.parent

# The books table as the starting main.py makes it (with create_all), before migrations: what a learner's books.db
# already holds. It stays as it is when BookModel changes; checks/test_exercise_texts.py says when they differ.
STARTING = MetaData()
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
    """Drop everything in the database main.py uses: a new, empty database."""
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


def run_alembic(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m alembic ...` in the top folder, on the database main.py uses, as a learner would run it."""
    environment = {**os.environ, "DATABASE_URL": main.DATABASE_URL}
    command = [sys.executable, "-m", "alembic", *arguments]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


@asynccontextmanager
async def the_api(raise_app_exceptions: bool = True) -> AsyncIterator[AsyncClient]:
    """The app on the database as it is now, with its start-up and shutdown (main.py's own lifespan, which runs the
    migrations), and a client that sends it requests; with raise_app_exceptions=False, a bug is a 500, not a raise."""
    await main.engine.dispose()  # no connection left from before the database changed under it
    transport = ASGITransport(main.app, raise_app_exceptions=raise_app_exceptions)
    async with main.app.router.lifespan_context(main.app), AsyncClient(transport=transport, base_url="http://x") as c:
        yield c
