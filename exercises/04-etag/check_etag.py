"""Checker for exercise 4, ETag and If-Match: python -m pytest exercises/04-etag/check_etag.py"""

from httpx import AsyncClient

from test_main import create


async def test_reads_and_creates_send_the_version_as_an_etag(client: AsyncClient) -> None:
    response = await client.post("/books", json={"title": "Emma", "author": "Jane Austen", "year": 1815})
    assert response.headers["etag"] == '"1"'
    assert (await client.get(f"/books/{response.json()['id']}")).headers["etag"] == '"1"'


async def test_every_change_makes_a_new_etag(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    patched = await client.patch(url, json={"year": 1938})
    replaced = await client.put(url, json={"title": "The Hobbit", "author": "Tolkien", "year": 1951})
    assert [patched.headers["etag"], replaced.headers["etag"]] == ['"2"', '"3"']
    assert (await client.get(url)).headers["etag"] == '"3"'


async def test_a_write_with_the_current_etag_succeeds(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    etag = (await client.get(url)).headers["etag"]
    response = await client.patch(url, json={"year": 1938}, headers={"If-Match": etag})
    assert response.status_code == 200
    assert response.json()["year"] == 1938


async def test_the_second_of_two_writers_from_one_read_gets_412(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    etag = (await client.get(url)).headers["etag"]  # two people open the same book
    first = await client.patch(url, json={"year": 1938}, headers={"If-Match": etag})
    second = await client.patch(url, json={"year": 1999}, headers={"If-Match": etag})
    assert first.status_code == 200
    assert second.status_code == 412
    assert "changed" in second.json()["detail"]
    assert (await client.get(url)).json()["year"] == 1938  # the first write was not lost


async def test_stale_put_and_delete_change_nothing(client: AsyncClient) -> None:
    created = await create(client)
    url = f"/books/{created['id']}"
    await client.patch(url, json={"year": 1938})
    stale = {"If-Match": '"1"'}
    assert (await client.put(url, json={"title": "T", "author": "A", "year": 2000}, headers=stale)).status_code == 412
    assert (await client.delete(url, headers=stale)).status_code == 412
    assert (await client.get(url)).json() == {**created, "year": 1938}
    assert (await client.delete(url, headers={"If-Match": '"2"'})).status_code == 204


async def test_if_match_on_a_missing_book_is_404(client: AsyncClient) -> None:
    for response in [
        await client.patch("/books/42", json={"year": 2000}, headers={"If-Match": '"1"'}),
        await client.delete("/books/42", headers={"If-Match": '"1"'}),
    ]:
        assert response.status_code == 404


async def test_star_and_no_header_mean_any_version(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    assert (await client.patch(url, json={"year": 1938}, headers={"If-Match": "*"})).status_code == 200
    assert (await client.patch(url, json={"year": 1939})).status_code == 200


async def test_an_etag_this_api_never_sent_does_not_match(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    for header in ['W/"1"', "1", '"one"', '"1", "2"', '"' + "9" * 30 + '"']:
        assert (await client.patch(url, json={"year": 2000}, headers={"If-Match": header})).status_code == 412
    assert (await client.get(url)).json()["year"] == 1937


async def test_an_empty_patch_checks_if_match_too(client: AsyncClient) -> None:
    url = f"/books/{(await create(client))['id']}"
    assert (await client.patch(url, json={}, headers={"If-Match": '"1"'})).status_code == 200
    assert (await client.patch(url, json={}, headers={"If-Match": '"7"'})).status_code == 412
    assert (await client.get(url)).headers["etag"] == '"1"'
