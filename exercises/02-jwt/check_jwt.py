"""Checker for exercise 2, JWT logins: python -m pytest exercises/02-jwt/check_jwt.py"""

import datetime

import jwt
from httpx import AsyncClient
from sqlalchemy import text

import main
from test_main import HOBBIT, create

ADA = {"username": "ada", "password": "correct horse battery"}
NO_TOKEN = {"Authorization": ""}  # replaces whatever token the client fixture sends


async def log_in(client: AsyncClient, username: str = "ada", password: str = "correct horse battery") -> str:
    response = await client.post("/token", data={"username": username, "password": password}, headers=NO_TOKEN)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_is_created_without_a_token(client: AsyncClient) -> None:
    response = await client.post("/users", json=ADA, headers=NO_TOKEN)
    assert response.status_code == 201
    assert response.json() == {"id": response.json()["id"], "username": "ada"}


async def test_a_username_is_taken_once(client: AsyncClient) -> None:
    await client.post("/users", json=ADA, headers=NO_TOKEN)
    response = await client.post("/users", json={**ADA, "password": "another long one"}, headers=NO_TOKEN)
    assert response.status_code == 409
    assert "ada" in response.json()["detail"]


async def test_short_passwords_are_refused(client: AsyncClient) -> None:
    response = await client.post("/users", json={"username": "bob", "password": "1234567"}, headers=NO_TOKEN)
    assert response.status_code == 422


async def test_passwords_are_stored_as_argon2_hashes(client: AsyncClient) -> None:
    await client.post("/users", json=ADA, headers=NO_TOKEN)
    async with main.engine.connect() as connection:
        stored = await connection.scalar(text("SELECT password_hash FROM users WHERE username = 'ada'"))
    assert stored.startswith("$argon2") and ADA["password"] not in stored


async def test_a_token_lets_a_user_write(client: AsyncClient) -> None:
    await client.post("/users", json=ADA, headers=NO_TOKEN)
    token = await log_in(client)
    response = await client.post("/books", json=HOBBIT, headers=bearer(token))
    assert response.status_code == 201


async def test_the_token_names_the_user_and_expires_in_30_minutes(client: AsyncClient) -> None:
    user = (await client.post("/users", json=ADA, headers=NO_TOKEN)).json()
    claims = jwt.decode(await log_in(client), main.SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(user["id"])
    lifetime = claims["exp"] - datetime.datetime.now(datetime.UTC).timestamp()
    assert 29 * 60 < lifetime <= 30 * 60


async def test_wrong_password_and_unknown_user_get_the_same_401(client: AsyncClient) -> None:
    await client.post("/users", json=ADA, headers=NO_TOKEN)
    for username, password in [("ada", "wrong password!"), ("nobody", "correct horse battery")]:
        response = await client.post("/token", data={"username": username, "password": password}, headers=NO_TOKEN)
        assert response.status_code == 401
        assert response.json() == {"detail": "Wrong username or password"}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_writes_without_a_good_token_are_401(client: AsyncClient) -> None:
    user = (await client.post("/users", json=ADA, headers=NO_TOKEN)).json()
    now = datetime.datetime.now(datetime.UTC)
    expired = jwt.encode({"sub": str(user["id"]), "exp": now - datetime.timedelta(seconds=1)}, main.SECRET_KEY)
    forged = jwt.encode(
        {"sub": str(user["id"]), "exp": now + datetime.timedelta(minutes=5)},
        "a key that is not the server's, but as long as one",
    )
    no_such_user = jwt.encode({"sub": "999", "exp": now + datetime.timedelta(minutes=5)}, main.SECRET_KEY)
    for headers in [NO_TOKEN, bearer("garbage"), bearer(expired), bearer(forged), bearer(no_such_user)]:
        response = await client.post("/books", json=HOBBIT, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/books")).json() == []


async def test_reading_needs_no_token(client: AsyncClient) -> None:
    created = await create(client)
    assert (await client.get("/books", headers=NO_TOKEN)).json() == [created]
