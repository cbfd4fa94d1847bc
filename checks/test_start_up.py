"""Start-up, in new processes: what main.py does with each setting before it serves a request.

    python -m pytest checks/test_start_up.py

Each test starts Python or uvicorn afresh, in an empty folder, so that the settings are read as a learner's shell
would give them. (They take a few seconds each, which is why they are not in the learners' suite.)
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from common import ROOT, Server, fresh_database


def run_python(code: str, folder: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a new process, in `folder`, with main.py importable and these settings (and no others)."""
    env = {key: value for key, value in os.environ.items() if key not in {"API_KEY", "SQL_ECHO", "DEMO_BOOKS"}}
    env |= {"PYTHONPATH": str(ROOT), **settings}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def start_uvicorn(folder: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(ROOT), "--port", "0"]
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def test_importing_main_touches_no_database(tmp_path: Path) -> None:
    assert run_python("import main", tmp_path, DATABASE_URL="sqlite+aiosqlite:///./books.db").returncode == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "sqlite:///books.db",
        "postgresql://u@localhost/db",
        "nosuchdb+driver://u@h/db",
        "sqlite+aiosqlite://",
    ],
)
def test_a_bad_database_url_says_what_to_use_instead(url: str, tmp_path: Path) -> None:
    result = run_python("import main", tmp_path, DATABASE_URL=url)
    assert result.returncode == 1
    assert re.search(r"DATABASE_URL=.* cannot be used .* sqlite\+aiosqlite:///\./books\.db", result.stderr)


@pytest.mark.parametrize("problem", ["not a database", "a folder", "a missing folder"])
def test_a_database_file_that_cannot_be_used_says_what_to_check(tmp_path: Path, problem: str) -> None:
    path = {"not a database": tmp_path / "books.db", "a folder": tmp_path, "a missing folder": tmp_path / "no" / "x.db"}
    path["not a database"].write_bytes(b"these are not the pages of a database " * 200)
    result = start_uvicorn(tmp_path, f"sqlite+aiosqlite:///{path[problem]}")
    assert result.returncode != 0
    assert re.search(r"Cannot use the database at DATABASE_URL=\S+\. Check that it exists", result.stderr)


@pytest.mark.parametrize("key", ["", " ", "s3cret ", "\ts3cret", "clé", "line\nbreak"])
def test_an_api_key_that_no_client_could_send_refuses_to_start(tmp_path: Path, key: str) -> None:
    result = run_python("import main", tmp_path, API_KEY=key)
    assert result.returncode == 1
    assert "API_KEY must be ASCII letters, digits and punctuation, with no spaces around it" in result.stderr


def test_sql_echo_prints_the_sql(tmp_path: Path) -> None:
    code = "import asyncio, main\nasyncio.run(main.app.router.lifespan_context(main.app).__aenter__())"
    result = run_python(code, tmp_path, SQL_ECHO="1", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/b.db")
    assert "CREATE TABLE IF NOT EXISTS books" in result.stdout + result.stderr


def test_with_sql_echo_each_response_names_the_sql_it_ran_and_no_value() -> None:
    with fresh_database() as database_url, Server(database_url, env={"SQL_ECHO": "1"}) as server:
        created = httpx.post(f"{server.url}/books", json={"title": "Emma", "author": "Jane Austen", "year": 1815})
        assert created.headers["x-sql"].startswith("BEGIN (implicit); INSERT INTO books (title, author, year")
        assert created.headers["x-sql"].endswith("; COMMIT") and "Emma" not in created.headers["x-sql"]
        read = httpx.get(f"{server.url}/books/1")
        assert read.headers["x-sql"].startswith("BEGIN (implicit); SELECT books.id, books.title")
        assert read.headers["x-sql"].endswith("; ROLLBACK")  # closing the session ends its transaction
        patched = httpx.patch(f"{server.url}/books/1", json={"year": 1816})
        assert patched.headers["x-sql"] == (
            "BEGIN (implicit); UPDATE books SET year=? WHERE books.id = ? "
            "RETURNING id, title, author, year, isbn, title_folded, author_folded; COMMIT"
        )
        deleted = httpx.delete(f"{server.url}/books/1")
        assert deleted.status_code == 204
        assert deleted.headers["x-sql"] == "BEGIN (implicit); DELETE FROM books WHERE books.id = ? RETURNING id; COMMIT"
        many = httpx.get(f"{server.url}/books", params={"q": "x" * 200})  # a long statement is cut, not refused
        assert len(many.headers["x-sql"]) <= 4000


def test_without_sql_echo_no_response_carries_sql() -> None:
    with fresh_database() as database_url, Server(database_url) as server:
        assert "x-sql" not in httpx.post(f"{server.url}/books", json={"title": "E", "author": "A", "year": 1}).headers


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_spaces_around_an_api_key_are_not_part_of_it(parser: str) -> None:
    """Spaces and tabs around a header's value are not part of it (RFC 9110, 5.5): h11 drops them, httptools keeps
    those after it, and require_api_key strips them. Raw bytes, so that no client tidies them first."""
    body = b'{"title": "Emma", "author": "Jane Austen", "year": 1815}'
    with fresh_database() as database_url:
        server = Server(database_url, env={"API_KEY": "s3cret"}, extra_args=["--http", parser])
        with server:
            for key, expected in [(b" s3cret ", b" 201 "), (b"\ts3cret\t", b" 201 "), (b"s3cret-", b" 401 ")]:
                head = b"POST /books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                head += b"X-API-Key:" + key + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
                    connection.sendall(head + body)
                    assert expected in connection.recv(200).split(b"\r\n")[0] + b" ", key


@pytest.mark.parametrize("key", [None, "s3cret"])
def test_the_document_describes_the_api_key_only_when_the_server_needs_one(tmp_path: Path, key: str | None) -> None:
    code = "import json, main; print(json.dumps(main.app.openapi()))"
    result = run_python(
        code, tmp_path, DATABASE_URL="sqlite+aiosqlite:///./books.db", **({"API_KEY": key} if key else {})
    )
    document = json.loads(result.stdout)
    operations = {(path, method): op for path, ops in document["paths"].items() for method, op in ops.items()}
    writes = {name for name in operations if name[1] in {"post", "put", "patch", "delete"}}
    for name, operation in operations.items():
        needs_key = key is not None and name in writes
        assert operation["security"] == ([{"APIKeyHeader": []}] if needs_key else []), name
        assert ("401" in operation["responses"]) == needs_key, name
    assert ("securitySchemes" in document["components"]) == (key is not None)
    assert ("Authorize" in document["info"]["description"]) == (key is not None)
