"""Where the time of a GET /books/{id} goes: one book looked up by id, layer by layer, one call after another.

    python checks/orm_cost.py            # 10,000 rows, 3,000 look-ups per layer

Each line adds one layer to the one above it, so the differences are what each layer costs on this machine:
- sqlite3: Python's own driver, blocking;
- SQLAlchemy Core, then the ORM's `session.get`, on that blocking driver;
- aiosqlite: the same query in aiosqlite's thread, one `execute_fetchall` (one hand-off to the thread and back);
- SQLAlchemy Core, then the ORM, on aiosqlite, as main.py runs them (its one-connection pool).
`hand-offs` counts the trips to aiosqlite's thread per look-up. No HTTP here: checks/bench.py measures whole requests.
"""

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import uvloop
from bench import fill
from sqlalchemy import bindparam, create_engine, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

import main

hand_offs = 0
original_execute = aiosqlite.Connection._execute


async def counted_execute(self: aiosqlite.Connection, fn: Callable[..., object], *args: object, **kw: object) -> object:
    global hand_offs
    hand_offs += 1
    return await original_execute(self, fn, *args, **kw)


def timed(label: str, calls: int, call: Callable[[int], object]) -> None:
    for n in range(200):  # warm up: caches, pool, page cache
        call(n)
    started = time.perf_counter()
    for n in range(calls):
        call(n)
    print(f"{label:40} {(time.perf_counter() - started) / calls * 1e6:8.0f}")


async def timed_async(label: str, calls: int, rows: int, call: Callable[[int], Awaitable[object]]) -> None:
    global hand_offs
    for n in range(200):
        await call(n % rows + 1)
    hand_offs, started = 0, time.perf_counter()
    for n in range(calls):
        await call(n % rows + 1)
    print(f"{label:40} {(time.perf_counter() - started) / calls * 1e6:8.0f} {hand_offs / calls:10.1f}")


async def layers(path: Path, rows: int, calls: int) -> None:
    sql, by_id = "SELECT id, title, author, year, isbn FROM books WHERE id = ?", main.BookModel.id
    statement = select(main.BookModel.__table__).where(by_id == bindparam("id"))

    db = sqlite3.connect(path)
    timed("sqlite3", calls, lambda n: db.execute(sql, (n % rows + 1,)).fetchall())
    db.close()
    engine = create_engine(f"sqlite:///{path}", poolclass=QueuePool, pool_size=1)

    def core(n: int) -> object:
        with engine.connect() as connection:
            return connection.execute(statement, {"id": n % rows + 1}).first()

    def orm(n: int) -> object:
        with Session(engine) as session:
            return session.get(main.BookModel, n % rows + 1)

    timed("SQLAlchemy Core on sqlite3", calls, core)
    timed("SQLAlchemy ORM session.get on sqlite3", calls, orm)
    engine.dispose()

    print(f"{'':40} {'':8} {'hand-offs':>10}")
    aiosqlite.Connection._execute = counted_execute  # type: ignore[method-assign]
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        await timed_async("aiosqlite execute_fetchall", calls, rows, lambda n: connection.execute_fetchall(sql, (n,)))
    async_engine = create_async_engine(f"sqlite+aiosqlite:///{path}", poolclass=AsyncAdaptedQueuePool, pool_size=1)
    sessions = async_sessionmaker(async_engine, expire_on_commit=False)

    async def async_core(n: int) -> object:
        async with async_engine.connect() as connection:
            return (await connection.execute(statement, {"id": n})).first()

    async def async_orm(n: int) -> object:
        async with sessions() as session:
            return await session.get(main.BookModel, n)

    await timed_async("SQLAlchemy Core on aiosqlite", calls, rows, async_core)
    await timed_async("SQLAlchemy ORM session.get on aiosqlite", calls, rows, async_orm)
    await async_engine.dispose()


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=3_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bookapi-cost-") as folder:
        path = Path(folder) / "books.db"
        main.Base.metadata.create_all(create_engine(f"sqlite:///{path}"))
        fill(path, args.rows)
        print(f"one book by id, {args.rows:,} rows, {args.calls:,} look-ups one after another")
        print(f"{'layer':40} {'us/call':>8}")
        uvloop.run(layers(path, args.rows, args.calls))  # the event loop uvicorn runs


if __name__ == "__main__":
    main_()
