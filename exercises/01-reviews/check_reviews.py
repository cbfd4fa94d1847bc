"""Checker for exercise 1, reviews: python -m pytest exercises/01-reviews/check_reviews.py

Each test checks one line of the goal in exercises/01-reviews/README.md, and says what to do when it fails.
"""

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import event, text

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


async def test_the_reviews_come_a_page_at_a_time_like_the_books(client: AsyncClient) -> None:
    book = await new_book(client)
    made = [await add_review(client, book["id"], rating=3, text=f"Review {n}") for n in range(1, 23)]
    response = await client.get(f"/books/{book['id']}/reviews")
    listed = expect(response, 200, "GET /books/{book_id}/reviews")
    assert listed == made[:20], (
        f"of 22 reviews, GET /books/{{book_id}}/reviews gave {len(listed)}: without limit, give the first page of "
        "20, oldest first, as GET /books does (its limit and offset)"
    )
    assert response.headers.get("X-Total-Count") == str(len(made)), (
        f"X-Total-Count should say {len(made)}, the book's reviews in all, not {response.headers.get('X-Total-Count')}"
    )
    page = await client.get(f"/books/{book['id']}/reviews", params={"limit": 5, "offset": 20})
    assert expect(page, 200, "GET /books/{book_id}/reviews?limit=5&offset=20") == made[20:], (
        "limit=5&offset=20 gives the 21st and 22nd reviews: skip offset reviews, then give at most limit"
    )


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "1.0"}], ids=str)
async def test_a_page_out_of_bounds_is_422(client: AsyncClient, query: dict[str, Any]) -> None:
    book = await new_book(client)
    response = await client.get(f"/books/{book['id']}/reviews", params=query)
    route_exists(response, "GET /books/{book_id}/reviews")
    assert response.status_code == 422, (
        f"GET /books/{{book_id}}/reviews with {query} answered {response.status_code}: limit is 1 to 100 and offset "
        "0 or more, whole numbers, as for GET /books"
    )


async def test_a_book_shows_its_5_newest_reviews_newest_first(client: AsyncClient) -> None:
    book = await new_book(client)
    made = [await add_review(client, book["id"], rating=4, text=f"Review {n}") for n in range(1, 8)]
    read = expect(await client.get(f"/books/{book['id']}"), 200, "GET /books/{book_id}")
    shown = [review.get("text") for review in read.get("reviews", [])]
    assert read.get("reviews") == made[::-1][:5], (
        f"of 7 reviews, GET /books/{{book_id}} showed {shown}: show the 5 newest, newest first "
        "(all of them are at GET /books/{book_id}/reviews)"
    )


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


@pytest.mark.parametrize("book_id", ["9223372036854775808", "0", "1.0"])
async def test_a_book_id_out_of_range_is_422(client: AsyncClient, book_id: str) -> None:
    for method, body in (("GET", None), ("POST", GOOD)):
        response = await client.request(method, f"/books/{book_id}/reviews", json=body)
        route_exists(response, f"{method} /books/{book_id}/reviews")
        assert response.status_code == 422, (
            f"{method} /books/{book_id}/reviews answered {response.status_code}: a book id is 1 to "
            "9223372036854775807, in digits, as in /books/{book_id} (main.py's BookId)"
        )


async def test_a_review_for_a_book_deleted_meanwhile_is_404(client: AsyncClient) -> None:
    book = await new_book(client)

    def delete_the_book_first(_connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO reviews"):  # as if another request deleted the book a moment before
            cursor.execute(f"DELETE FROM books WHERE id = {book['id']}")

    event.listen(main.engine.sync_engine, "before_cursor_execute", delete_the_book_first)
    try:
        response = await client.post(f"/books/{book['id']}/reviews", json=GOOD)
    except Exception as error:  # what the server would answer with a 500
        pytest.fail(
            f"a review for a book deleted while it was being stored raised {type(error).__name__} (a 500): the "
            "database refuses it (the foreign key), so turn that error into the 404"
        )
    finally:
        event.remove(main.engine.sync_engine, "before_cursor_execute", delete_the_book_first)
    route_exists(response, "POST /books/{book_id}/reviews")
    assert response.status_code == 404, (
        f"a review for a book deleted while it was being stored answered {response.status_code}, not 404: the "
        "database refuses it (the foreign key), so turn that error into the 404"
    )


async def test_a_deleted_reviews_id_is_never_given_again(client: AsyncClient) -> None:
    book, other = await new_book(client), await new_book(client, "Another book")
    given = [(await add_review(client, book["id"], rating=3, text=f"Review {n}"))["id"] for n in (1, 2)]
    expect(await client.delete(f"/books/{book['id']}"), 204, "DELETE /books/{book_id}")
    again = (await add_review(client, other["id"]))["id"]
    assert again not in given, (
        f"review id {again} was given again, after the review that had it was deleted with its book: on SQLite, a "
        "table needs AUTOINCREMENT for that (see Base's __table_args__ in main.py: does ReviewModel keep them?)"
    )


@pytest.mark.parametrize(
    ("review_text", "rule"),
    [
        ("a\u0000b", "must be one line of text"),
        ("Two\nlines", "must be one line of text"),
        ("\u200b\u200b", "must contain a visible character"),
    ],
)
async def test_a_text_that_breaks_a_titles_rules_is_422_saying_why(
    client: AsyncClient, review_text: str, rule: str
) -> None:
    book = await new_book(client)
    try:
        response = await client.post(f"/books/{book['id']}/reviews", json={"rating": 3, "text": review_text})
    except Exception as error:  # what the server would answer with a 500
        pytest.fail(f"a text {review_text!r} raised {getattr(error, 'orig', error)!r} (a 500), not a 422")
    route_exists(response, "POST /books/{book_id}/reviews")
    assert response.status_code == 422, (
        f"a text {review_text!r} answered {response.status_code}, not 422: a review's text follows the rules of a "
        "title (main.py's one_line)"
    )
    problems = response.json()["detail"]
    assert [problem["loc"] for problem in problems] == [["body", "text"]], f"one problem, in text: {problems}"
    assert problems[0]["msg"].startswith(rule), f"say why, as for a title: {rule!r}, not {problems[0]['msg']!r}"
    assert expect(await client.get(f"/books/{book['id']}/reviews"), 200, "GET .../reviews") == [], "nothing stored"


async def test_a_text_is_stored_in_one_spelling_without_spaces_around(client: AsyncClient) -> None:
    book = await new_book(client)
    review = await add_review(client, book["id"], rating=4, text="  Cafe\u0301 au lait  ")
    assert review["text"] == "Caf\u00e9 au lait", (
        f"the text came back as {review['text']!r}: like a title, it loses surrounding spaces and is stored in NFC"
    )


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
        ({"rating": True, "text": "x"}, "a rating sent as true"),
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


async def test_the_review_routes_are_documented_like_the_others(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    if "/books/{book_id}/reviews" not in paths:
        pytest.fail("/openapi.json has no /books/{book_id}/reviews yet: add the routes (see the goal)")
    for method, statuses in (("get", {"200", "404", "422"}), ("post", {"201", "404", "422"})):
        operation = paths.get("/books/{book_id}/reviews", {}).get(method, {})
        documented = set(operation.get("responses", {}))
        missing = sorted((statuses | {"400", "413", "503"}) - documented)
        assert not missing, (
            f"/openapi.json does not document {missing} for {method.upper()} /books/{{book_id}}/reviews: add the "
            "routes above main.py's last section (it documents 400, 413 and 503 for every route), with "
            "responses=... for the 404, as the book routes do"
        )
    listing = paths["/books/{book_id}/reviews"]["get"]
    assert "X-Total-Count" in listing["responses"]["200"].get("headers", {}), (
        "document the header X-Total-Count on GET /books/{book_id}/reviews, as GET /books does (TOTAL in main.py)"
    )
    parameters = sorted(parameter["name"] for parameter in listing.get("parameters", []))
    assert parameters == ["book_id", "limit", "offset"], f"its parameters are book_id, limit and offset: {parameters}"


async def test_with_api_key_a_review_needs_the_key(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    book = await new_book(client)
    monkeypatch.setattr(main, "API_KEY", "s3cret")
    response = await client.post(f"/books/{book['id']}/reviews", json=GOOD)
    route_exists(response, "POST /books/{book_id}/reviews")
    assert response.status_code == 401, "a review is a write: put its route where the other writes are"
    response = await client.post(f"/books/{book['id']}/reviews", json=GOOD, headers={"X-API-Key": "s3cret"})
    assert response.status_code == 201, f"with the key, the review is stored (got {response.status_code})"
