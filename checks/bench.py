"""Benchmark: the API under load, next to two ceilings measured in the same run.

    python checks/bench.py                         # 10,000 rows, 3 rounds of 5 s per scenario and app
    python checks/bench.py --rows 10000 100000     # also at 100,000 rows, to see what grows with the table
    python checks/bench.py --smoke                 # CI: a small table, one short round, fails on any non-2xx

Each app runs alone under `uvicorn` (1 worker, uvloop, httptools, no access log) on its own copy of one SQLite file
filled with N books:
- `orm`:  main.py, the app being measured;
- `raw`:  checks/ceiling_raw.py, main.py with the ORM swapped for one raw aiosqlite connection;
- `bare`: checks/ceiling_bare.py, the same routes answering constants, no database.
wrk (`apt-get install wrk`; else a bounded httpx load generator) drives each scenario with 2 threads and 32
connections. The apps take turns within each round, because this machine is shared and noisy; the table reports the
median over rounds, the server's CPU time per request (`cpu us`, all threads; noise moves it less than req/s), and
each scenario of `orm` as a ratio to `raw` and to `bare`.
"""

import argparse
import asyncio
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import Server, isbn13
from sqlalchemy import create_engine

import main

APPS = {"bare": "ceiling_bare:app", "raw": "ceiling_raw:app", "orm": "main:app"}
READ_SCENARIOS = ["get_by_id", "list", "list_q", "list_sort"]
SCENARIOS = [*READ_SCENARIOS, "post", "patch", "mixed"]
UVICORN = ["--loop", "uvloop", "--http", "httptools"]

LUA = r"""
local rows, run = {rows}, {run}
local scenario = "{scenario}"
local thread_count = 0
function setup(thread) thread:set("tid", thread_count); thread_count = thread_count + 1 end
function init(args) math.randomseed(os.time() + tid * 7919); counter = 0 end
local function isbn()
  counter = counter + 1
  local digits = string.format("9791%08d", (run * 1000000 + tid * 500000 + counter) % 100000000)
  local sum = 0
  for i = 1, 12 do sum = sum + tonumber(digits:sub(i, i)) * ((i % 2 == 1) and 1 or 3) end
  return digits .. tostring((10 - sum % 10) % 10)
end
local json = {{["Content-Type"] = "application/json"}}
local function get_by_id() return wrk.format("GET", "/books/" .. math.random(1, rows)) end
local function list() return wrk.format("GET", "/books?limit=20&offset=" .. math.random(0, 1000)) end
local function list_q() return wrk.format("GET", "/books?limit=20&q=author%20" .. math.random(1, 99)) end
local function list_sort() return wrk.format("GET", "/books?limit=20&sort=-year&offset=" .. math.random(0, 1000)) end
local function post()
  local body = string.format('{{"title": "Bench %d-%d", "author": "Author %d", "year": %d, "isbn": "%s"}}',
    tid, counter, math.random(1, 99), math.random(1000, 2026), isbn())
  return wrk.format("POST", "/books", json, body)
end
local function patch()
  return wrk.format("PATCH", "/books/" .. math.random(1, rows), json, '{{"year": ' .. math.random(1000, 2026) .. '}}')
end
local function mixed()
  local r = math.random(1, 10)
  if r <= 4 then return get_by_id() elseif r <= 8 then return list() elseif r == 9 then return post() end
  return patch()
end
local pick = {{get_by_id = get_by_id, list = list, list_q = list_q, list_sort = list_sort, post = post, patch = patch,
  mixed = mixed}}
request = pick[scenario]
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    cpu_us: float = 0.0  # the server's CPU time per request, all its threads: steadier than req/s on a busy machine


@dataclass
class Table:
    results: dict[tuple[int, str, str], list[Result]] = field(default_factory=dict)
    peak_rss_mb: dict[tuple[int, str], float] = field(default_factory=dict)

    def add(self, rows: int, app: str, scenario: str, result: Result) -> None:
        self.results.setdefault((rows, app, scenario), []).append(result)

    def median(self, rows: int, app: str, scenario: str) -> Result:
        runs = self.results[(rows, app, scenario)]
        return Result(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.non_2xx for r in runs),
            sum(r.errors for r in runs),
            statistics.median(r.cpu_us for r in runs),
        )


def fill(path: Path, rows: int) -> None:
    """A SQLite file with main.py's tables and `rows` books (100 authors, years 1000..2026)."""
    engine = create_engine(f"sqlite:///{path}")
    main.Base.metadata.create_all(engine)
    engine.dispose()
    rng = random.Random(rows)
    with sqlite3.connect(path) as connection:
        books = []
        for n in range(1, rows + 1):
            title, author = f"Book {n} of the bench", f"Author {n % 100}"
            books.append((title, author, rng.randint(1000, 2026), isbn13(n), title.casefold(), author.casefold()))
        connection.executemany(
            "INSERT INTO books (title, author, year, isbn, title_folded, author_folded) VALUES (?, ?, ?, ?, ?, ?)",
            books,
        )
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


def parse_duration(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(url: str, scenario: str, rows: int, run: int, seconds: float, folder: Path) -> Result:
    script = folder / f"{scenario}.lua"
    script.write_text(LUA.format(rows=rows, run=run, scenario=scenario))
    command = ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if len(percentiles) != 2:
        sys.exit(f"wrk gave no latencies for {scenario} at {url}:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=parse_duration(percentiles["50"]),
        p99_ms=parse_duration(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


async def run_httpx(url: str, scenario: str, rows: int, run: int, seconds: float) -> Result:
    """The fallback load generator: 32 connections, each sending requests one after another for `seconds`."""
    latencies: list[float] = []
    non_2xx = errors = 0
    counter = iter(range(run * 1_000_000, (run + 1) * 1_000_000))

    def request() -> tuple[str, str, dict[str, object] | None]:
        kind = scenario
        if scenario == "mixed":
            kind = random.choices(["get_by_id", "list", "post", "patch"], [4, 4, 1, 1])[0]
        if kind == "get_by_id":
            return "GET", f"/books/{random.randint(1, rows)}", None
        if kind == "list":
            return "GET", f"/books?limit=20&offset={random.randint(0, 1000)}", None
        if kind == "list_q":
            return "GET", f"/books?limit=20&q=author%20{random.randint(1, 99)}", None
        if kind == "list_sort":
            return "GET", f"/books?limit=20&sort=-year&offset={random.randint(0, 1000)}", None
        if kind == "post":
            n = next(counter)
            return "POST", "/books", {"title": f"Bench {n}", "author": "Author 1", "year": 2000, "isbn": isbn13(n)}
        return "PATCH", f"/books/{random.randint(1, rows)}", {"year": random.randint(1000, 2026)}

    async def connection(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal non_2xx, errors
        while time.monotonic() < deadline:
            method, path, body = request()
            started = time.monotonic()
            try:
                response = await client.request(method, path, json=body)
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append((time.monotonic() - started) * 1000)
            non_2xx += not 200 <= response.status_code < 300

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(connection(client, deadline) for _ in range(32)))
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(len(latencies) / seconds, quantiles[49], quantiles[98], non_2xx, errors)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def measure(args: argparse.Namespace, table: Table, rows: int, folder: Path) -> None:
    seed = folder / f"seed-{rows}.db"
    fill(seed, rows)
    servers = {}
    for app, target in APPS.items():
        copy = folder / f"{app}-{rows}.db"
        shutil.copy(seed, copy)
        servers[app] = Server(f"sqlite+aiosqlite:///{copy}", app=target, extra_args=UVICORN).start()
    try:
        run = 0
        for round_number in range(args.rounds):
            for scenario in args.scenarios:
                order = list(APPS) if round_number % 2 == 0 else list(reversed(APPS))
                for app in order:
                    run += 1
                    url, pid = servers[app].url, servers[app].process.pid  # type: ignore[union-attr]
                    cpu_before = cpu_seconds(pid)
                    if args.generator == "wrk":
                        result = run_wrk(url, scenario, rows, run, args.seconds, folder)
                    else:
                        result = asyncio.run(run_httpx(url, scenario, rows, run, args.seconds))
                    result.cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / max(result.rps * args.seconds, 1)
                    table.add(rows, app, scenario, result)
        for app, server in servers.items():
            table.peak_rss_mb[(rows, app)] = peak_rss_mb(server.process.pid)  # type: ignore[union-attr]
    finally:
        for server in servers.values():
            server.stop()


def report(args: argparse.Namespace, table: Table) -> bool:
    ok = True
    for rows in args.rows:
        print(f"\n{rows:,} rows, median of {args.rounds} round(s) of {args.seconds} s, {args.generator} -t2 -c32")
        print(
            f"{'scenario':10} {'app':5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'cpu us':>7}"
            "  orm/raw  orm/bare"
        )
        for scenario in args.scenarios:
            orm = table.median(rows, "orm", scenario)
            for app in APPS:
                result = table.median(rows, app, scenario)
                ratios = ""
                if app == "orm":
                    raw, bare = table.median(rows, "raw", scenario), table.median(rows, "bare", scenario)
                    ratios = f"  {orm.rps / raw.rps:6.0%}   {orm.rps / bare.rps:6.0%}"
                print(
                    f"{scenario:10} {app:5} {result.rps:8.0f} {result.p50_ms:7.2f} {result.p99_ms:7.2f}"
                    f" {result.non_2xx + result.errors:7d} {result.cpu_us:7.0f}{ratios}"
                )
                ok &= result.non_2xx + result.errors == 0
        memory = ", ".join(f"{app} {table.peak_rss_mb[(rows, app)]:.0f}" for app in APPS)
        print(f"peak memory (MB): {memory}")
    if len(args.rows) > 1:
        small, large = args.rows[0], args.rows[-1]
        for scenario in [s for s in args.scenarios if s.startswith("list")]:
            growth = table.median(small, "orm", scenario).rps / table.median(large, "orm", scenario).rps
            print(f"{scenario}: a page costs {growth:.2f}x as much at {large:,} rows as at {small:,}")
    return ok


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--generator", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
    parser.add_argument("--smoke", action="store_true", help="CI: 1,000 rows, one round of 1 s")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.rounds, args.seconds = [1000], 1, 1
    started = time.monotonic()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="bookapi-bench-") as folder:
        for rows in args.rows:
            measure(args, table, rows, Path(folder))
    ok = report(args, table)
    orm = {s: table.median(args.rows[0], "orm", s) for s in args.scenarios}
    raw = {s: table.median(args.rows[0], "raw", s) for s in args.scenarios}
    figures = " ".join(f"{s}={orm[s].rps / raw[s].rps:.0%}" for s in args.scenarios)
    non_2xx = sum(r.non_2xx + r.errors for runs in table.results.values() for r in runs)
    seconds = time.monotonic() - started
    print(f"bench: {'PASS' if ok else 'FAIL'} orm/raw {figures} non_2xx={non_2xx} seconds={seconds:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_())
