"""main.py and its synchronous twin (checks/sync_twin.py) answer every request the same.

    python -m pytest checks/test_sync_twin.py

Both run under a real uvicorn, each on a new SQLite file, and get the same requests in the same order: every
route, its errors, and the list's filters and sorts. Any difference in status, body or the headers a client reads
fails the test, so the benchmark's sync peer is always main.py made synchronous, and nothing else.
"""

import ast
import re
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Server
from sync_twin import RUN_ONCE, write_twin

BOOKS = [
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "9780141439587"},
    {"title": "Dune", "author": "Frank Herbert", "year": 1965},
    {"title": "Jane Eyre", "author": "Charlotte Brontë", "year": 1847, "isbn": "978-0-14-144114-6"},
]
REQUESTS: list[tuple[str, str, Any]] = [
    *(("POST", "/books", book) for book in BOOKS),
    ("POST", "/books", BOOKS[0]),  # a duplicate isbn: 409
    ("POST", "/books", {"title": "", "author": "A", "year": 0}),  # 422
    ("GET", "/books", None),
    ("GET", "/books?q=jane&sort=-year", None),
    ("GET", "/books?author=JANE%20AUSTEN", None),
    ("GET", "/books?year_from=1800&year_to=1900&sort=title&limit=1&offset=1", None),
    ("GET", "/books/2", None),
    ("GET", "/books/42", None),
    ("GET", "/books/1.0", None),
    ("PUT", "/books/2", {"title": "Dune Messiah", "author": "Frank Herbert", "year": 1969}),
    ("PATCH", "/books/1", {"year": 1816}),
    ("PATCH", "/books/1", {}),
    ("PATCH", "/books/3", {"isbn": "9780141439587"}),  # another book's isbn: 409
    ("DELETE", "/books/3", None),
    ("DELETE", "/books/3", None),
    ("POST", "/books", BOOKS[2]),  # a new id, never 3 again
    ("GET", "/books?sort=id", None),
    ("GET", "/health", None),
    ("GET", "/nothing", None),
]
COMPARED_HEADERS = ("content-type", "location", "x-total-count")


def answers(server: Server) -> list[tuple[int, Any, dict[str, str]]]:
    seen = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, body in REQUESTS:
            response = client.request(method, path, json=body)
            headers = {name: response.headers.get(name, "") for name in COMPARED_HEADERS}
            seen.append((response.status_code, response.json() if response.content else None, headers))
    return seen


def test_the_sync_twin_answers_every_request_as_main_py_does(tmp_path: Path) -> None:
    twin = write_twin(tmp_path / "twin")
    with Server(f"sqlite+aiosqlite:///{tmp_path}/async.db", app_dir=ROOT) as server:
        expected = answers(server)
    with Server(f"sqlite+aiosqlite:///{tmp_path}/sync.db", app_dir=twin) as server:
        got = answers(server)
    differences = [(REQUESTS[i][:2], e, g) for i, (e, g) in enumerate(zip(expected, got, strict=True)) if e != g]
    assert differences == []
    assert {status for status, *_ in expected} >= {200, 201, 204, 404, 409, 422}, "the script covers every answer"


def test_no_async_function_of_the_twin_touches_the_database(tmp_path: Path) -> None:
    tree = ast.parse((write_twin(tmp_path) / "main.py").read_text())
    # The lifespans stay async (FastAPI enters them with `async with`), and block only once, at start-up and shutdown.
    functions = [
        node for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef) and node.name not in RUN_ONCE
    ]
    touching = [f.name for f in functions if re.search(r"\b(session|engine|SessionLocal)\b", ast.unparse(f))]
    assert touching == [], "add these to BLOCKING in checks/sync_twin.py (they use the database)"
    awaiting = [f.name for f in ast.walk(tree) if isinstance(f, ast.AsyncFunctionDef) and f.name in RUN_ONCE]
    assert all("await " not in ast.unparse(f) for f in ast.walk(tree) if getattr(f, "name", "") in awaiting)
