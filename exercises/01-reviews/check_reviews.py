"""Checker for exercise 1, reviews: python -m pytest exercises/01-reviews/check_reviews.py"""

from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

import main
from test_main import create

GOOD = {"rating": 5, "text": "A delight from the first line."}


async def add_review(client: AsyncClient, book_id: int, **review: Any) -> dict[str, Any]:
    response = await client.post(f"/books/{book_id}/reviews", json=review or GOOD)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_review_is_created_with_its_own_id(client: AsyncClient) -> None:
    book = await create(client)
    review = await add_review(client, book["id"])
    assert review == {"id": review["id"], "book_id": book["id"], **GOOD}


async def test_reviews_are_listed_in_the_order_written(client: AsyncClient) -> None:
    book = await create(client)
    first = await add_review(client, book["id"], rating=2, text="Too long.")
    second = await add_review(client, book["id"], rating=4, text="Better the second time.")
    other_book = await create(client, isbn=None, title="Another book")
    await add_review(client, other_book["id"])

    response = await client.get(f"/books/{book['id']}/reviews")
    assert response.status_code == 200
    assert response.json() == [first, second]


async def test_reading_a_book_includes_its_reviews(client: AsyncClient) -> None:
    book = await create(client)
    review = await add_review(client, book["id"])
    response = await client.get(f"/books/{book['id']}")
    assert response.status_code == 200
    assert response.json() == {**book, "reviews": [review]}


async def test_a_book_without_reviews_has_an_empty_list(client: AsyncClient) -> None:
    book = await create(client)
    assert (await client.get(f"/books/{book['id']}")).json()["reviews"] == []
    assert (await client.get(f"/books/{book['id']}/reviews")).json() == []


async def test_reviews_of_a_missing_book_are_404(client: AsyncClient) -> None:
    for response in [await client.get("/books/42/reviews"), await client.post("/books/42/reviews", json=GOOD)]:
        assert response.status_code == 404
        assert response.json() == {"detail": "Book 42 not found"}


async def test_review_rules(client: AsyncClient) -> None:
    book = await create(client)
    for bad in [
        {"rating": 0, "text": "x"},
        {"rating": 6, "text": "x"},
        {"rating": "5", "text": "x"},
        {"rating": 4, "text": ""},
        {"rating": 4, "text": "x" * 2001},
        {"rating": 4},
        {"rating": 4, "text": "x", "book_id": 7},
    ]:
        response = await client.post(f"/books/{book['id']}/reviews", json=bad)
        assert response.status_code == 422, bad
    assert (await client.get(f"/books/{book['id']}/reviews")).json() == []


async def test_deleting_a_book_deletes_its_reviews(client: AsyncClient) -> None:
    book = await create(client)
    await add_review(client, book["id"])
    await add_review(client, book["id"], rating=1, text="Not for me.")
    assert (await client.delete(f"/books/{book['id']}")).status_code == 204
    async with main.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM reviews")) == 0


async def test_the_list_of_books_stays_as_it_was(client: AsyncClient) -> None:
    book = await create(client)
    await add_review(client, book["id"])
    assert (await client.get("/books")).json() == [book]
