"""The learners' suite never changes a database it did not make: conftest.py's TEST_DATABASE_URL.

    python -m pytest checks/test_learners_suite.py                                   # the SQLite cases
    TEST_DATABASE_URL=postgresql+asyncpg://... python -m pytest checks/test_learners_suite.py  # and the server's

Each case runs the suite (a few of its tests) in a new process, as a learner would, with TEST_DATABASE_URL set.
"""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.getenv("TEST_DATABASE_URL")
NEEDS_SERVER = pytest.mark.skipif(not SERVER, reason="needs TEST_DATABASE_URL: a PostgreSQL server to try it on")


def run_suite(database_url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(ROOT / "test_main.py"),
        "-k",
        "delete",
    ]
    environment = {**os.environ, "TEST_DATABASE_URL": database_url}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


async def on_server(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await connection.exec_driver_sql(statement)
                rows = [tuple(row) for row in result] if result.returns_rows else []
            return rows
    finally:
        await engine.dispose()


def test_a_sqlite_url_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    books = tmp_path / "books.db"
    books.write_bytes(b"a learner's books")
    result = run_suite("sqlite+aiosqlite:///./books.db", cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "TEST_DATABASE_URL is for a PostgreSQL server. Unset it" in result.stderr
    assert books.read_bytes() == b"a learner's books"


@NEEDS_SERVER
def test_the_database_the_url_names_keeps_its_tables_and_no_test_database_is_left(db_url: str) -> None:
    named = f"learner_{uuid.uuid4().hex[:8]}"
    asyncio.run(on_server(db_url, f'CREATE DATABASE "{named}"'))
    named_url = make_url(db_url).set(database=named).render_as_string(hide_password=False)
    try:
        asyncio.run(on_server(named_url, "CREATE TABLE books (id int)", "INSERT INTO books VALUES (7)"))
        before = asyncio.run(on_server(db_url, "SELECT datname FROM pg_database"))
        result = run_suite(named_url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert asyncio.run(on_server(named_url, "SELECT id FROM books")) == [(7,)]
        assert asyncio.run(on_server(db_url, "SELECT datname FROM pg_database")) == before
    finally:
        asyncio.run(on_server(db_url, f'DROP DATABASE IF EXISTS "{named}" WITH (FORCE)'))


@NEEDS_SERVER
def test_a_user_who_cannot_create_databases_is_told_so(db_url: str) -> None:
    role = f"learner_{uuid.uuid4().hex[:8]}"
    asyncio.run(on_server(db_url, f'CREATE ROLE "{role}" LOGIN'))
    try:
        result = run_suite(make_url(db_url).set(username=role, password=None).render_as_string(hide_password=False))
        assert result.returncode == 4, result.stdout + result.stderr
        assert "permission denied to create database" in result.stderr
        assert "ALTER ROLE name CREATEDB" in result.stderr
    finally:
        asyncio.run(on_server(db_url, f'DROP ROLE "{role}"'))
