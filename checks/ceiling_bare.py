"""Benchmark ceiling: the book routes as a bare FastAPI app that answers constants. Nothing is faster in FastAPI."""

from typing import Any

from fastapi import FastAPI, Response

app = FastAPI()
BOOK = {"id": 1, "title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813, "isbn": "9780141439518"}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/books/{book_id}")
async def read_book(book_id: int) -> dict[str, Any]:
    return BOOK


@app.get("/books")
async def list_books(response: Response) -> list[dict[str, Any]]:
    response.headers["X-Total-Count"] = "10000"
    return [BOOK] * 20


@app.post("/books", status_code=201)
async def create_book() -> dict[str, Any]:
    return BOOK


@app.patch("/books/{book_id}")
async def patch_book(book_id: int) -> dict[str, Any]:
    return BOOK
