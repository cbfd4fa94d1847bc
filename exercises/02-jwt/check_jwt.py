"""Checker for exercise 2, JWT logins: python -m pytest exercises/02-jwt/check_jwt.py

Each test checks one line of the goal in exercises/02-jwt/README.md, and says what to do when it fails.
"""

import asyncio
import contextlib
import datetime
import itertools
import json
import math
import statistics
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from fake_user_probe import run_with_probe
from httpx import AsyncClient, Response
from sqlalchemy import text

import main

ADA = {"username": "ada", "password": "correct horse battery"}
WRONG = {"username": "ada", "password": "not the password"}
HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}
NO_TOKEN = {"Authorization": ""}  # replaces whatever token the client fixture sends
BROKEN = {"Content-Type": "application/json"}  # sent with the body "{not json"
READ_BOUND = 2.0  # seconds: the slowest a read may be while logins are hashed (it takes milliseconds when idle)


def route_exists(response: Response, request: str) -> None:
    if response.status_code in (404, 405) and ("No such route" in response.text or "method" in response.text):
        pytest.fail(f"{request}: no such route yet. Add it (see the goal in exercises/02-jwt/README.md).")


def expect(response: Response, status: int, request: str) -> Any:
    route_exists(response, request)
    assert response.status_code == status, f"{request} answered {response.status_code}, not {status}: {response.text}"
    return response.json()


def jwt_module() -> Any:
    try:
        import jwt
    except ImportError:
        pytest.fail("pyjwt is not installed: add it to requirements.txt, then pip install -r requirements.txt")
    return jwt


def secret_key() -> str:
    key = getattr(main, "SECRET_KEY", None)
    assert isinstance(key, str) and key, "main.py needs SECRET_KEY, the key that signs the tokens (see the goal)"
    return key


async def new_user(client: AsyncClient, user: dict[str, str] = ADA) -> dict[str, Any]:
    return expect(await client.post("/users", json=user, headers=NO_TOKEN), 201, "POST /users")


async def log_in(client: AsyncClient, username: str = "ada", password: str = "correct horse battery") -> str:
    form = {"username": username, "password": password}
    answer = expect(await client.post("/token", data=form, headers=NO_TOKEN), 200, f"POST /token as {username!r}")
    assert answer.get("token_type") == "bearer", f'POST /token should answer "token_type": "bearer", not {answer}'
    return str(answer["access_token"])


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def test_a_user_is_created_without_a_token_and_shown_without_a_password(client: AsyncClient) -> None:
    user = await new_user(client)
    assert set(user) == {"id", "username"}, f"POST /users answers exactly id and username, not {sorted(user)}"
    assert user["username"] == "ada"


async def test_a_username_is_taken_once(client: AsyncClient) -> None:
    await new_user(client)
    again = await client.post("/users", json={**ADA, "password": "another long one"}, headers=NO_TOKEN)
    assert again.status_code == 409, f"a second user named ada should be a 409, not {again.status_code}"
    assert "ada" in again.json()["detail"], "the 409's detail should name the username that is taken"


async def test_a_name_and_a_password_are_read_at_login_as_at_sign_up(client: AsyncClient) -> None:
    name, password = "José Ñandú", "  Ñandú's long pass  "  # "é" and "Ñ" typed as one character each (NFC)
    nfd = unicodedata.normalize("NFD", name)  # the same, typed as a letter plus an accent
    await new_user(client, {"username": name, "password": password})
    again = await client.post("/users", json={"username": nfd, "password": "another long one"}, headers=NO_TOKEN)
    assert again.status_code == 409, (
        f"{name!r} with its accents typed apart (NFD) is the same name, so POST /users should be a 409, not "
        f"{again.status_code}: store each username in one spelling, NFC, as main.py does for titles (see the goal)"
    )
    for username, what in [(nfd, "with its accents typed apart (NFD)"), (f" {name} ", "with spaces around it")]:
        form = {"username": username, "password": password}
        response = await client.post("/token", data=form, headers=NO_TOKEN)
        assert response.status_code == 200, (
            f"logging in as {name!r} {what} should work, as POST /users reads the name: {response.status_code}. "
            "POST /token should read the username and password as POST /users does (see the goal)"
        )
    form = {"username": name, "password": unicodedata.normalize("NFD", password)}
    response = await client.post("/token", data=form, headers=NO_TOKEN)
    assert response.status_code == 200, (
        f"the password typed with its accents apart (NFD) should log in too, not {response.status_code}: "
        "POST /token should read the password as POST /users does (see the goal)"
    )


async def test_a_password_shorter_than_8_characters_is_422(client: AsyncClient) -> None:
    response = await client.post("/users", json={"username": "bob", "password": "1234567"}, headers=NO_TOKEN)
    route_exists(response, "POST /users")
    assert response.status_code == 422, f"a 7-character password should be a 422, not {response.status_code}"


async def test_passwords_are_stored_as_argon2_hashes(client: AsyncClient) -> None:
    await new_user(client)
    async with main.engine.connect() as connection:
        stored = await connection.scalar(text("SELECT password_hash FROM users WHERE username = 'ada'"))
    assert stored is not None, "no user ada in the table users"
    assert stored.startswith("$argon2"), "password_hash should be an Argon2 hash (see pwdlib in the hints)"
    assert ADA["password"] not in stored, "never store the password itself"


async def test_a_token_lets_a_user_write_whatever_the_case_of_bearer(client: AsyncClient) -> None:
    await new_user(client)
    token = await log_in(client)
    for scheme in ["Bearer", "bearer", "BEARER"]:
        response = await client.post("/books", json=HOBBIT | {"title": scheme}, headers=bearer(token, scheme))
        assert response.status_code == 201, f"a write with a fresh token should succeed, not {response.status_code}"
        broken = await client.post("/books", content="{not json", headers=bearer(token, scheme) | BROKEN)
        assert broken.status_code == 422, (
            f"with Authorization: {scheme} and a good token, a broken body should be a 422, not "
            f"{broken.status_code}: the scheme's name is read in any case (see the goal), on every path"
        )


async def test_the_token_names_the_user_and_lasts_30_minutes(client: AsyncClient) -> None:
    user = await new_user(client)
    claims = jwt_module().decode(await log_in(client), secret_key(), algorithms=["HS256"])
    assert claims.get("sub") == str(user["id"]), "the claim sub is the user's id, as a string"
    lifetime = claims["exp"] - datetime.datetime.now(datetime.UTC).timestamp()
    assert 29 * 60 < lifetime <= 30 * 60, f"exp should be 30 minutes from now, not {lifetime / 60:.1f}"


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(client: AsyncClient) -> None:
    await new_user(client)
    for username, password in [("ada", "wrong password!"), ("nobody", "correct horse battery"), ("a\x00b", "x" * 9)]:
        response = await client.post("/token", data={"username": username, "password": password}, headers=NO_TOKEN)
        route_exists(response, "POST /token")
        assert response.status_code == 401, (
            f"logging in as {username!r} (a user that does not exist) should be a 401, not {response.status_code}"
            + (": no user has a NUL in their name, and PostgreSQL cannot compare one" if "\x00" in username else "")
        )
        assert response.json() == {"detail": "Wrong username or password"}, "the goal gives the exact detail"
        assert response.headers.get("www-authenticate") == "Bearer", "a 401 says how to log in: WWW-Authenticate"


async def test_an_unknown_user_takes_as_long_as_a_wrong_password(client: AsyncClient) -> None:
    await new_user(client)
    took: dict[str, list[float]] = {"ada": [], "nobody": []}
    for _ in range(3):  # in turns, so that a busy moment of the machine slows both
        for username in took:
            start = time.perf_counter()
            await client.post("/token", data={"username": username, "password": "wrong password!"}, headers=NO_TOKEN)
            took[username].append(time.perf_counter() - start)
    wrong, unknown = statistics.median(took["ada"]), statistics.median(took["nobody"])
    assert wrong / 4 < unknown < wrong * 4, (
        f"a wrong password takes {wrong * 1000:.0f} ms, an unknown username {unknown * 1000:.0f} ms (medians of 3): "
        "so the time tells which usernames exist. For an unknown user, check the password against a dummy hash"
    )


async def test_writes_without_a_good_token_are_401(client: AsyncClient) -> None:
    jwt, key = jwt_module(), secret_key()
    user = await new_user(client)
    now = datetime.datetime.now(datetime.UTC)
    later, earlier = now + datetime.timedelta(minutes=5), now - datetime.timedelta(seconds=1)
    tokens = {
        "no token": NO_TOKEN,
        "a garbage token": bearer("garbage"),
        "an expired token": bearer(jwt.encode({"sub": str(user["id"]), "exp": earlier}, key)),
        "a token signed with another key": bearer(jwt.encode({"sub": str(user["id"]), "exp": later}, "x" * 40)),
        "a token for a user who does not exist": bearer(jwt.encode({"sub": "999", "exp": later}, key)),
        "a token without exp": bearer(jwt.encode({"sub": str(user["id"])}, key)),
        "a token without sub": bearer(jwt.encode({"exp": later}, key)),
        "a token whose sub is a huge number": bearer(jwt.encode({"sub": "9" * 30, "exp": later}, key)),
        "a token whose sub is negative": bearer(jwt.encode({"sub": "-1", "exp": later}, key)),
        "a token whose sub is not a number": bearer(jwt.encode({"sub": "ada", "exp": later}, key)),
    }
    for what, headers in tokens.items():
        for body, response in [
            ("", await client.post("/books", json=HOBBIT, headers=headers)),
            (" and a broken body", await client.post("/books", content="{not json", headers=headers | BROKEN)),
        ]:
            assert response.status_code == 401, (
                f"POST /books with {what}{body} should be a 401, not {response.status_code} (see the goal: the "
                "token is checked first, and a token is read as strictly as a request)"
            )
            assert response.headers.get("www-authenticate") == "Bearer", f"{what}: add WWW-Authenticate: Bearer"
    assert (await client.get("/books")).json() == [], "no book may have been stored"


async def test_reading_needs_no_token(client: AsyncClient) -> None:
    assert (await client.get("/books", headers=NO_TOKEN)).status_code == 200, "reads stay open"


async def test_a_login_sent_as_json_is_told_to_send_a_form(client: AsyncClient) -> None:
    response = await client.post("/token", json=ADA, headers=NO_TOKEN)
    route_exists(response, "POST /token")
    assert response.status_code == 422, f"POST /token with a JSON body should be a 422, not {response.status_code}"
    messages = " ".join(str(problem.get("msg", "")) for problem in response.json()["detail"])
    assert "form" in messages, f"the 422 should say to send a form, not only {messages!r} (see the goal)"


@pytest.mark.parametrize("path", ["/token", "/users"])
async def test_reads_stay_fast_while_passwords_are_hashed(client: AsyncClient, path: str) -> None:
    await new_user(client)
    names = itertools.count()

    def hashing() -> Any:  # a wrong-password login, or a sign-up of a new user: each hashes a password once
        if path == "/token":
            return client.post("/token", data=WRONG, headers=NO_TOKEN)
        return client.post("/users", json={"username": f"user{next(names)}", "password": "x" * 12}, headers=NO_TOKEN)

    async def timed() -> float:
        start = time.perf_counter()
        await hashing()
        return time.perf_counter() - start

    one = statistics.median([await timed() for _ in range(3)])
    size = min(300, max(50, math.ceil(10 / one)))  # about 10 s of hashing on one CPU, more on a fast machine
    flood = [asyncio.create_task(hashing()) for _ in range(size)]
    start = time.perf_counter()
    await asyncio.sleep(0.5)  # the requests reach the app first, and their hashing begins
    slowest = time.perf_counter() - start - 0.5  # longer than asked: hashing blocked the event loop, and every client
    try:
        while not all(request.done() for request in flood) and slowest <= READ_BOUND:
            start = time.perf_counter()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.get("/books", headers=NO_TOKEN), READ_BOUND)
            slowest = max(slowest, time.perf_counter() - start)
            await asyncio.sleep(0.05)
    finally:
        for login in flood:
            login.cancel()
        answers = await asyncio.gather(*flood, return_exceptions=True)
    assert slowest <= READ_BOUND, (
        f"while {size} POST {path} were hashing passwords at once, a read waited {slowest:.1f} s, over"
        f" {READ_BOUND:.0f} s (one alone takes {one * 1000:.0f} ms). Hash in a thread, never on the event loop; give"
        " the database connection back before hashing (or hash before using one); and run no more hashes at once"
        " than the machine has CPUs (see the goal)"
    )
    statuses = sorted({answer.status_code for answer in answers if isinstance(answer, Response)})
    done = 401 if path == "/token" else 201
    assert set(statuses) <= {done, 503}, f"the flood of POST {path} got {statuses}: each should be {done} (or 503)"
    assert done in statuses, f"no POST {path} of the flood was served: each is a {done}, unless the server is busy"
    busy = [answer for answer in answers if isinstance(answer, Response) and answer.status_code == 503]
    assert all(answer.headers.get("retry-after") for answer in busy), "a 503 says when to try again: Retry-After"


async def test_the_documentation_lists_every_answer(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path, method, statuses in [
        ("/users", "post", {"201", "409", "422"}),
        ("/token", "post", {"200", "401", "422"}),
        ("/books", "post", {"401"}),
        ("/books/{book_id}", "put", {"401"}),
        ("/books/{book_id}", "patch", {"401"}),
        ("/books/{book_id}", "delete", {"401"}),
    ]:
        documented = set(paths.get(path, {}).get(method, {}).get("responses", {}))
        missing = sorted(statuses - documented)
        assert not missing, f"/openapi.json should list {missing} for {method.upper()} {path} (see the goal)"
    login = paths["/token"]["post"]["responses"]["401"].get("content", {}).get("application/json", {})
    assert login.get("example") == {"detail": "Wrong username or password"}, (
        f"the example of POST /token's 401 should be the detail it answers, not {login.get('example')}"
    )
    taken = paths["/users"]["post"]["responses"]["409"].get("content", {}).get("application/json", {})
    assert "isbn" not in json.dumps(taken.get("example")), "the example of POST /users' 409 is about a username"
    schemes = document.get("components", {}).get("securitySchemes", {}).values()
    assert any(scheme.get("type") == "oauth2" for scheme in schemes), "/docs needs OAuth2PasswordBearer's scheme"
    assert paths["/books"]["post"].get("security"), "POST /books should name the security scheme it needs"
    assert not paths["/books"]["get"].get("security"), "GET /books needs no token: no security requirement"


def test_the_learners_suite_has_a_fake_user_test_that_passes(tmp_path: Path) -> None:
    name = "test_a_fake_user_can_write_without_a_token"
    result = run_with_probe(name, tmp_path / "report.json", ignore_overrides=False)
    assert "not found" not in result.stdout + result.stderr, f"add {name} to test_main.py (see the goal)"
    assert result.returncode == 0, f"{name} fails:\n{result.stdout[-2000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["require_user_replaced"] >= 1, (
        f"{name} passes, but never replaces main.require_user in main.app.dependency_overrides: make it return a "
        "user there (see the goal)"
    )
    still_passes = run_with_probe(name, tmp_path / "ignored.json", ignore_overrides=True).returncode == 0
    assert not still_passes, (
        f"{name} passes even when its replacement of require_user does nothing, so it does not test it: write "
        'with an empty Authorization header (headers={"Authorization": ""}), then expect the 201'
    )
