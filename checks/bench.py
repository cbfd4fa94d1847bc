"""Benchmark: the API under load, next to peers measured in the same run, taking turns.

    python checks/bench.py                         # 10,000 rows, 3 rounds of 5 s per scenario and app
    python checks/bench.py --rows 10000 100000     # also at 100,000 rows, to see what grows with the table
    python checks/bench.py --peer before=/tmp/old --apps main before --rounds 7    # an A/B of two versions
    python checks/bench.py --smoke                 # CI: a small table, one short round, fails on any non-2xx

Each app runs alone under `uvicorn` (1 worker, uvloop, httptools, no access log) on its own SQLite file, which its
own start-up creates and the bench then fills with the same N books:
- `main`: main.py, the app being measured;
- `sync`: its synchronous twin, made from main.py for each run (checks/sync_twin.py: `def` routes on sqlite3);
- `workers2`: main.py under `uvicorn --workers 2` (CPU counts every process of the server);
- `old`: the old synchronous version, `../shared/baseline/old_sync_main.py`, run in its own folder (it makes
  `./books.db`); it has no PATCH and no query parameters, so it runs GET by id, POST (sending an id, which it needs)
  and the list (which, there, is every row);
- `pg`, `pg2`: main.py on PostgreSQL (asyncpg), 1 and 2 workers, each on a new database of the server that
  `--postgres URL` names (the default apps include them when it is given);
- `h11`: main.py with uvicorn's h11 parser instead of httptools, as README's "Running it for real" runs it;
- `raw`:  checks/ceiling_raw.py, main.py with the ORM swapped for one raw aiosqlite connection;
- `bare`: checks/ceiling_bare.py, the same routes answering constants, no database;
- any `--peer NAME=DIR`: the main.py in DIR (another version, or main.py with one change: an A/B); `--pg-peer
  NAME=DIR[:WORKERS]` runs it on PostgreSQL, as `pg` does.
wrk (`apt-get install wrk`; else a bounded httpx load generator) drives each scenario with 2 threads and 32
connections. The apps take turns within each round, because this machine is shared and noisy. The figure of record
is the server's CPU time per request (`cpu us`, all threads), which noise moves less than req/s; the table reports
medians over rounds, and for each app after the first, its CPU per request and req/s as a ratio to the first app's
in the same round: the median and the range over rounds. A ratio whose range stays on one side of 1 is beyond noise.
On PostgreSQL, `db us` adds the CPU per request of the PostgreSQL server's processes (every process named
`postgres` on this machine), which `cpu us` does not count; on SQLite the database works inside the server.
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
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import ROOT, Server, fresh_database, isbn13
from sync_twin import write_twin

OLD = ROOT.parent / "shared" / "baseline"  # the old synchronous version, read from beside the repo, never copied in


@dataclass
class App:
    folder: Path  # where uvicorn imports it from (and, for `old`, the folder it runs in)
    target: str
    http: str = "httptools"
    workers: int = 1
    scenarios: tuple[str, ...] = ()  # the only scenarios it can run, if not all
    postgres: bool = False  # runs on a new database of the server --postgres names


APPS = {
    "main": App(ROOT, "main:app"),
    "sync": App(ROOT / "checks", "main:app"),  # its folder is replaced by a fresh twin (checks/sync_twin.py)
    "workers2": App(ROOT, "main:app", workers=2),
    "old": App(OLD, "old_sync_main:app", scenarios=("get_by_id", "list", "post")),
    "pg": App(ROOT, "main:app", postgres=True),
    "pg2": App(ROOT, "main:app", workers=2, postgres=True),
    "h11": App(ROOT, "main:app", "h11"),
    "raw": App(ROOT / "checks", "ceiling_raw:app"),
    "bare": App(ROOT / "checks", "ceiling_bare:app"),
}
DEFAULT_APPS = ["main", "sync", "workers2", "old", "raw", "bare"]
SCENARIOS = ["get_by_id", "list", "list_q", "list_sort", "list_title", "post", "patch", "mixed"]
UVICORN = ["--loop", "uvloop", "--http"]

LUA = r"""
local rows, run, old = {rows}, {run}, {old}
local scenario = "{scenario}"
local thread_count = 0
function setup(thread) thread:set("tid", thread_count); thread_count = thread_count + 1 end
function init(args) math.randomseed(os.time() + tid * 7919); counter = 0 end
local function isbn()
  counter = counter + 1
  local digits = string.format("9791%08d", (run * 100000 + tid * 50000 + counter) % 100000000)
  local sum = 0
  for i = 1, 12 do sum = sum + tonumber(digits:sub(i, i)) * ((i % 2 == 1) and 1 or 3) end
  return digits .. tostring((10 - sum % 10) % 10)
end
local json = {{["Content-Type"] = "application/json"}}
local function get_by_id() return wrk.format("GET", "/books/" .. math.random(1, rows)) end
local function list() return wrk.format("GET", "/books?limit=20&offset=" .. math.random(0, 1000)) end
local function list_q() return wrk.format("GET", "/books?limit=20&q=author%20" .. math.random(1, 99)) end
local function list_sort() return wrk.format("GET", "/books?limit=20&sort=-year&offset=" .. math.random(0, 1000)) end
local function list_title() return wrk.format("GET", "/books?limit=20&sort=title&offset=" .. math.random(0, 1000)) end
local function post()
  local body = string.format('{{"title": "Bench %d-%d", "author": "Author %d", "year": %d, "isbn": "%s"}}',
    tid, counter, math.random(1, 99), math.random(1000, 2026), isbn())
  if old then  -- the old version wants the client to choose the id
    local id = rows + run * 1000000 + tid * 500000 + counter
    body = string.format('{{"id": %d, "title": "Bench", "author": "A", "year": 2000}}', id)
  end
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
local pick = {{get_by_id = get_by_id, list = list, list_q = list_q, list_sort = list_sort, list_title = list_title,
  post = post, patch = patch, mixed = mixed}}
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
    db_cpu_us: float | None = None  # on PostgreSQL, its server's CPU time per request (SQLite's is in cpu_us)


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
            None if runs[0].db_cpu_us is None else statistics.median(r.db_cpu_us or 0 for r in runs),
        )

    def ratios(self, rows: int, app: str, first: str, scenario: str, attribute: str) -> list[float]:
        """`attribute` of `app` over that of `first`, round by round (they ran one after the other)."""
        pairs = zip(self.results[(rows, app, scenario)], self.results[(rows, first, scenario)], strict=True)
        return sorted(getattr(a, attribute) / max(getattr(b, attribute), 1e-9) for a, b in pairs)


def fill_postgres(url: str, rows: int) -> None:
    """fill(), on a PostgreSQL database: the same books, through SQLAlchemy."""
    from sqlalchemy import MetaData, insert
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            metadata = MetaData()
            await connection.run_sync(metadata.reflect, only=["books"])
            columns = [c.name for c in metadata.tables["books"].columns if c.name != "id"]
            rng, books = random.Random(rows), []
            for n in range(1, rows + 1):
                book = {"title": f"Book {n} of the bench", "author": f"Author {n % 100}", "isbn": isbn13(n)}
                book |= {"year": rng.randint(1000, 2026), "title_folded": book["title"].casefold()}
                book["author_folded"] = book["author"].casefold()
                books.append({column: book[column] for column in columns})
            await connection.execute(insert(metadata.tables["books"]), books)
        await engine.dispose()

    asyncio.run(run())


def fill(path: Path, rows: int) -> None:
    """Add `rows` books (100 authors, years 1000..2026) to the table the app's own start-up created; columns the
    app may add beside the book's own (such as case-folded copies) are filled too."""
    rng = random.Random(rows)
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(books)") if row[1] != "id"]
        books = []
        for n in range(1, rows + 1):
            book = {"title": f"Book {n} of the bench", "author": f"Author {n % 100}", "isbn": isbn13(n)}
            book |= {"year": rng.randint(1000, 2026), "title_folded": book["title"].casefold()}
            book["author_folded"] = book["author"].casefold()
            books.append([book[column] for column in columns])
        marks = ", ".join("?" * len(columns))
        connection.executemany(f"INSERT INTO books ({', '.join(columns)}) VALUES ({marks})", books)
    connection.close()


def parse_duration(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(url: str, scenario: str, rows: int, run: int, seconds: float, folder: Path, old: bool) -> Result:
    script = folder / f"{scenario}.lua"
    script.write_text(LUA.format(rows=rows, run=run, scenario=scenario, old=str(old).lower()))
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


async def run_httpx(url: str, scenario: str, rows: int, run: int, seconds: float, old: bool) -> Result:
    """The fallback load generator: 32 connections, each sending requests one after another for `seconds`."""
    latencies: list[float] = []
    non_2xx = errors = 0
    counter = iter(range(run * 1_000_000, (run + 1) * 1_000_000))

    def request() -> tuple[str, str, dict[str, object] | None]:
        kind = scenario
        if scenario == "mixed":
            kind = random.choices(["get_by_id", "list", "post", "patch"], [4, 4, 1, 1])[0]
        offset = random.randint(0, 1000)
        pages = {"list": "", "list_sort": "&sort=-year", "list_title": "&sort=title"}
        if kind == "get_by_id":
            return "GET", f"/books/{random.randint(1, rows)}", None
        if kind in pages:
            return "GET", f"/books?limit=20&offset={offset}{pages[kind]}", None
        if kind == "list_q":
            return "GET", f"/books?limit=20&q=author%20{random.randint(1, 99)}", None
        if kind == "post":
            n = next(counter)
            if old:  # the old version wants the client to choose the id
                return "POST", "/books", {"id": rows + n, "title": "Bench", "author": "A", "year": 2000}
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
    """User plus system CPU time so far of the server: every process of its process group, all threads."""
    return processes_cpu_seconds(lambda name, fields: int(fields[2]) == pid, children=False)


def postgres_cpu_seconds() -> float:
    """The same for every PostgreSQL server process on this machine (named `postgres`), where PostgreSQL does its
    part, with the connections' processes that have ended: their time is added to their parent's, which waited."""
    return processes_cpu_seconds(lambda name, fields: name == "postgres", children=True)


def processes_cpu_seconds(matches: Callable[[str, list[str]], bool], children: bool) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(" (")[2].rpartition(")")
        except OSError:  # the process ended meanwhile
            continue
        fields = (
            rest.split()
        )  # from the state on: [2] is the process group, [11:13] its own time, [13:15] its children's
        if matches(name, fields):
            total += sum(int(f) for f in fields[11 : 15 if children else 13])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The server's peak memory: the largest of its processes (one worker's, with --workers 2)."""
    peaks = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            group = int(Path(status.parent, "stat").read_text().rpartition(")")[2].split()[2])
        except (OSError, ValueError):
            continue
        if group == pid and (peak := re.search(r"VmHWM:\s+(\d+) kB", text)):
            peaks.append(int(peak.group(1)) / 1024)
    return max(peaks, default=0.0)


def measure(args: argparse.Namespace, table: Table, rows: int, folder: Path) -> None:
    servers, databases = {}, ExitStack()
    try:
        for app in args.apps:
            spec = args.known[app]
            database = folder / f"{app}-{rows}.db"
            if spec.postgres:
                url = databases.enter_context(fresh_database(args.postgres))
                server = Server(url, spec.workers, None, spec.target, spec.folder, [*UVICORN, spec.http])
                servers[app] = server.start()
                fill_postgres(url, rows)
                continue
            cwd = ROOT
            if app == "old":  # it makes ./books.db in the folder it runs in
                cwd = folder / f"old-{rows}"
                cwd.mkdir()
                database = cwd / "books.db"
            arguments = [*UVICORN, spec.http]
            server = Server(f"sqlite+aiosqlite:///{database}", spec.workers, None, spec.target, spec.folder, arguments)
            server.cwd = cwd
            server.ready_path = "/books" if app == "old" else "/health"  # the old version has no /health
            servers[app] = server.start()
            if database.exists():  # `bare` has no database
                fill(database, rows)
        run = 0
        for round_number in range(args.rounds):
            for scenario in args.scenarios:
                order = args.apps if round_number % 2 == 0 else args.apps[::-1]
                for app in (a for a in order if scenario in (args.known[a].scenarios or SCENARIOS)):
                    run += 1
                    url, pid = servers[app].url, servers[app].process.pid  # type: ignore[union-attr]
                    cpu_before, db_before = cpu_seconds(pid), postgres_cpu_seconds()
                    old = app == "old"
                    if args.generator == "wrk":
                        result = run_wrk(url, scenario, rows, run, args.seconds, folder, old)
                    else:
                        result = asyncio.run(run_httpx(url, scenario, rows, run, args.seconds, old))
                    requests = max(result.rps * args.seconds, 1)
                    result.cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / requests
                    if args.known[app].postgres:
                        result.db_cpu_us = (postgres_cpu_seconds() - db_before) * 1e6 / requests
                    table.add(rows, app, scenario, result)
        for app, server in servers.items():
            table.peak_rss_mb[(rows, app)] = peak_rss_mb(server.process.pid)  # type: ignore[union-attr]
    finally:
        for server in servers.values():
            server.stop()
        databases.close()


def spread(ratios: list[float]) -> str:
    """The median ratio and its range over rounds, e.g. "0.82 (0.78-0.86)"."""
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def report(args: argparse.Namespace, table: Table) -> bool:
    ok, first = True, args.apps[0]
    for rows in args.rows:
        print(f"\n{rows:,} rows, median of {args.rounds} round(s) of {args.seconds:g} s, {args.generator} -t2 -c32")
        print(
            f"{'scenario':10} {'app':8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'cpu us':>7}"
            f" {'db us':>6}  {'cpu/' + first:>18}  {'req/s/' + first:>18}"
        )
        for scenario in args.scenarios:
            for app in (a for a in args.apps if (rows, a, scenario) in table.results):
                result = table.median(rows, app, scenario)
                versus = ""
                if app != first:
                    cpu = spread(table.ratios(rows, app, first, scenario, "cpu_us"))
                    rps = spread(table.ratios(rows, app, first, scenario, "rps"))
                    versus = f"  {cpu:>18}  {rps:>18}"
                print(
                    f"{scenario:10} {app:8} {result.rps:7.0f} {result.p50_ms:7.2f} {result.p99_ms:7.2f}"
                    f" {result.non_2xx + result.errors:7d} {result.cpu_us:7.0f}"
                    f" {'' if result.db_cpu_us is None else f'{result.db_cpu_us:.0f}':>6}{versus}"
                )
                ok &= result.non_2xx + result.errors == 0
        memory = ", ".join(f"{app} {table.peak_rss_mb[(rows, app)]:.0f}" for app in args.apps)
        print(f"peak memory (MB): {memory}")
    if len(args.rows) > 1:
        small, large = args.rows[0], args.rows[-1]
        for scenario in [s for s in args.scenarios if s.startswith("list")]:
            growth = table.median(large, first, scenario).cpu_us / table.median(small, first, scenario).cpu_us
            print(f"{scenario}: a page of {first} costs {growth:.2f}x the CPU at {large:,} rows as at {small:,}")
    return ok


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=DIR", help="the main.py in DIR")
    parser.add_argument("--pg-peer", action="append", default=[], metavar="NAME=DIR[:WORKERS]", help="on PostgreSQL")
    parser.add_argument("--apps", nargs="+", help="which apps, in order; ratios are to the first (default: all)")
    parser.add_argument("--generator", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
    parser.add_argument("--smoke", action="store_true", help="CI: 1,000 rows, one round of 1 s")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server, for the apps pg and pg2")
    args = parser.parse_args()
    args.known = dict(APPS)
    for peer in args.peer:
        name, _, folder = peer.partition("=")
        args.known[name] = App(Path(folder).resolve(), "main:app")
    for peer in args.pg_peer:
        name, _, folder = peer.partition("=")
        folder, _, workers = folder.partition(":")
        args.known[name] = App(Path(folder).resolve(), "main:app", workers=int(workers or 1), postgres=True)
    defaults = [app for app in DEFAULT_APPS if app != "old" or (OLD / "old_sync_main.py").exists()]
    defaults += ["pg", "pg2"] if args.postgres else []
    if any(args.known[app].postgres for app in args.apps or []) and not args.postgres:
        parser.error("pg and pg2 need --postgres URL")
    args.apps = args.apps or [*defaults, *(peer.partition("=")[0] for peer in args.peer + args.pg_peer)]
    if "old" in args.apps and not (OLD / "old_sync_main.py").exists():
        parser.error(f"no old version at {OLD}: leave `old` out with --apps")
    if unknown := set(args.apps) - set(args.known):
        parser.error(f"unknown apps {sorted(unknown)}; give them with --peer NAME=DIR")
    if args.smoke:
        args.rows, args.rounds, args.seconds = [1000], 1, 1
    started = time.monotonic()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="bookapi-bench-") as folder:
        args.known["sync"].folder = write_twin(Path(folder) / "twin")
        for rows in args.rows:
            measure(args, table, rows, Path(folder))
    ok = report(args, table)
    figures = " ".join(
        f"{app}:{s}={statistics.median(table.ratios(args.rows[0], app, args.apps[0], s, 'cpu_us')):.2f}"
        for app in args.apps[1:]
        for s in args.scenarios
        if (args.rows[0], app, s) in table.results
    )
    non_2xx = sum(r.non_2xx + r.errors for runs in table.results.values() for r in runs)
    seconds = time.monotonic() - started
    print(f"bench: {'PASS' if ok else 'FAIL'} cpu_per_request_vs_{args.apps[0]} {figures} non_2xx={non_2xx}", end="")
    print(f" seconds={seconds:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_())
