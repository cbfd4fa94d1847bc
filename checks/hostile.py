"""Hostile-input check: a scripted list of nasty requests for every route, sent as raw bytes to a real server.

    python checks/hostile.py [--postgres URL]

Every one must get a 4xx (never a 5xx, never a 2xx; a few valid searches for nasty text get their 200) whose body is
JSON of one shape, {"detail": ...}; no answer may redirect; the server must still be healthy afterwards, and the books
stored before the barrage must be there unchanged, nothing added (bodies over 1 MiB go to every write of a real book).
"""

import argparse
import asyncio
import json
import socket
import sys
import time
from contextlib import suppress
from typing import Any, NamedTuple

import httpx
from common import Server, fresh_database, summary

SEED_BOOKS = [
    {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937, "isbn": "9780547928227"},
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": None},
]
VALID = json.dumps(SEED_BOOKS[1] | {"title": "Hostile"}).encode()


def body_with(**fields: Any) -> bytes:
    return json.dumps({"title": "T", "author": "A", "year": 2000} | fields).encode()


def raw_field(name: str, raw: bytes) -> bytes:
    """A JSON body whose field `name` is the raw JSON text `raw` (for values json.dumps would not write)."""
    return b'{"title": "T", "author": "A", "year": 2000, "' + name.encode() + b'": ' + raw + b"}"


BAD_IDS = ["0", "-1", str(2**63), str(10**30), "1.5", "9" * 5000, "abc", "%00", "%ED%A0%80", "1e3", "0x10"]
BAD_IDS += ["%D9%A1", "%20", "1;drop", "..%2F..%2Fetc%2Fpasswd", "1_0", "1.0", "%201", "1%0A", "+1", "1/"]

JSON = "application/json"
BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("lone surrogate in title", b'{"title": "\\ud800", "author": "A", "year": 2000}', JSON),
    ("lone low surrogate in author", b'{"title": "T", "author": "\\udc00x", "year": 2000}', JSON),
    ("lone surrogate as a key", b'{"title": "T", "author": "A", "year": 2000, "\\ud800": 1}', JSON),
    ("NUL in title", body_with(title="a\x00b"), JSON),
    ("NUL in isbn", body_with(isbn="978\x000547928227"), JSON),
    ("newline in author", body_with(author="A\nB"), JSON),
    ("1 MB title", body_with(title="x" * 1_000_000), JSON),
    ("10 MB title", body_with(title="x" * 10_000_000), JSON),
    ("10,000-deep array", b"[" * 10_000 + b"]" * 10_000, JSON),
    ("10,000-deep object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON),
    ("10,000-deep title", raw_field("title", b"[" * 10_000 + b"]" * 10_000), JSON),
    ("year 1e400", raw_field("year", b"1e400"), JSON),
    ("year -1e400", raw_field("year", b"-1e400"), JSON),
    ("year NaN", raw_field("year", b"NaN"), JSON),
    ("year Infinity", raw_field("year", b"Infinity"), JSON),
    ("year 2**64", raw_field("year", str(2**64).encode()), JSON),
    ("year 4000 digits", raw_field("year", b"9" * 4000), JSON),
    ("year 0", body_with(year=0), JSON),
    ("year 10000", body_with(year=10000), JSON),
    ("year as string", body_with(year="2000"), JSON),
    ("id in body", body_with(id=1), JSON),
    ("unknown field", body_with(pages=300), JSON),
    ("10,000 unknown keys", json.dumps({f"k{i}": i for i in range(10_000)}).encode(), JSON),
    ("array body", b"[" + VALID + b"]", JSON),
    ("string body", b'"The Hobbit"', JSON),
    ("number body", b"42", JSON),
    ("null body", b"null", JSON),
    ("true body", b"true", JSON),
    ("empty body", b"", JSON),
    ("truncated JSON", VALID[:-5], JSON),
    ("JSON with a comment", b"// hi\n" + VALID, JSON),
    ("single-quoted JSON", VALID.replace(b'"', b"'"), JSON),
    ("invalid UTF-8", b'{"title": "\xff\xfe", "author": "A", "year": 2000}', JSON),
    ("plain-text content type", VALID, "text/plain"),
    ("form content type", b"title=T&author=A&year=2000", "application/x-www-form-urlencoded"),
    ("multipart content type", b"--x\r\n\r\n" + VALID + b"\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    ("no content type", VALID, ""),
    ("duplicate keys, last one bad", VALID[:-1] + b', "year": 0}', JSON),
    ("bad isbn check digit", body_with(isbn="9780547928228"), JSON),
    ("isbn of another book", body_with(isbn="0-547-92822-X"), JSON),
    ("isbn as number", raw_field("isbn", b"9780547928227"), JSON),
]
BAD_QUERIES = [
    "limit=" + str(10**30),
    "limit=-1",
    "limit=0",
    "limit=NaN",
    "limit=1e400",
    "offset=" + str(10**30),
    "offset=" + str(2**63),
    "offset=-5",
    "sort=id;DROP%20TABLE%20books",
    "sort=(SELECT%201)",
    "sort=title%20desc",
    "sort=%00",
    "q=%00",
    "q=" + "x" * 10_000,
    "author=%00",
    "author=" + "y" * 5000,
    "year_from=1e400",
    "year_to=99999",
    "year_from=" + "9" * 5000,
]
HARMLESS_QUERIES = [  # nasty text in a valid place: 200, and it must change nothing
    "q=%27%20OR%201%3D1%20--",
    "q=%25",
    "q=_",
    "q=%ED%A0%80",
    "q=%FF%FE",
    "author=%27%3B%20DELETE%20FROM%20books%3B%20--",
]


class Answer(NamedTuple):
    status: int  # 0 if the server closed without answering
    headers: dict[str, str]
    body: bytes


async def raw_request(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Answer:
    """Send one request as raw bytes (chunked if its headers say so) and read the whole answer."""
    headers = {"Host": f"127.0.0.1:{port}", "Connection": "close"} | (headers or {})
    if "Transfer-Encoding" not in headers and (body or method in {"POST", "PUT", "PATCH"}):
        headers["Content-Length"] = str(len(body))
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers.items() if value]
    if "Transfer-Encoding" in headers:  # in chunks of 64 KiB, with no total given in advance
        body = b"".join(
            b"%x\r\n%s\r\n" % (len(c), c) for c in (body[i : i + 2**16] for i in range(0, len(body), 2**16))
        )
        body += b"0\r\n\r\n"
    loop = asyncio.get_running_loop()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)

        async def send_body() -> None:  # while the answer is read: the server may answer before it has read it all
            with suppress(OSError):
                await loop.sock_sendall(sock, body)

        await loop.sock_sendall(sock, "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n")
        sending = asyncio.create_task(send_body())
        received = b""
        with suppress(OSError):  # a reset after the answer (the server closed with the body unread) ends it too
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 2**16), 60):
                received += chunk
        sending.cancel()
    head, _, answer_body = received.partition(b"\r\n\r\n")
    if not head:
        return Answer(0, {}, b"")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
    return Answer(int(status_line.split()[1]), answer_headers, answer_body)


def one_shape(answer: Answer) -> bool:
    """Whether the body is JSON of the shape every error has: {"detail": ...}. The exception is uvicorn's own answer
    to a request it cannot parse as HTTP (such as an unknown method), which never reaches the app."""
    if answer.status == 400 and answer.body == b"Invalid HTTP request received.":
        return True
    try:
        return answer.headers.get("content-type") == "application/json" and set(json.loads(answer.body)) == {"detail"}
    except (ValueError, TypeError):
        return False


def requests_to_try(book_id: int) -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(label, method, target, body, headers) for every hostile request."""
    tried = []
    for bad_id in BAD_IDS:
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            body = VALID if method in {"PUT", "PATCH"} else b""
            headers = {"Content-Type": JSON} if body else {}
            tried.append((f"id {bad_id[:20]}", method, f"/books/{bad_id}", body, headers))
    for name, body, content_type in BAD_BODIES:
        for method, path in (("POST", "/books"), ("PUT", f"/books/{book_id}"), ("PATCH", f"/books/{book_id}")):
            tried.append((name, method, path, body, {"Content-Type": content_type}))
    for query in BAD_QUERIES:
        tried.append((f"query {query[:30]}", "GET", f"/books?{query}", b"", {}))
    for method, path in (("TRACE", "/books"), ("BREW", "/books"), ("POST", "/health")):
        tried.append(("method", method, path, b"", {}))
    tried.append(("method", "DELETE", "/books", b"", {}))
    tried.append(("dot segments", "GET", "/books/1/../../etc/passwd", b"", {}))
    tried.append(("host header", "GET", f"/books/{book_id}/", b"", {"Host": "evil.example"}))
    tried.append(("no route", "GET", "/nothing-here", b"", {}))
    huge = body_with(title="x" * 2**21)
    for encoding in ({"Content-Type": JSON}, {"Content-Type": JSON, "Transfer-Encoding": "chunked"}):
        for method, path in (("POST", "/books"), ("PUT", f"/books/{book_id}"), ("PATCH", f"/books/{book_id}")):
            tried.append((f"2 MiB body {encoding}", method, path, huge, encoding))
        tried.append((f"2 MiB body {encoding}", "DELETE", f"/books/{book_id}", huge, encoding))
    return tried


async def run(port: int, base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        ids = [(await client.post("/books", json=book)).json()["id"] for book in SEED_BOOKS]
        before = (await client.get("/books", params={"limit": 100})).json()

        refused = [
            (f"{m} {t[:40]} ({label})", await raw_request(port, m, t, b, h))
            for label, m, t, b, h in requests_to_try(ids[1])
        ]
        answered = [(f"GET /books?{q[:40]}", await raw_request(port, "GET", f"/books?{q}")) for q in HARMLESS_QUERIES]
        not_json = [(r, a.status) for r, a in refused if not one_shape(a)]
        redirected = [(r, a.status) for r, a in refused + answered if "location" in a.headers]

        alive = (await client.get("/health")).status_code == 200
        after = (await client.get("/books", params={"limit": 100})).json()

    wrong = [(r, a.status) for r, a in refused if not 400 <= a.status < 500]
    wrong += [(r, a.status) for r, a in answered if a.status != 200]
    for request, status in (wrong + not_json + redirected)[:10]:
        print(f"   {status}  {request}")
    return {
        "tried": len(refused) + len(answered),
        "5xx": sum(a.status >= 500 for _, a in refused + answered),
        "unexpected": len(wrong),
        "errors_not_json": len(not_json),
        "redirects": len(redirected),
        "alive_after": alive,
        "rows_unchanged": before == after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL (default: a new SQLite file)")
    args = parser.parse_args()
    started = time.monotonic()
    with fresh_database(args.postgres) as database_url, Server(database_url) as server:
        figures = asyncio.run(asyncio.wait_for(run(server.port, server.url), 600))
        figures["server_tracebacks"] = server.server_errors_logged()
    figures["seconds"] = round(time.monotonic() - started, 1)
    ok = (
        figures["5xx"] == 0
        and figures["unexpected"] == 0
        and figures["errors_not_json"] == 0
        and figures["redirects"] == 0
        and figures["alive_after"]
        and figures["rows_unchanged"]
        and figures["server_tracebacks"] == 0
    )
    return summary("hostile", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
