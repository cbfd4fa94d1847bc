"""Checker for exercise 5, PostgreSQL. With your server's URL:

    TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        python -m pytest exercises/05-postgresql/check_postgresql.py

Each test checks one line of the goal in exercises/05-postgresql/README.md, and says what to do when it fails.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import main

ROOT = Path(__file__).resolve().parent.parent.parent
ON_POSTGRESQL = main.DATABASE_URL.startswith("postgresql")
needs_postgresql = pytest.mark.skipif(not ON_POSTGRESQL, reason="set TEST_DATABASE_URL to your PostgreSQL server")
HEALTH = """
import asyncio, json
from httpx import ASGITransport, AsyncClient
import main

async def health():
    async with main.app.router.lifespan_context(main.app):
        async with AsyncClient(transport=ASGITransport(main.app), base_url="http://test") as client:
            print(json.dumps((await client.get("/health")).json()))

asyncio.run(health())
"""


def on_sqlite(**settings: str) -> dict[str, str]:
    """The environment of a command that runs the app, or the learners' suite, on SQLite."""
    unset = {"TEST_DATABASE_URL", "DATABASE_URL", "API_KEY", "DEMO_BOOKS", "SQL_ECHO"}
    return {name: value for name, value in os.environ.items() if name not in unset} | settings


def test_the_checker_runs_on_postgresql() -> None:
    assert ON_POSTGRESQL, "set TEST_DATABASE_URL to your PostgreSQL server's URL (postgresql+asyncpg://...)"


@needs_postgresql
def test_the_learners_suite_passes_on_postgresql() -> None:
    environment = {**os.environ, "TEST_DATABASE_URL": main.DATABASE_URL}
    command = [sys.executable, "-m", "pytest", "-q", "test_main.py"]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the learners' suite fails on PostgreSQL:\n{result.stdout[-2000:]}"


@needs_postgresql
async def test_health_names_the_database_and_its_version(client: AsyncClient) -> None:
    answer = (await client.get("/health")).json()
    assert "database" in answer, f'/health should say "database": "postgresql <version>", not {answer}'
    name, version = answer["database"].split()
    assert name == "postgresql", f"the database's name is {name!r}, not postgresql"
    assert int(version.split(".")[0]) >= 13, f"the server's version, such as 15.4, not {version!r}"


@needs_postgresql
async def test_not_one_request_fails_after_the_server_closes_every_connection(client: AsyncClient) -> None:
    created = await client.post("/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    assert created.status_code == 201, created.text  # the app's pool now holds an open connection
    admin = create_async_engine(main.DATABASE_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:  # what a restart does to the app: every connection of its own closes
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await admin.dispose()
    for _ in range(3):
        response = await client.get(f"/books/{created.json()['id']}")
        assert response.status_code == 200, (
            f"after the server closed the pool's connections, a request got {response.status_code}: the pool handed"
            " out a dead connection (see the hints on testing connections before use)"
        )


@needs_postgresql
async def test_a_statement_over_5_seconds_is_cancelled(client: AsyncClient) -> None:
    async with main.engine.connect() as connection:
        setting = await connection.scalar(text("SHOW statement_timeout"))
        assert setting == "5s", f"the app's connections have statement_timeout {setting!r}, not 5s"
        started = time.monotonic()
        with pytest.raises(main.exc.DBAPIError):
            await connection.execute(text("SELECT pg_sleep(8)"))
    assert time.monotonic() - started < 7, "PostgreSQL should have cancelled the statement after 5 seconds"


def test_health_on_sqlite_names_sqlite_and_its_version(tmp_path: Path) -> None:
    environment = on_sqlite(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/books.db")
    command = [sys.executable, "-c", HEALTH]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"on SQLite, the app could not answer /health:\n{result.stderr[-2000:]}"
    answer = json.loads(result.stdout.splitlines()[-1])
    name, _, version = answer.get("database", "").partition(" ")
    assert name == "sqlite" and version[:1].isdigit(), (
        f'on SQLite, /health should say "database": "sqlite <version>", such as "sqlite 3.40.1", not {answer}'
    )


def test_the_learners_suite_passes_on_sqlite() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "test_main.py"]
    result = subprocess.run(command, cwd=ROOT, env=on_sqlite(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the learners' suite fails on SQLite:\n{result.stdout[-2000:]}"
