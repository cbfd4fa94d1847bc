"""Checker for exercise 2, JWT logins: python -m pytest exercises/02-jwt/check_jwt.py

Each test checks one line of the goal in exercises/02-jwt/README.md, and says what to do when it fails.
"""

import ast
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text

import main

ROOT = Path(__file__).resolve().parent.parent.parent
ADA = {"username": "ada", "password": "correct horse battery"}
HOBBIT = {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}
NO_TOKEN = {"Authorization": ""}  # replaces whatever token the client fixture sends


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


async def new_user(client: AsyncClient) -> dict[str, Any]:
    return expect(await client.post("/users", json=ADA, headers=NO_TOKEN), 201, "POST /users")


async def log_in(client: AsyncClient, username: str = "ada", password: str = "correct horse battery") -> str:
    form = {"username": username, "password": password}
    answer = expect(await client.post("/token", data=form, headers=NO_TOKEN), 200, "POST /token (a form)")
    assert answer.get("token_type") == "bearer", f'POST /token should answer "token_type": "bearer", not {answer}'
    return str(answer["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_is_created_without_a_token_and_shown_without_a_password(client: AsyncClient) -> None:
    user = await new_user(client)
    assert set(user) == {"id", "username"}, f"POST /users answers exactly id and username, not {sorted(user)}"
    assert user["username"] == "ada"


async def test_a_username_is_taken_once(client: AsyncClient) -> None:
    await new_user(client)
    again = await client.post("/users", json={**ADA, "password": "another long one"}, headers=NO_TOKEN)
    assert again.status_code == 409, f"a second user named ada should be a 409, not {again.status_code}"
    assert "ada" in again.json()["detail"], "the 409's detail should name the username that is taken"


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


async def test_a_token_lets_a_user_write(client: AsyncClient) -> None:
    await new_user(client)
    response = await client.post("/books", json=HOBBIT, headers=bearer(await log_in(client)))
    assert response.status_code == 201, f"a write with a fresh token should succeed, not {response.status_code}"


async def test_the_token_names_the_user_and_lasts_30_minutes(client: AsyncClient) -> None:
    user = await new_user(client)
    claims = jwt_module().decode(await log_in(client), secret_key(), algorithms=["HS256"])
    assert claims.get("sub") == str(user["id"]), "the claim sub is the user's id, as a string"
    lifetime = claims["exp"] - datetime.datetime.now(datetime.UTC).timestamp()
    assert 29 * 60 < lifetime <= 30 * 60, f"exp should be 30 minutes from now, not {lifetime / 60:.1f}"


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(client: AsyncClient) -> None:
    await new_user(client)
    for username, password in [("ada", "wrong password!"), ("nobody", "correct horse battery")]:
        response = await client.post("/token", data={"username": username, "password": password}, headers=NO_TOKEN)
        route_exists(response, "POST /token")
        assert response.status_code == 401, f"logging in as {username} with a wrong password: 401"
        assert response.json() == {"detail": "Wrong username or password"}, "the goal gives the exact detail"
        assert response.headers.get("www-authenticate") == "Bearer", "a 401 says how to log in: WWW-Authenticate"


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
    }
    for what, headers in tokens.items():
        response = await client.post("/books", json=HOBBIT, headers=headers)
        assert response.status_code == 401, f"POST /books with {what} should be a 401, not {response.status_code}"
        assert response.headers.get("www-authenticate") == "Bearer", f"{what}: add WWW-Authenticate: Bearer"
    broken = await client.post("/books", content="{not json", headers=NO_TOKEN | {"Content-Type": "application/json"})
    assert broken.status_code == 401, (
        f"a broken body without a token should be a 401 (token first), not {broken.status_code}"
    )
    assert (await client.get("/books")).json() == [], "no book may have been stored"


async def test_reading_needs_no_token(client: AsyncClient) -> None:
    assert (await client.get("/books", headers=NO_TOKEN)).status_code == 200, "reads stay open"


def test_the_learners_suite_has_a_fake_user_test_that_passes() -> None:
    name = "test_a_fake_user_can_write_without_a_token"
    tree = ast.parse((ROOT / "test_main.py").read_text())
    tests = [node for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)]
    test = next((node for node in tests if node.name == name), None)
    assert test is not None, f"add {name} to test_main.py (see the goal)"
    assigned = [
        ast.unparse(target) for node in ast.walk(test) if isinstance(node, ast.Assign) for target in node.targets
    ]
    assert "main.app.dependency_overrides[main.require_user]" in assigned, f"{name}: set that, as the goal says"
    dicts = [node for node in ast.walk(test) if isinstance(node, ast.Dict)]
    pairs = [pair for node in dicts for pair in zip(node.keys, node.values, strict=True)]
    empty = [(k.value, v.value) for k, v in pairs if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)]
    assert ("Authorization", "") in empty, f"{name}: send an empty Authorization header, as the goal says"
    command = [sys.executable, "-m", "pytest", "-q", f"test_main.py::{name}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name} fails:\n{result.stdout[-2000:]}"
