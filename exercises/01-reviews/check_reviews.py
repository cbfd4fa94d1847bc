"""Checker for exercise 1, reviews: python -m pytest exercises/01-reviews/check_reviews.py

Each test checks one line of the goal in exercises/01-reviews/README.md, and says what to do when it fails.
"""

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text

import main

GOOD = {"rating": 5, "text": "A delight from the first line."}


def route_exists(response: Response, request: str) -> None:
    if response.status_code in (404, 405) and ("No such route" in response.text or "method" in response.text):
        pytest.fail(f"{request}: no such route yet. Add it (see the goal in exercises/01-reviews/README.md).")


def expect(response: Response, status: int, request: str) -> Any:
    """The response's JSON, once its status is the one the goal gives; else a failure saying what came back."""
    route_exists(response, request)
    assert response.status_code == status, f"{request} answered {response.status_code}, not {status}: {response.text}"
    return response.json() if response.content else None


async def new_book(client: AsyncClient, title: str = "The Hobbit") -> dict[str, Any]:
    response = await client.post("/books", json={"title": title, "author": "J. R. R. Tolkien", "year": 1937})
    return expect(response, 201, "POST /books")


async def add_review(client: AsyncClient, book_id: int, **review: Any) -> dict[str, Any]:
    response = await client.post(f"/books/{book_id}/reviews", json=review or GOOD)
    return expect(response, 201, f"POST /books/{book_id}/reviews")


async def test_a_review_is_stored_with_its_own_id_and_its_book(client: AsyncClient) -> None:
    book = await new_book(client)
    review = await add_review(client, book["id"])
    assert set(review) == {"id", "book_id", "rating", "text"}, (
        f"a review has exactly these fields, not {sorted(review)}"
    )
    assert review == {"id": review["id"], "book_id": book["id"], **GOOD}, "the review should come back as it was sent"


async def test_reviews_are_listed_oldest_first(client: AsyncClient) -> None:
    book, other = await new_book(client), await new_book(client, "Another book")
    first = await add_review(client, book["id"], rating=2, text="Too long.")
    second = await add_review(client, book["id"], rating=4, text="Better the second time.")
    await add_review(client, other["id"])
    listed = expect(await client.get(f"/books/{book['id']}/reviews"), 200, "GET /books/{book_id}/reviews")
    assert listed == [first, second], "GET /books/{book_id}/reviews lists that book's reviews only, oldest first"
    assert expect(await client.get(f"/books/{other['id']}/reviews"), 200, "GET .../reviews") != []


async def test_reading_a_book_includes_its_reviews(client: AsyncClient) -> None:
    book = await new_book(client)
    empty = expect(await client.get(f"/books/{book['id']}"), 200, "GET /books/{book_id}")
    assert empty.get("reviews") == [], 'GET /books/{book_id} needs "reviews": [] for a book without reviews'
    review = await add_review(client, book["id"])
    read = expect(await client.get(f"/books/{book['id']}"), 200, "GET /books/{book_id}")
    assert read == {**book, "reviews": [review]}, "GET /books/{book_id} is the book plus its reviews"


async def test_reviews_of_a_missing_book_are_404(client: AsyncClient) -> None:
    for method, body in (("GET", None), ("POST", GOOD)):
        response = await client.request(method, "/books/42/reviews", json=body)
        route_exists(response, f"{method} /books/42/reviews")
        assert response.status_code == 404, f"{method} /books/42/reviews (no book 42) answered {response.status_code}"
        assert response.json() == {"detail": "Book 42 not found"}, f"{method}: say which book is missing"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"rating": 0, "text": "x"}, "a rating under 1"),
        ({"rating": 6, "text": "x"}, "a rating over 5"),
        ({"rating": "5", "text": "x"}, 'a rating sent as a string ("5")'),
        ({"rating": 4.5, "text": "x"}, "a rating that is not a whole number"),
        ({"rating": 4, "text": ""}, "an empty text"),
        ({"rating": 4, "text": "   "}, "a text of spaces only"),
        ({"rating": 4, "text": "x" * 2001}, "a text over 2000 characters"),
        ({"rating": 4}, "a missing text"),
        ({"text": "x"}, "a missing rating"),
        ({"rating": 4, "text": "x", "book_id": 7}, "a book_id in the body (the book comes from the path)"),
    ],
)
async def test_a_review_that_breaks_a_rule_is_422_and_not_stored(client: AsyncClient, body: Any, why: str) -> None:
    book = await new_book(client)
    response = await client.post(f"/books/{book['id']}/reviews", json=body)
    route_exists(response, "POST /books/{book_id}/reviews")
    assert response.status_code == 422, f"{why} should be a 422, not {response.status_code}"
    assert expect(await client.get(f"/books/{book['id']}/reviews"), 200, "GET .../reviews") == [], "nothing stored"


async def test_a_text_of_2000_characters_is_fine(client: AsyncClient) -> None:
    book = await new_book(client)
    assert (await add_review(client, book["id"], rating=3, text="x" * 2000))["text"] == "x" * 2000


async def test_deleting_a_book_deletes_its_reviews(client: AsyncClient) -> None:
    book = await new_book(client)
    await add_review(client, book["id"])
    await add_review(client, book["id"], rating=1, text="Not for me.")
    expect(await client.delete(f"/books/{book['id']}"), 204, "DELETE /books/{book_id}")
    async with main.engine.connect() as connection:
        left = await connection.scalar(text("SELECT count(*) FROM reviews"))
    assert left == 0, f"{left} reviews of the deleted book are still in the table reviews: see ondelete"


async def test_the_list_of_books_stays_as_it_was(client: AsyncClient) -> None:
    book = await new_book(client)
    await add_review(client, book["id"])
    assert expect(await client.get("/books"), 200, "GET /books") == [book], "GET /books lists books without reviews"


async def test_with_api_key_a_review_needs_the_key(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    book = await new_book(client)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    response = await client.post(f"/books/{book['id']}/reviews", json=GOOD)
    route_exists(response, "POST /books/{book_id}/reviews")
    assert response.status_code == 401, "a review is a write: put its route where the other writes are"
    response = await client.post(f"/books/{book['id']}/reviews", json=GOOD, headers={"X-API-Key": "s3cret"})
    assert response.status_code == 201, f"with the key, the review is stored (got {response.status_code})"
