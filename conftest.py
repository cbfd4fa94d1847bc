"""Fixtures for test_main.py (pytest finds them here by name): the app on an empty database, for every test."""

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import make_url

# main.py reads its settings when it is imported, so point it at a throwaway database first: a SQLite file in a
# temporary folder, or the PostgreSQL server that TEST_DATABASE_URL names. Settings of your shell do not leak in.
TEST_FOLDER = tempfile.mkdtemp(prefix="bookapi-tests-")
os.environ["DATABASE_URL"] = os.getenv("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{TEST_FOLDER}/books.db"
for name in ("API_KEY", "DEMO_BOOKS", "SQL_ECHO"):
    os.environ.pop(name, None)

import main  # noqa: E402


def pytest_unconfigure() -> None:
    shutil.rmtree(TEST_FOLDER, ignore_errors=True)


@pytest.fixture
def db_url() -> str:
    """The URL of the database the tests use."""
    return main.DATABASE_URL


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    """An HTTP client for the app on an empty database. The app runs its own start-up (creating the tables) and
    shutdown around the test; httpx's ASGITransport hands each request straight to it, with no server or network."""
    await main.engine.dispose()  # close the pool's connections, so that none holds on to the old database
    if main.engine.dialect.name == "sqlite":
        delete_sqlite_files()
    else:
        async with main.engine.begin() as connection:  # drops the tables of other versions of main.py too
            await connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            await connection.exec_driver_sql("CREATE SCHEMA public")
    transport = ASGITransport(main.app)
    async with (
        main.app.router.lifespan_context(main.app),  # main.lifespan, with what main.py's last section adds to it
        AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client
    main.app.dependency_overrides.clear()  # undo what a test replaced
    # After a failed connect, aiosqlite stops its thread without waiting for it (omnilib/aiosqlite#389). Wait for it
    # here, or it may report to this test's event loop after the loop closed, and pytest warns.
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


def delete_sqlite_files() -> None:
    path = make_url(main.DATABASE_URL).database or ""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
