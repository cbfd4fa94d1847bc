"""Protocol check: oversized headers and silent half-open connections, against the server as README's "Running it for
real" starts it: `uvicorn main:app --http h11`.

    python checks/protocol.py [--httptools] [--connections 2000]

1. Ten clients at once each send a request whose header is 50 MiB. uvicorn's h11 parser gives up on a request head
   that has not ended after 16 KiB (a head that arrives whole in one read of the socket may be larger): each is
   answered 400 or closed, the server's memory stays flat, and /health answers. (With httptools, uvicorn's default,
   the server reads every byte: `--httptools` shows it, which is why the README says to run it with h11.)
2. Many clients open a connection, send half a request head and go silent. uvicorn has no timeout for a request
   head, so it holds them until the client leaves; each holds a file descriptor, and past the process's limit
   (`ulimit -n`, often 1024) new clients are refused. This part is reported, not asserted: closing slow clients is the
   job of a reverse proxy in front (README, "Running it for real"). It asserts only that a new client is still
   served while they are held, below that limit.
3. Under both parsers: a request hidden in another's body (Content-Length and Transfer-Encoding both sent, RFC 9112
   section 6.1) is refused with a 400 and the connection closed, so the hidden DELETE never runs (under h11 the 400 is
   main.py's JSON; httptools refuses it itself, before the app, in plain text); and a WebSocket handshake is a JSON
   404, as every other refusal.
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, Server, fresh_database, spare_port, summary

HEADER_MIB = 50


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def huge_header(port: int) -> str:
    """Send a request with a 50 MiB header, 1 MiB at a time; what the server answered, or how it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        for _ in range(HEADER_MIB):
            writer.write(b"a" * 2**20)
            await writer.drain()
        writer.write(b"\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 60)
        return line.decode(errors="replace").split(" ", 2)[1] if line else "closed"
    except (ConnectionError, TimeoutError):
        return "closed"
    finally:
        writer.close()


async def oversized_headers(port: int, pid: int) -> dict[str, Any]:
    before = rss_mib(pid)
    peak, health_seconds = before, 0.0
    attack = asyncio.gather(*(huge_header(port) for _ in range(10)))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while not attack.done():
            started = time.monotonic()
            await client.get("/health")
            health_seconds = max(health_seconds, time.monotonic() - started)
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.1)
    answers = await attack
    return {
        "header_answers": ",".join(sorted(set(answers))),
        "rss_before_mib": round(before),
        "rss_peak_mib": round(peak),
        "health_slowest_s": round(health_seconds, 2),
    }


async def half_open(port: int, count: int, hold: float) -> dict[str, Any]:
    connections = []
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writer.write(b"GET /books HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")  # and never the rest
        connections.append((reader, writer))
    await asyncio.sleep(hold)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            new_client_served = (await client.get("/health")).status_code == 200
    except httpx.HTTPError:
        new_client_served = False
    held = 0
    for reader, writer in connections:
        try:
            held += await asyncio.wait_for(reader.read(1), 0.01) != b""
        except TimeoutError:
            held += 1  # nothing to read, and not closed: still held
        except ConnectionError:
            pass
        writer.close()
    return {"half_open_sent": len(connections), "half_open_held_after_s": hold, "held": held}, new_client_served


async def smuggled(url: str) -> dict[str, Any]:
    """POST with both lengths, a DELETE in its chunked body: the answer, whether the server closed, the book kept."""
    async with httpx.AsyncClient(base_url=url) as client:
        victim = (await client.post("/books", json={"title": "Kept", "author": "A", "year": 2000})).json()["id"]
        hidden = f"DELETE /books/{victim} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        body = b"0\r\n\r\n" + hidden
        head = f"POST /books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
        writer.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        try:
            answer = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closed the connection
            closed = True
        except TimeoutError:
            answer, closed = b"", False
        writer.close()
        kept = (await client.get(f"/books/{victim}")).status_code == 200
    status = answer.split(b" ", 2)[1].decode() if answer else "none"
    json_body = b"content-type: application/json" in answer.lower()
    return {"status": status, "json": json_body, "closed": closed, "kept": kept}


def websocket_refusal(url: str) -> tuple[int, str]:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    response = httpx.get(f"{url}/books", headers=headers)
    return response.status_code, response.headers.get("content-type", "")


def requests_that_must_not_pass() -> tuple[bool, dict[str, Any]]:
    figures: dict[str, Any] = {}
    ok = True
    for parser in ("h11", "httptools"):
        with fresh_database() as url, Server(url, extra_args=["--http", parser]) as server:
            smuggling = asyncio.run(smuggled(server.url))
            status, content_type = websocket_refusal(server.url)
        figures[f"smuggled_{parser}"] = ",".join(f"{key}={value}" for key, value in smuggling.items())
        figures[f"websocket_{parser}"] = f"{status} {content_type}"
        ok = ok and smuggling["status"] == "400" and smuggling["closed"] and smuggling["kept"]
        ok = ok and (smuggling["json"] or parser == "httptools") and (status, content_type) == (404, "application/json")
    return ok, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--httptools", action="store_true", help="run uvicorn with httptools instead, to compare")
    parser.add_argument("--connections", type=int, default=500, help="half-open connections (default 500)")
    parser.add_argument("--hold", type=float, default=10, help="seconds to keep them open (default 10)")
    args = parser.parse_args()
    port = spare_port()
    with tempfile.TemporaryDirectory(prefix="bookapi-protocol-") as folder:
        env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/books.db"}
        env.pop("API_KEY", None)
        http = "httptools" if args.httptools else "h11"
        command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--http", http]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            figures = asyncio.run(oversized_headers(port, server.pid))
            figures["rss_after_mib"] = round(rss_mib(server.pid))
            held, new_client_served = asyncio.run(half_open(port, args.connections, args.hold))
            figures |= held | {"new_client_served": new_client_served}
        finally:
            server.terminate()
            server.wait(15)
    refused, more = requests_that_must_not_pass()
    figures |= more
    ok = (
        refused
        and figures["header_answers"] in {"400", "431", "closed", "400,closed", "431,closed"}
        and figures["rss_peak_mib"] - figures["rss_before_mib"] < 20
        and figures["health_slowest_s"] < 1
        and new_client_served
    )
    return summary(f"protocol {'httptools' if args.httptools else 'h11'}", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
