"""Benchmark ceiling: the book routes without the ORM, on one raw aiosqlite connection. Everything else is main.py's:
the table (created by main.py's own code), the SQLite settings, the body-size limit, the checks on path, query and
body, the response model, the ordering. So the distance between this and main.py is what the ORM and its session cost.

The connection is in autocommit mode and every call is one `execute_fetchall`: each statement is its own transaction,
finished within one hand-off to aiosqlite's thread, so concurrent requests can share the connection safely."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiosqlite
from fastapi import FastAPI, HTTPException, Query, Response

import main

PATH = os.environ["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
COLUMNS = "id, title, author, year, isbn"
db: aiosqlite.Connection


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global db
    async with main.lifespan(main.app):  # main.py's own start-up makes the table
        pass
    db = await aiosqlite.connect(PATH, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA foreign_keys=ON")
    db.row_factory = aiosqlite.Row
    yield
    await db.close()


app = FastAPI(lifespan=lifespan)
app.add_middleware(main.guard)  # the body-size limit and HEAD, as main.py has them


@app.get("/health")
async def health() -> dict[str, str]:
    await db.execute_fetchall("SELECT 1")
    return {"status": "ok"}


@app.get("/books/{book_id}", response_model=main.BookOut)
async def read_book(book_id: main.BookId) -> dict[str, Any]:
    rows = await db.execute_fetchall(f"SELECT {COLUMNS} FROM books WHERE id = ?", (book_id,))
    if not rows:
        raise HTTPException(404, f"Book {book_id} not found")
    return dict(rows[0])


@app.get("/books", response_model=list[main.BookOut])
async def list_books(query: Annotated[main.BookQuery, Query()], response: Response) -> list[dict[str, Any]]:
    where, args = "", []
    if query.q is not None:
        where = "WHERE title_folded LIKE ? ESCAPE '/' OR author_folded LIKE ? ESCAPE '/'"
        pattern = "%" + query.q.casefold().replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
        args = [pattern, pattern]
    column = {"id": "id", "title": "title_folded", "author": "author_folded", "year": "year"}[query.sort.lstrip("-")]
    direction = "DESC" if query.sort.startswith("-") else "ASC"
    count = f"(SELECT count(*) FROM books {where})"  # as main.py: the page and the total in one query
    order = f"ORDER BY {column} {direction}, id {direction}"
    sql = f"SELECT {COLUMNS}, {count} AS total FROM books {where} {order} LIMIT ? OFFSET ?"
    page = [dict(row) for row in await db.execute_fetchall(sql, [*args, *args, query.limit, query.offset])]
    total = page[0]["total"] if page else next(iter(await db.execute_fetchall(f"SELECT {count}", args)))[0]
    response.headers["X-Total-Count"] = str(total)
    return page


@app.post("/books", response_model=main.BookOut, status_code=201)
async def create_book(book_in: main.BookIn, response: Response) -> dict[str, Any]:
    values = main.with_folded(book_in.model_dump())
    sql = f"INSERT INTO books ({', '.join(values)}) VALUES ({', '.join('?' * len(values))}) RETURNING {COLUMNS}"
    try:
        rows = await db.execute_fetchall(sql, list(values.values()))
    except aiosqlite.IntegrityError:
        raise HTTPException(409, "duplicate isbn") from None
    book = dict(next(iter(rows)))
    response.headers["Location"] = f"/books/{book['id']}"
    return book


@app.patch("/books/{book_id}", response_model=main.BookOut)
async def patch_book(book_id: main.BookId, book_patch: main.BookPatch) -> dict[str, Any]:
    values = main.with_folded(book_patch.model_dump())
    assignments = ", ".join(f"{name} = ?" for name in values)
    sql = f"UPDATE books SET {assignments} WHERE id = ? RETURNING {COLUMNS}"
    rows = list(await db.execute_fetchall(sql, [*values.values(), book_id]))
    if not rows:
        raise HTTPException(404, f"Book {book_id} not found")
    return dict(rows[0])
