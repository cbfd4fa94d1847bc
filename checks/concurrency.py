"""Concurrency check: many clients at once against a real server. No 5xx, no acknowledged write lost, and exactly one
201 for each contested isbn.

    python checks/concurrency.py                          # SQLite, one worker, 64 clients x 20 books
    python checks/concurrency.py --workers 2 --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Phases: (1) every client creates books while readers get and list; (2) clients PATCH, PUT and DELETE a few shared rows
at once; (3) groups of clients create the same isbn at once. Then every acknowledged write is checked: a created book is
there unchanged, a deleted book is gone, an updated book holds the values of one of its acknowledged updates.
"""

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import httpx
from common import Server, fresh_database, isbn13, summary

TITLES = ["Dune", "Emma", "Ulysses"]  # few values, so concurrent updates often write what another just changed
AUTHORS = ["Frank Herbert", "Jane Austen", "James Joyce"]


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.writes = 0
        self.unexpected: list[str] = []

    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, expected: set[int], write: bool = True, **kw: Any
    ) -> httpx.Response | None:
        """Sends one request and notes its status; a connection that broke is noted too, and gives None."""
        self.writes += write
        try:
            response = await client.request(method, url, **kw)
        except httpx.TransportError as error:  # the server died or hung up: a failure to report, not a traceback
            self.statuses[0] += 1
            self.unexpected.append(f"{method} {url} -> no response: {type(error).__name__} {error}")
            return None
        self.statuses[response.status_code] += 1
        if response.status_code not in expected:
            self.unexpected.append(f"{method} {url} -> {response.status_code} {response.text[:200]}")
        return response


async def create_while_reading(client: httpx.AsyncClient, args: argparse.Namespace, tally: Tally) -> dict[int, Any]:
    acknowledged: dict[int, Any] = {}
    creating = True

    async def creator(n: int) -> None:
        for i in range(args.books):
            body = {"title": f"Book {n}-{i}", "author": f"Author {n % 7}", "year": 1900 + i}
            if i % 2:
                body["isbn"] = isbn13(n * 1000 + i)
            response = await tally.request(client, "POST", "/books", {201}, json=body)
            if response is not None and response.status_code == 201:
                acknowledged[response.json()["id"]] = response.json()

    async def reader() -> None:
        for _ in range(args.books * 10):  # bounded, and stops with the creators
            if not creating:
                return
            if acknowledged and random.random() < 0.5:
                await tally.request(client, "GET", f"/books/{random.choice(list(acknowledged))}", {200}, write=False)
            else:
                params = {"offset": random.randrange(200), "q": random.choice(["", "book 1", "AUTHOR 3"])}
                await tally.request(client, "GET", "/books", {200}, write=False, params=params)

    readers = [asyncio.create_task(reader()) for _ in range(max(1, args.clients // 4))]
    await asyncio.gather(*(creator(n) for n in range(args.clients)))
    creating = False
    await asyncio.gather(*readers)
    return acknowledged


async def update_and_delete(
    client: httpx.AsyncClient, args: argparse.Namespace, tally: Tally, shared: dict[int, Any]
) -> tuple[set[int], dict[int, list[Any]]]:
    deleted: set[int] = set()
    updates: dict[int, list[Any]] = {book_id: [] for book_id in shared}

    async def worker() -> None:
        for _ in range(args.updates):
            book_id = random.choice(list(shared))
            fields = {"title": random.choice(TITLES), "author": random.choice(AUTHORS), "year": random.randint(1, 9)}
            action = random.choices(["PATCH", "PUT", "DELETE"], weights=[20, 20, 1])[0]
            if action == "DELETE":
                response = await tally.request(client, "DELETE", f"/books/{book_id}", {204, 404})
                if response is not None and response.status_code == 204:
                    deleted.add(book_id)
                continue
            if action == "PUT":
                fields["isbn"] = shared[book_id]["isbn"]
            response = await tally.request(client, action, f"/books/{book_id}", {200, 404}, json=fields)
            if response is not None and response.status_code == 200:
                updates[book_id].append(response.json())

    await asyncio.gather(*(worker() for _ in range(args.clients)))
    return deleted, updates


async def contest_isbns(client: httpx.AsyncClient, args: argparse.Namespace, tally: Tally) -> tuple[int, int]:
    """Returns (isbns contested, isbns with exactly one 201)."""
    won = 0
    for k in range(args.contested):
        isbn = isbn13(10**7 + k)
        body = {"title": f"Contested {k}", "author": "Many Clients", "year": 2000, "isbn": isbn}
        responses = await asyncio.gather(
            *(tally.request(client, "POST", "/books", {201, 409}, json=body) for _ in range(16))
        )
        won += [r and r.status_code for r in responses].count(201) == 1
    return args.contested, won


async def count_lost(
    client: httpx.AsyncClient, created: dict[int, Any], deleted: set[int], updates: dict[int, list[Any]]
) -> tuple[int, list[str]]:
    lost: list[str] = []
    for book_id, book in created.items():
        try:
            response = await client.get(f"/books/{book_id}")
        except httpx.TransportError as error:
            lost.append(f"book {book_id}: no answer ({type(error).__name__} {error})")
            continue
        if book_id in deleted:
            if response.status_code != 404:
                lost.append(f"book {book_id}: deleted (204) but still there")
        elif response.status_code != 200:
            lost.append(f"book {book_id}: acknowledged, now {response.status_code}")
        elif updates.get(book_id):
            if response.json() not in updates[book_id]:
                lost.append(f"book {book_id}: holds {response.json()}, which no acknowledged update wrote")
        elif response.json() != book:
            lost.append(f"book {book_id}: created as {book}, now {response.json()}")
    return len(lost), lost


async def run(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    tally = Tally()
    # keepalive_expiry below uvicorn's --timeout-keep-alive (5 s): a connection idle that long is dropped by the client
    # before the server may close it, so that no request goes out on a connection at the moment the server closes it
    limits = httpx.Limits(max_connections=args.clients + args.clients // 4, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        created = await create_while_reading(client, args, tally)
        shared = dict(sorted(created.items())[: args.shared])
        deleted, updates = await update_and_delete(client, args, tally, shared)
        contested, won = await contest_isbns(client, args, tally)
        lost, details = await count_lost(client, created, deleted, updates)
    for line in (tally.unexpected + details)[:10]:
        print("  ", line)
    ok2xx = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    errors5xx = sum(n for status, n in tally.statuses.items() if status >= 500)
    return {
        "writes": tally.writes,
        "requests": sum(tally.statuses.values()),
        "2xx": ok2xx,
        "5xx": errors5xx,
        "unexpected": len(tally.unexpected),
        "no_response": tally.statuses.pop(0, 0),
        "lost": lost,
        "contested_isbns": contested,
        "one_201_each": won,
        "statuses": dict(sorted(tally.statuses.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL (default: a new SQLite file)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--books", type=int, default=20, help="books each client creates")
    parser.add_argument("--shared", type=int, default=32, help="rows that phase 2 updates and deletes")
    parser.add_argument("--updates", type=int, default=10, help="updates or deletes per client in phase 2")
    parser.add_argument("--contested", type=int, default=8, help="isbns that 16 clients create at once")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before the check gives up")
    args = parser.parse_args()

    backend = "postgresql" if args.postgres else "sqlite"
    started = time.monotonic()
    with fresh_database(args.postgres) as database_url, Server(database_url, workers=args.workers) as server:
        try:
            figures = asyncio.run(asyncio.wait_for(run(args, server.url), args.timeout))
        except TimeoutError:
            return summary(f"concurrency {backend} workers={args.workers}", False, {"timeout_s": args.timeout})
        figures["server_tracebacks"] = server.server_errors_logged()
        log_tail = server.log_tail()
    figures["seconds"] = round(time.monotonic() - started, 1)
    ok = (
        figures["5xx"] == 0
        and figures["lost"] == 0
        and figures["unexpected"] == 0
        and figures["one_201_each"] == figures["contested_isbns"]
        and figures["server_tracebacks"] == 0
    )
    if not ok:
        print(f"the server's log ends:\n{log_tail}")
    return summary(f"concurrency {backend} workers={args.workers}", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
