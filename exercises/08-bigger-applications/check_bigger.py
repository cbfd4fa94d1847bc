"""Checker for exercise 8, bigger applications: python -m pytest exercises/08-bigger-applications/check_bigger.py

It compares your package with main.py: `uvicorn main:app` and `uvicorn app.main:app` each run on an empty database
of their own (with TEST_DATABASE_URL set, on that PostgreSQL server), get the same requests, and must give the same
answers. Each test checks one line of the goal in exercises/08-bigger-applications/README.md, and says what to do
when it fails.
"""

import ast
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "app"
SERVER_URL = os.getenv("TEST_DATABASE_URL")  # a PostgreSQL server, or None for SQLite files
SETTINGS = ("DATABASE_URL", "API_KEY", "DEMO_BOOKS", "SQL_ECHO")
REFERENCE, YOURS = "main:app", "app.main:app"
GOAL = "exercises/08-bigger-applications/README.md"
PRIDE = {"title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813, "isbn": "0-14-143951-3"}
EMMA = {"title": "Emma", "author": "Jane Austen", "year": 1815}
JSON = {"Content-Type": "application/json"}


# --- The package and main.py -----------------------------------------------------------------------------------------
def need_package() -> None:
    if not (PACKAGE / "__init__.py").is_file():
        pytest.fail(
            "no package app/ yet: make a folder app/ with an __init__.py beside main.py, then move main.py's code into"
            f" modules of it, with `app` in app/main.py (see the goal in {GOAL})"
        )
    if not (ROOT / "main.py").is_file():
        pytest.fail("main.py is gone: the checker compares your package with it. Bring it back: git checkout main.py")
    for node in ast.walk(ast.parse((ROOT / "main.py").read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(name == "app" or name.startswith("app.") for name in names):
            pytest.fail(
                "main.py imports from app: the checker compares your package with the one-file main.py, so keep"
                " main.py as it was (git checkout main.py) until the checker passes"
            )


def modules() -> dict[str, Path]:
    """Every module of the package, by its dotted name: app, app.main, app.routers, app.routers.books..."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that a module imports (anywhere in it, relative or absolute), and the packages above
    them, whose __init__.py Python runs first."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from app import settings`: a module
    reached = set()
    for target in targets:
        parts = target.split(".")
        reached.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    return reached - {name}


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One chain of imports that leads back to where it started, or []."""
    done: set[str] = set()

    def walk(name: str, chain: list[str]) -> list[str]:
        if name in chain:
            return [*chain[chain.index(name) :], name]
        if name in done:
            return []
        for target in sorted(graph[name]):
            if cycle := walk(target, [*chain, name]):
                return cycle
        done.add(name)
        return []

    return next((cycle for name in sorted(graph) if (cycle := walk(name, []))), [])


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without the app's settings (yours may be set in your shell), plus those given."""
    return {key: value for key, value in os.environ.items() if key not in SETTINGS} | settings


# --- Two servers, the same requests ----------------------------------------------------------------------------------
def admin(statements: list[str], database: str | None = None) -> Any:
    """Runs statements on the PostgreSQL server of TEST_DATABASE_URL (or on one of its databases), one by one, and
    gives what the last one returns."""

    async def run() -> Any:
        url = make_url(SERVER_URL or "")
        engine = create_async_engine(url.set(database=database) if database else url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    result = await connection.execute(text(statement))
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(run())


class Server:
    """`python -m uvicorn TARGET --http h11` on a Unix socket (no port to collide with), in a folder of its own, on an
    empty database of its own: a SQLite file ./books.db in that folder (so both servers name it alike), or a new
    database on the PostgreSQL server."""

    def __init__(self, target: str, settings: dict[str, str]) -> None:
        self.target = target
        self.folder = Path(tempfile.mkdtemp(prefix="bookapi-check8-"))
        self.socket = str(self.folder / "uvicorn.sock")
        self.database = f"bookapi_check8_{uuid.uuid4().hex[:12]}" if SERVER_URL else ""
        if SERVER_URL:
            admin([f'CREATE DATABASE "{self.database}"'])
            url = make_url(SERVER_URL).set(database=self.database).render_as_string(hide_password=False)
        else:
            url = "sqlite+aiosqlite:///./books.db"
        command = [sys.executable, "-m", "uvicorn", target, "--uds", self.socket, "--http", "h11", "--no-access-log"]
        self.log = open(self.folder / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [*command, "--app-dir", str(ROOT)],
            cwd=self.folder,
            env=clean_environment(DATABASE_URL=url, **settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # A new connection for each request: after a 500, uvicorn closes the one it came on.
        transport = httpx.HTTPTransport(uds=self.socket, limits=httpx.Limits(max_keepalive_connections=0))
        self.client = httpx.Client(transport=transport, base_url="http://books", timeout=20)

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            with suppress(httpx.TransportError):
                if self.client.get("/health").status_code == 200:
                    return
            time.sleep(0.2)
        said = "\n".join(self.output().splitlines()[-12:])
        pytest.fail(f"`uvicorn {self.target}` did not start (GET /health never answered 200). It said:\n{said}")

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
        if SERVER_URL:
            admin([f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'])
        shutil.rmtree(self.folder, ignore_errors=True)

    def raw(self, request: bytes) -> bytes:
        """Sends bytes as they are (what httpx would not send); reads the answer until it is whole, or closed."""
        received = b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(20)
            connection.connect(self.socket)
            with suppress(OSError):  # a server that refuses a large body closes before reading it all
                connection.sendall(request)
            with suppress(OSError):
                while chunk := connection.recv(65536):
                    received += chunk
                    head, _, body = received.partition(b"\r\n\r\n")
                    length = re.search(rb"(?im)^content-length: *(\d+)", head)
                    if length and len(body) >= int(length.group(1)):
                        break
        return received


Answer = tuple[int, list[tuple[str, str]], Any]


def answer(response: httpx.Response) -> Answer:
    """What a client sees: the status, every header but the date, and the body (as JSON where it is JSON)."""
    headers = sorted((name, value) for name, value in response.headers.multi_items() if name != "date")
    try:
        body: Any = response.json() if response.content else b""
    except ValueError:
        body = response.content
    return response.status_code, headers, body


def raw_answer(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    headers = sorted(tuple(line.lower().split(": ", 1)) for line in lines[1:] if not line.lower().startswith("date:"))
    return status, headers, body  # type: ignore[return-value]


def differences(reference: Any, yours: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ, as paths such as paths./books.get.description."""
    if isinstance(reference, dict) and isinstance(yours, dict):
        found = []
        for key in [*reference, *(key for key in yours if key not in reference)]:
            inner = f"{where}.{key}" if where else str(key)
            if key not in yours:
                found.append(f"{inner} is missing")
            elif key not in reference:
                found.append(f"{inner} is there, and not in main.py's")
            else:
                found += differences(reference[key], yours[key], inner)
        return found
    if isinstance(reference, list) and isinstance(yours, list) and len(reference) == len(yours):
        return [
            line
            for i, (a, b) in enumerate(zip(reference, yours, strict=True))
            for line in differences(a, b, f"{where}[{i}]")
        ]
    return (
        [] if reference == yours else [f"{where or 'the body'}: main.py has {short(reference)}, yours {short(yours)}"]
    )


def short(value: Any) -> str:
    shown = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False)
    shown = repr(shown) if isinstance(shown, bytes) else shown
    return shown if len(shown) <= 240 else shown[:237] + "..."


def same(reference: Answer, yours: Answer, request: str) -> None:
    """Fails, saying what differs, unless both answers are the same."""
    problems = [f"main.py answers {reference[0]}, yours {yours[0]}"] if reference[0] != yours[0] else []
    in_body = differences(reference[2], yours[2])
    ours, theirs = dict(reference[1]), dict(yours[1])
    for name in sorted((ours.keys() | theirs.keys()) - ({"content-length"} if in_body else set())):  # it follows
        if ours.get(name) != theirs.get(name):
            problems.append(f"header {name}: main.py sends {ours.get(name)!r}, yours {theirs.get(name)!r}")
    problems += in_body
    if problems:
        pytest.fail(f"{request} answered differently:\n  " + "\n  ".join(problems[:8]))


class Pair:
    """main.py's server and your package's, started alike; each request goes to both, and the answers must match."""

    def __init__(self, reference: Server, yours: Server) -> None:
        self.reference, self.yours = reference, yours

    def send(self, method: str, path: str, **options: Any) -> None:
        responses = [server.client.request(method, path, **options) for server in (self.reference, self.yours)]
        same(answer(responses[0]), answer(responses[1]), f"{method} {path}")

    def raw(self, request: bytes, what: str) -> None:
        same(raw_answer(self.reference.raw(request)), raw_answer(self.yours.raw(request)), what)


@contextmanager
def pair(**settings: str) -> Iterator[Pair]:
    """Starts both servers with these settings, and stops them (and drops their databases) afterwards."""
    need_package()
    with ExitStack() as stack:
        servers = []
        for target in (REFERENCE, YOURS):
            servers.append(server := Server(target, settings))
            stack.callback(server.stop)
        for server in servers:
            server.wait_until_ready()
        yield Pair(*servers)


@pytest.fixture(scope="module")
def servers() -> Iterator[Pair]:
    """The two servers as configured by default, for the tests below that share them (in this order)."""
    with pair() as started:
        yield started


# --- The goal, line by line ------------------------------------------------------------------------------------------
def test_app_main_has_the_app() -> None:
    need_package()
    if not (PACKAGE / "main.py").is_file():
        pytest.fail("no app/main.py yet: make it, with `app`, the FastAPI application that the other modules make up")
    probe = (
        "import sys, fastapi, app.main; sys.exit(0 if isinstance(getattr(app.main, 'app', 0), fastapi.FastAPI) else 3)"
    )
    with tempfile.TemporaryDirectory() as folder:
        environment = clean_environment(DATABASE_URL=f"sqlite+aiosqlite:///{folder}/books.db")
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
        )
    if result.returncode == 3:
        pytest.fail(
            "app.main has no `app`: app/main.py should make the FastAPI application, `app = FastAPIOffline(...)`"
        )
    assert result.returncode == 0, f"importing app.main fails:\n{result.stderr[-1500:]}"


def test_no_import_cycles_and_no_module_imports_app_main() -> None:
    need_package()
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    importers = sorted(name for name, targets in graph.items() if "app.main" in targets)
    assert not importers, (
        f"{', '.join(importers)} imports app.main: app.main is the top, which puts the others together; move what"
        " they need from it into a module of its own that both import"
    )
    cycle = a_cycle(graph)
    assert not cycle, (
        f"an import cycle: {' imports '.join(cycle)}. Move what the two need of each other into a module that"
        " imports neither (settings, models and schemas import nothing of the package's routes)"
    )


def test_each_module_can_be_imported_alone() -> None:
    need_package()
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(4) as pool:  # 4 new interpreters at a time
        environment = clean_environment(DATABASE_URL=f"sqlite+aiosqlite:///{folder}/books.db")

        def alone(name: str) -> str:
            command = [sys.executable, "-c", f"import {name}"]
            result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
            said = result.stderr.strip().splitlines()[-1:] or ["(nothing)"]
            return f"`import {name}` in a new interpreter fails: {said[0]}" if result.returncode else ""

        failed = [problem for problem in pool.map(alone, modules()) if problem]
    assert not failed, "\n".join(failed)


def test_the_same_openapi_json_and_docs(servers: Pair) -> None:
    servers.send("GET", "/openapi.json")
    servers.send("GET", "/docs")
    servers.send("GET", "/health")


def test_the_readme_tour_answers_the_same(servers: Pair) -> None:
    servers.send("POST", "/books", json=PRIDE)
    servers.send("POST", "/books", json=EMMA)
    servers.send("GET", "/books/2")
    servers.send("GET", "/books", params={"author": "jane austen", "sort": "-year"})
    servers.send("PATCH", "/books/2", json={"year": 1816})
    servers.send("POST", "/books", json={"title": "", "author": "Jane Austen", "year": 18130})
    servers.send("DELETE", "/books/2")
    servers.send("GET", "/books/2")


def test_the_errors_answer_the_same(servers: Pair) -> None:
    servers.send("PUT", "/books/1", json={**EMMA, "isbn": "978-0-14-143958-7"})
    servers.send("PUT", "/books/99", json=EMMA)
    servers.send("POST", "/books", json={**PRIDE, "isbn": "9780141439587"})  # the isbn book 1 has now: 409
    servers.send("POST", "/books", json={**PRIDE, "id": 7})
    servers.send("PATCH", "/books/1", json={"isbn": None})
    servers.send("PATCH", "/books/1", json={})
    servers.send("PATCH", "/books/99", json={})
    servers.send("GET", "/books", params={"q": "EMM", "limit": 1, "offset": 0})
    for params in ({"limit": 0}, {"sort": "price"}, {"year_from": "1.5"}):
        servers.send("GET", "/books", params=params)
    for book_id in ("0", "abc", str(2**63)):
        servers.send("GET", f"/books/{book_id}")
    servers.send("POST", "/books", content=json.dumps(EMMA), headers={"Content-Type": "text/plain"})
    servers.send("POST", "/books", content="{not json", headers=JSON)
    servers.send("POST", "/books", content="[" * 5000 + "]" * 5000, headers=JSON)
    servers.send("GET", "/nowhere")
    servers.send("GET", "/books/")
    servers.send("DELETE", "/books")
    servers.send("HEAD", "/books/1")
    servers.send("GET", "/books/1", headers={"Range": "bytes=0-10"})


def test_the_guard_answers_the_same(servers: Pair) -> None:
    both = b"POST /books HTTP/1.1\r\nHost: books\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    servers.raw(both, "a request with both Content-Length and Transfer-Encoding")
    websocket = (
        b"GET /books HTTP/1.1\r\nHost: books\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    servers.raw(websocket, "a WebSocket handshake")
    announced = (
        b"POST /books HTTP/1.1\r\nHost: books\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
    )
    servers.raw(announced + b"{", "POST /books announcing a body of 2 MB")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    chunked = (
        b"PUT /books/1 HTTP/1.1\r\nHost: books\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    servers.raw(chunked + chunk * 18 + b"0\r\n\r\n", "PUT /books/1 with a chunked body over 1 MiB")
    servers.send("GET", "/books/1")  # unchanged


def test_a_bug_and_an_outage_answer_the_same(servers: Pair) -> None:
    for server in (servers.reference, servers.yours):  # a table that does not match the code: a bug, a 500
        if SERVER_URL:
            admin(["DROP TABLE books"], server.database)
        else:
            with sqlite3.connect(server.folder / "books.db") as connection:
                connection.execute("DROP TABLE books")
    servers.send("GET", "/books/1")
    for server in (servers.reference, servers.yours):  # the database goes: 503s
        if SERVER_URL:
            admin(
                [
                    f'ALTER DATABASE "{server.database}" ALLOW_CONNECTIONS false',
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{server.database}'",
                ]
            )
            deadline = time.monotonic() + 30  # until each connection has ended, which takes the server a moment
            count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{server.database}'"
            while admin([count]) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            for suffix in ("", "-wal", "-shm"):
                (server.folder / f"books.db{suffix}").unlink(missing_ok=True)
    servers.send("GET", "/health")
    servers.send("GET", "/books")
    servers.send("POST", "/books", json=EMMA)


def test_with_api_key_demo_books_and_sql_echo_the_same() -> None:
    with pair(API_KEY="s3cret", DEMO_BOOKS="1", SQL_ECHO="1") as servers:
        servers.send("GET", "/openapi.json")
        servers.send("GET", "/books")
        servers.send("POST", "/books", json=EMMA)
        servers.send("POST", "/books", json=EMMA, headers={"X-API-Key": "wrong"})
        servers.send("POST", "/books", content="{not json", headers=JSON)
        servers.send("POST", "/books", json=EMMA, headers={"X-API-Key": "s3cret"})
        servers.send("PATCH", "/books/1", json={"year": 1814}, headers={"X-API-Key": "s3cret"})
        servers.send("DELETE", "/books/2")
        servers.send("DELETE", "/books/2", headers={"X-API-Key": "s3cret"})
        servers.send("GET", "/books/2")
        servers.send("GET", "/health")


def refusal(target: str, **settings: str) -> tuple[int | None, list[str]]:
    """How `uvicorn TARGET` refuses to start: its exit status, and what it said after any traceback. None if it
    started after all (it made its socket), or was still running after a minute."""
    with tempfile.TemporaryDirectory(prefix="bookapi-check8-") as folder:
        command = [sys.executable, "-m", "uvicorn", target, "--uds", f"{folder}/uvicorn.sock", "--app-dir", str(ROOT)]
        with open(f"{folder}/server.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=folder, env=clean_environment(**settings), stdout=log, stderr=subprocess.STDOUT
            )
            deadline = time.monotonic() + 60
            while (
                process.poll() is None and not Path(f"{folder}/uvicorn.sock").exists() and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            if process.poll() is None:  # it serves: stop it
                process.terminate()
                process.wait(30)
                return None, []
        lines = [line for line in Path(f"{folder}/server.log").read_text(errors="replace").splitlines() if line.strip()]
    ends = [
        i for i, line in enumerate(lines) if re.match(r"\(Background on this error|[\w.]+(Error|Exception): ", line)
    ]
    return process.returncode, lines[ends[-1] + 1 :] if ends else lines[-3:]


@pytest.mark.parametrize(
    "settings",
    [
        {"API_KEY": ""},
        {"API_KEY": " s3cret"},
        {"DATABASE_URL": "books.db"},
        {"DATABASE_URL": "sqlite+aiosqlite:///./no-such-folder/books.db"},
    ],
    ids=["API_KEY empty", "API_KEY with a space", "DATABASE_URL not a URL", "DATABASE_URL in no folder"],
)
def test_start_up_refusals_are_the_same(settings: dict[str, str]) -> None:
    need_package()
    reference, yours = refusal(REFERENCE, **settings), refusal(YOURS, **settings)
    shown = " ".join(f"{key}={value!r}" for key, value in settings.items())
    assert reference[0] not in (0, None), f"main.py started with {shown}: is it as it was? (git checkout main.py)"
    assert yours[0] not in (0, None), (
        f"with {shown}, `uvicorn app.main:app` started: main.py refuses, saying {reference[1]}"
    )
    assert yours[1] == reference[1], (
        f"with {shown}, `uvicorn app.main:app` refuses to start saying {yours[1]}, not as main.py: {reference[1]}"
    )


def test_the_learners_suite_passes_against_the_package() -> None:
    without_main = "import sys, pytest; sys.modules['main'] = None; sys.exit(pytest.main(['-q']))"  # import main fails
    result = subprocess.run(
        [sys.executable, "-c", without_main],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = result.stdout[-2500:]
    if "import of main halted" in result.stdout:
        pytest.fail(
            "the learners' suite still imports main.py: make test_main.py and conftest.py import from your package"
            " (`from app.main import app`, `from app import settings`...), never `import main`"
        )
    assert result.returncode != 5, "the learners' suite ran no test: python -m pytest must find test_main.py"
    assert result.returncode == 0, f"the learners' suite fails against your package (python -m pytest):\n{said}"
