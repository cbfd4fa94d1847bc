"""Crash check: kill -9 the server while it is writing, restart it, and find every acknowledged book unchanged.

    python checks/crash.py [--cycles 5] [--clients 16]

Each cycle starts `uvicorn main:app` on the same SQLite file, fires concurrent creates, and kills the server's whole
process group with SIGKILL at a random moment. The next start must still hold every book whose 201 reached a client,
exactly as acknowledged. At the end SQLite's own `PRAGMA integrity_check` must say "ok".
"""

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import Server, isbn13, summary


async def create_until_killed(base_url: str, clients: int, cycle: int, limit: int) -> dict[int, Any]:
    """Concurrent creates until the server dies (or `limit` per client); returns the acknowledged books by id."""
    acknowledged: dict[int, Any] = {}

    async def client_loop(client: httpx.AsyncClient, n: int) -> None:
        for i in range(limit):
            body = {"title": f"Cycle {cycle} client {n} book {i}", "author": "Crash Test", "year": 1000 + i % 1000}
            if i % 2:
                body["isbn"] = isbn13(cycle * 10**6 + n * 10**4 + i)
            try:
                response = await client.post("/books", json=body)
            except httpx.TransportError:
                return  # the server is gone: this request was never acknowledged
            if response.status_code == 201:
                acknowledged[response.json()["id"]] = response.json()

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(client_loop(client, n) for n in range(clients)))
    return acknowledged


async def missing_or_changed(base_url: str, books: dict[int, Any]) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        lost = []
        for book_id, book in books.items():
            response = await client.get(f"/books/{book_id}")
            if response.status_code != 200 or response.json() != book:
                lost.append(book_id)
        return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-after", type=float, nargs=2, default=(0.3, 2.0), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    started = time.monotonic()
    acknowledged: dict[int, Any] = {}
    lost: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bookapi-crash-") as folder:
        path = Path(folder) / "books.db"
        for cycle in range(args.cycles):
            server = Server(f"sqlite+aiosqlite:///{path}").start()
            lost += asyncio.run(missing_or_changed(server.url, acknowledged))  # what earlier cycles acknowledged

            async def cycle_with_kill(server: Server = server, cycle: int = cycle) -> dict[int, Any]:
                writes = asyncio.create_task(create_until_killed(server.url, args.clients, cycle, limit=2000))
                await asyncio.sleep(rng.uniform(*args.kill_after))
                server.kill()
                return await asyncio.wait_for(writes, 60)

            acknowledged |= asyncio.run(cycle_with_kill())
        server = Server(f"sqlite+aiosqlite:///{path}").start()
        lost += asyncio.run(missing_or_changed(server.url, acknowledged))
        server.stop()
        with sqlite3.connect(path) as connection:
            integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
            rows = connection.execute("SELECT count(*) FROM books").fetchone()[0]
        connection.close()

    figures = {
        "cycles": args.cycles,
        "acknowledged": len(acknowledged),
        "rows": rows,
        "lost": len(set(lost)),
        "integrity": integrity,
        "seconds": round(time.monotonic() - started, 1),
    }
    ok = figures["lost"] == 0 and integrity == "ok" and len(acknowledged) > 0
    return summary("crash", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
