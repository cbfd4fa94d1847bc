"""Checker for exercise 3, PostgreSQL. With your server's URL:

    TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        python -m pytest exercises/03-postgresql/check_postgresql.py
"""

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from test_main import create


def test_the_tests_run_on_postgresql(db_url: str) -> None:
    assert db_url.startswith("postgresql+asyncpg://"), "set TEST_DATABASE_URL to your PostgreSQL server's URL"


async def test_health_names_the_database_and_its_version(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    name, version = response.json()["database"].split()
    assert name == "postgresql"
    assert int(version.split(".")[0]) >= 13


async def test_the_api_survives_a_database_restart(client: AsyncClient, db_url: str) -> None:
    created = await create(client)  # the app's pool now holds an open connection
    # What a restart does to the app: the server closes every connection it had.
    admin = create_async_engine(db_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        closed = await connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await admin.dispose()
    assert closed >= 1

    for _ in range(3):  # every pooled connection is dead now; each request must still succeed
        response = await client.get(f"/books/{created['id']}")
        assert response.status_code == 200
        assert response.json() == created
