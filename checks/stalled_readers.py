"""Stalled-reader check: clients that send requests and never read the answers must not stall anyone else.

    python checks/stalled_readers.py [--postgres URL] [--stalled 1 4 20]

Each stalled client opens one connection, pipelines a few hundred `GET /books?limit=100` requests (large pages) and
reads nothing, so that after a few answers the server cannot send any more to it. With 1, then 4, then 20 such
clients hanging on (for --hold seconds each), an ordinary client must keep getting quick 2xx answers from every
route, and after the stalled clients hang up the server must be healthy. A database connection held until a response
is sent would fail this: every other request would wait for the pool (30 s) and then fail.

When a stalled client hangs up, uvicorn logs "unable to perform operation on <TCPTransport closed=True ...>" for each
pipelined answer it was still writing (the client is gone; nothing is wrong in the app). Those are counted apart.
"""

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import Server, fresh_database, summary

PIPELINED = 300  # requests per stalled connection: 300 pages of ~40 kB, far more than socket buffers hold
PAGE = "/books?limit=100"


def stalled_connection(port: int) -> socket.socket:
    """A connection that has sent PIPELINED requests and will read nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills sooner
    sock.connect(("127.0.0.1", port))
    request = f"GET {PAGE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sock.sendall(request * PIPELINED)
    return sock


def hang_up(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset, no goodbye
    sock.close()


async def probe(base_url: str, seconds: float) -> tuple[list[str], float]:
    """One of each kind of request, as an ordinary client; returns what went wrong and the slowest answer (s)."""
    wrong, slowest = [], 0.0
    body = {"title": "Probe", "author": "Ordinary Client", "year": 2000}
    async with httpx.AsyncClient(base_url=base_url, timeout=seconds) as client:
        for method, path, json in [
            ("GET", "/health", None),
            ("GET", "/books/1", None),
            ("GET", PAGE, None),
            ("POST", "/books", body),
            ("PATCH", "/books/1", {"year": 1999}),
        ]:
            started = time.monotonic()
            try:
                status = (await client.request(method, path, json=json)).status_code
            except httpx.TimeoutException:
                status = 0
            slowest = max(slowest, time.monotonic() - started)
            if not 200 <= status < 300:
                wrong.append(f"{method} {path} -> {status or f'no answer in {seconds:g} s'}")
    return wrong, slowest


async def seed(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for n in range(100):
            book = {"title": f"{n:03d} " + "t" * 190, "author": "a" * 100, "year": 1000 + n}
            assert (await client.post("/books", json=book)).status_code == 201


def run(server: Server, counts: list[int], hold: float, timeout: float) -> dict[str, Any]:
    asyncio.run(seed(server.url))
    figures: dict[str, Any] = {}
    problems: list[str] = []
    for count in counts:
        stalled = [stalled_connection(server.port) for _ in range(count)]
        deadline, slowest, probes = time.monotonic() + hold, 0.0, 0
        while time.monotonic() < deadline:  # the stalled connections fill their buffers within a few seconds
            wrong, slowest_now = asyncio.run(probe(server.url, timeout))
            slowest, probes = max(slowest, slowest_now), probes + 1
            problems += [f"with {count} stalled: {w}" for w in wrong]
        for sock in stalled:
            hang_up(sock)
        figures[f"stalled_{count}_slowest_s"] = round(slowest, 2)
        figures[f"stalled_{count}_probes"] = probes
    time.sleep(0.5)
    wrong, _ = asyncio.run(probe(server.url, timeout))
    problems += [f"after the stalled clients left: {w}" for w in wrong]
    for line in problems[:10]:
        print("  ", line)
    figures["problems"] = len(problems)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL (default: a new SQLite file)")
    parser.add_argument("--stalled", type=int, nargs="+", default=[1, 4, 20], help="stalled clients, in turn")
    parser.add_argument("--hold", type=float, default=10, help="seconds the stalled clients hang on, each time")
    parser.add_argument("--timeout", type=float, default=5, help="seconds an ordinary request may take")
    args = parser.parse_args()
    started = time.monotonic()
    with fresh_database(args.postgres) as database_url, Server(database_url) as server:
        figures = run(server, args.stalled, args.hold, args.timeout)
        log = Path(server.log.name).read_text(errors="replace")
        figures["hang_up_noise"] = log.count("unable to perform operation on <TCPTransport closed=True")
        figures["server_tracebacks"] = log.count("Traceback") - figures["hang_up_noise"]
    figures["seconds"] = round(time.monotonic() - started, 1)
    ok = figures["problems"] == 0 and figures["server_tracebacks"] == 0
    backend = "postgresql" if args.postgres else "sqlite"
    return summary(f"stalled_readers {backend}", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
