"""Outage check: what a client sees when the database, not the request, is at fault, and that nothing is lost.

    python checks/outage.py [--postgres]

SQLite, with a real `uvicorn main:app`:
- the database file is deleted while the API runs: every request, `/health` included, is a 503 saying the file was
  deleted or replaced, and no write is acknowledged (before the fix, writes were 201 and vanished at the restart);
- the database is read-only: reads are 200, writes a 503 saying "read-only", with nothing changed.
PostgreSQL (--postgres: a throwaway cluster of its own, which the check stops and starts again):
- the server stops: every route answers a JSON 503 with Retry-After within a few seconds (no 500, no dropped
  connection); once PostgreSQL is back, the API serves reads and writes again by itself, and every acknowledged
  write is there.
- the server refuses new connections (PostgreSQL's own refusals, each with its SQLSTATE, not its words): the role
  limited to one connection (`CONNECTION LIMIT 1`, 53300) while 20 requests come at once, then the database closed
  to new connections (`ALLOW_CONNECTIONS false`, 55000, its connections ended): every answer is a 200 or a JSON 503
  with Retry-After, never a 500; once connections are allowed again, reads and writes succeed.
"""

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, Server, isbn13, spare_port, summary

POSTGRES_SH = str(ROOT / "checks" / "postgres.sh")


def book(n: int) -> dict[str, Any]:
    return {"title": f"Outage {n}", "author": "A", "year": 2000, "isbn": isbn13(n)}


def every_route(client: httpx.Client, n: int) -> list[httpx.Response]:
    """One request to each route (a write to a book that exists: book 1). A dropped connection counts as status 0."""
    routes = [("GET", "/health"), ("GET", "/books"), ("GET", "/books/1")]
    routes += [("POST", "/books", book(n)), ("PATCH", "/books/1", {"year": 2001}), ("DELETE", "/books/2")]
    responses = []
    for method, path, *body in routes:
        try:
            responses.append(client.request(method, path, json=body[0] if body else None))
        except httpx.TransportError:
            responses.append(httpx.Response(0))
    return responses


def is_503_saying(response: httpx.Response, words: str, retry: bool) -> bool:
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    return response.status_code == 503 and words in detail and ("retry-after" in response.headers) == retry


def with_books(client: httpx.Client) -> None:
    for n in range(3):
        client.post("/books", json=book(n))


def deleted_file() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bookapi-outage-") as name:
        folder = Path(name)
        with Server(f"sqlite+aiosqlite:///{folder}/books.db") as server, httpx.Client(base_url=server.url) as client:
            with_books(client)
            for suffix in ("", "-wal", "-shm"):
                (folder / f"books.db{suffix}").unlink(missing_ok=True)
            responses = [r for n in range(3) for r in every_route(client, 10 + n)]
    refused = sum(is_503_saying(r, "deleted or replaced", retry=False) for r in responses)
    acknowledged = sum(r.is_success for r in responses)
    return {"deleted_requests": len(responses), "deleted_503": refused, "deleted_acknowledged": acknowledged}


def read_only() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bookapi-outage-") as folder:
        with Server(f"sqlite+aiosqlite:///{folder}/books.db") as server, httpx.Client(base_url=server.url) as client:
            with_books(client)
            before = client.get("/books").json()
        # SQLite's own read-only mode: what a file or folder the server may not write gives (as a user other than root)
        url = f"sqlite+aiosqlite:///file:{folder}/books.db?mode=ro&uri=true"
        with Server(url) as server, httpx.Client(base_url=server.url) as client:
            responses = every_route(client, 20)
            after = client.get("/books").json() if all(r.status_code for r in responses) else None
    writes = responses[3:]
    refused = sum(is_503_saying(r, "read-only", retry=False) for r in writes)
    figures = {"readonly_reads_200": all(r.status_code == 200 for r in responses[:3])}
    return figures | {"readonly_writes_503": f"{refused}/{len(writes)}", "readonly_unchanged": before == after}


def postgres_stopped() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bookapi-outage-pg-"))
    work.chmod(0o755)  # as root, the cluster belongs to the postgres user, which must reach its folder
    data, port = work / "data", spare_port()
    url = subprocess.run([POSTGRES_SH, "start", data, str(port)], check=True, capture_output=True, text=True).stdout
    figures: dict[str, Any] = {}
    try:
        with Server(url.strip()) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            acknowledged = [client.post("/books", json=book(n)).json()["id"] for n in range(3)]
            subprocess.run([POSTGRES_SH, "stop", data], check=True)
            started = time.monotonic()
            responses = every_route(client, 30)
            figures["pg_down_seconds"] = round(time.monotonic() - started, 2)
            figures["pg_down_503"] = f"{sum(is_503_saying(r, 'cannot be reached', True) for r in responses)}/6"
            subprocess.run([POSTGRES_SH, "start", data, str(port)], check=True, capture_output=True)
            deadline, recovered = time.monotonic() + 30, False
            while not recovered and time.monotonic() < deadline:
                recovered = client.get("/books").status_code == 200
                time.sleep(0.2)
            created = client.post("/books", json=book(40))
            figures["pg_recovered"] = recovered and created.status_code == 201
            if created.status_code == 201:
                acknowledged.append(created.json()["id"])
            stored = {b["id"] for b in client.get("/books", params={"limit": 100}).json()}
            figures["pg_acknowledged_kept"] = set(acknowledged) <= stored
            figures["server_tracebacks"] = server.server_errors_logged()
    finally:
        subprocess.run([POSTGRES_SH, "stop", data], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return figures


def postgres_refuses() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bookapi-outage-pg-"))
    work.chmod(0o755)
    data, port = work / "data", spare_port()
    admin = subprocess.run([POSTGRES_SH, "start", data, str(port)], check=True, capture_output=True, text=True).stdout
    psql = [str(Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip()) / "psql")]
    psql += ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-qAt", "-v", "ON_ERROR_STOP=1"]
    figures: dict[str, Any] = {}

    def sql(*statements: str) -> None:
        subprocess.run([*psql, *(arg for s in statements for arg in ("-c", s))], check=True, capture_output=True)

    async def burst(url: str, n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.get("/books/1") for _ in range(n)))

    def outcomes(responses: list[httpx.Response]) -> str:
        served = sum(r.status_code == 200 for r in responses)
        refused = sum(is_503_saying(r, "cannot be reached", retry=True) for r in responses)
        return f"{served}x200+{refused}x503/{len(responses)}"

    try:
        sql("CREATE ROLE limited LOGIN CONNECTION LIMIT 1", "CREATE DATABASE limited OWNER limited")
        url = admin.strip().replace("postgres@", "limited@").rsplit("/", 1)[0] + "/limited"
        with Server(url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            client.post("/books", json=book(50))
            one_connection = asyncio.run(burst(server.url, 20))
            sql("ALTER DATABASE limited ALLOW_CONNECTIONS false")
            sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'limited'")
            closed = asyncio.run(burst(server.url, 10))
            sql("ALTER DATABASE limited ALLOW_CONNECTIONS true", "ALTER ROLE limited CONNECTION LIMIT -1")
            figures["pg_one_connection"] = outcomes(one_connection)
            figures["pg_closed_to_new"] = outcomes(closed)
            answers = one_connection + closed  # each a 200, or a 503 that says to retry: nothing else
            figures["pg_refusals_other"] = sum(
                r.status_code != 200 and not is_503_saying(r, "cannot be reached", retry=True) for r in answers
            )
            deadline, recovered = time.monotonic() + 30, False
            while not recovered and time.monotonic() < deadline:
                recovered = all(r.status_code == 200 for r in asyncio.run(burst(server.url, 5)))
                time.sleep(0.2)
            figures["pg_allowed_again"] = recovered and client.post("/books", json=book(51)).status_code == 201
            figures["pg_refusal_tracebacks"] = server.server_errors_logged()
    finally:
        subprocess.run([POSTGRES_SH, "stop", data], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="also stop and restart a throwaway PostgreSQL")
    args = parser.parse_args()
    figures = deleted_file() | read_only()
    ok = (
        figures["deleted_503"] == figures["deleted_requests"]
        and figures["deleted_acknowledged"] == 0
        and figures["readonly_reads_200"]
        and figures["readonly_writes_503"] == "3/3"
        and figures["readonly_unchanged"]
    )
    if args.postgres:
        figures |= postgres_stopped() | postgres_refuses()
        ok = ok and figures["pg_down_503"] == "6/6" and figures["pg_down_seconds"] < 10
        ok = ok and figures["pg_recovered"] and figures["pg_acknowledged_kept"] and figures["server_tracebacks"] == 0
        ok = ok and figures["pg_refusals_other"] == 0 and figures["pg_allowed_again"]
        ok = ok and figures["pg_refusal_tracebacks"] == 0
    return summary("outage", bool(ok), figures)


if __name__ == "__main__":
    sys.exit(main())
