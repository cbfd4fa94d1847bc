"""Fixtures for test_main.py (pytest finds them here by name): the app on an empty database, for every test."""

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

TEST_FOLDER = tempfile.mkdtemp(prefix="bookapi-tests-")
SERVER_URL = os.getenv("TEST_DATABASE_URL")
OWN_DATABASE = f"bookapi_test_{uuid.uuid4().hex[:12]}"
MADE: list[str] = []  # the databases the tests made, to drop at the end


def pytest_configure() -> None:
    """Before any test file imports main.py (it reads its settings when it is imported), point it at a throwaway
    database: a SQLite file in a temporary folder, or, when TEST_DATABASE_URL names a PostgreSQL server, a database
    that the tests create on that server (its user needs the right to create databases) and drop at the end. The
    tests never change the database the URL names, nor any SQLite file of yours. Settings of your shell do not leak."""
    if SERVER_URL and make_url(SERVER_URL).get_backend_name() != "postgresql":
        raise pytest.UsageError(
            "TEST_DATABASE_URL is for a PostgreSQL server. Unset it: the tests make their own SQLite file."
        )
    if SERVER_URL:
        try:
            asyncio.run(on_the_server(f'CREATE DATABASE "{OWN_DATABASE}"'))
            MADE.append(OWN_DATABASE)
        except ModuleNotFoundError as error:  # the URL's driver, e.g. asyncpg, is not installed
            raise pytest.UsageError(
                f"TEST_DATABASE_URL needs {error.name}: python -m pip install {error.name}"
            ) from None
        except Exception as error:
            reason = getattr(error, "orig", None) or error  # the driver's own words, without SQLAlchemy's wrapping
            raise pytest.UsageError(
                "The tests make a database of their own on the server that TEST_DATABASE_URL names, and could not "
                f"({type(reason).__name__}: {reason}). Check the URL, and that its user may create databases "
                "(ALTER ROLE name CREATEDB)."
            ) from None
        own = make_url(SERVER_URL).set(database=OWN_DATABASE)
        os.environ["DATABASE_URL"] = own.render_as_string(hide_password=False)
    else:
        os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{TEST_FOLDER}/books.db"
    for name in ("API_KEY", "DEMO_BOOKS", "SQL_ECHO"):
        os.environ.pop(name, None)


def pytest_unconfigure() -> None:
    shutil.rmtree(TEST_FOLDER, ignore_errors=True)
    for name in MADE:
        asyncio.run(on_the_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def on_the_server(statement: str) -> None:
    """Runs one statement on the database TEST_DATABASE_URL names, outside a transaction (CREATE DATABASE needs it)."""
    engine = create_async_engine(SERVER_URL or "", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture
def db_url() -> str:
    """The URL of the database the tests use."""
    import main

    return main.DATABASE_URL


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    """An HTTP client for the app on an empty database. The app runs its own start-up (creating the tables) and
    shutdown around the test; httpx's ASGITransport hands each request straight to it, with no server or network."""
    import main  # here, not at the top: pytest_configure sets its settings first

    await main.engine.dispose()  # close the pool's connections, so that none holds on to the old database
    if main.engine.dialect.name == "sqlite":
        delete_sqlite_files(main.DATABASE_URL)  # the file in TEST_FOLDER
    else:
        async with main.engine.begin() as connection:  # the tests' own database: empty it, whatever made its tables
            await connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            await connection.exec_driver_sql("CREATE SCHEMA public")
    transport = ASGITransport(main.app)
    async with (
        main.app.router.lifespan_context(main.app),  # main.lifespan, with what main.py's last section adds to it
        AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client
    main.app.dependency_overrides.clear()  # undo what a test replaced
    # After a failed connect, aiosqlite stops its thread without waiting for it (fixed by omnilib/aiosqlite pull
    # request 389). Wait for it here, or it may report to this test's event loop after it closed, and pytest warns.
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


def delete_sqlite_files(url: str) -> None:
    path = make_url(url).database or ""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
