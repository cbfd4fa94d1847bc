"""For .ci/exercises: a books.db as the starting code leaves it, and whether a migrated one kept its books.

DATABASE_URL=sqlite+aiosqlite:///./books.db python .ci/exercise_database.py fill     # with the starting main.py
DATABASE_URL=sqlite+aiosqlite:///./books.db python .ci/exercise_database.py verify   # after the solution
"""

import asyncio
import os
import sys

from httpx import ASGITransport, AsyncClient

sys.path.insert(0, os.getcwd())
os.environ["DEMO_BOOKS"] = "1"  # fills an empty table with main.DEMO at start-up; never touches one with books
import main


async def run(step: str) -> None:
    async with (
        main.app.router.lifespan_context(main.app),
        AsyncClient(transport=ASGITransport(main.app), base_url="http://x") as client,
    ):
        books = (await client.get("/books", params={"limit": 100})).json()
    titles = sorted(book["title"] for book in books)
    expected = sorted(book["title"] for book in main.DEMO)
    if titles != expected:
        sys.exit(f"{step}: the database holds {titles}, not the {len(expected)} demo books")
    if step == "verify":
        print(f"   a books.db made by the starting code: after alembic upgrade head, all {len(books)} books are there")


asyncio.run(run(sys.argv[1]))
