"""Contract check: /openapi.json, as a real `uvicorn main:app` serves it, judged by tools nobody on the team wrote. It
runs twice: without API_KEY (writes open, so no security and no 401 may be documented) and with it.

    python checks/contract.py                      # 300 examples per operation and phase
    python checks/contract.py --examples 100       # the CI size
    python checks/contract.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

1. Schemathesis with every check (`--checks all`) and every phase, the stateful one included. Any failure fails this
   check, except the noise in NOISE: a 422 whose every error breaks a rule that JSON Schema cannot write, each listed
   with its reason. So is any traceback in the server's log.
2. Two OpenAPI linters, Redocly CLI (its recommended rules) and Spectral (`spectral:oas`): no error, and no warning
   but those in WARNINGS, each with its reason. They come from npm, pinned in NPM_TOOLS, installed under --tools.
3. openapi-python-client generates a client; its functions must be named after the routes (`list_books`), and it
   drives every route: create, list with filters and paging, read, PATCH, PUT, DELETE, and the 404, 409, 422 and 401
   it documents. The generator does not type response headers: X-Total-Count and Location are read from
   `response.headers`, where they must be.
"""

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import Server, fresh_database, summary

KEY = "contract-check-key"
NPM_TOOLS = ["@redocly/cli@2.77.0", "@stoplight/spectral-cli@6.16.3"]


def isbn_rule(error: dict[str, Any], _body: Any) -> bool:
    return error["loc"][-1] == "isbn" and error["msg"].startswith(("not a valid ISBN", "979-0 begins an ISMN"))


def float_year(error: dict[str, Any], body: Any) -> bool:
    value = body.get(error["loc"][-1]) if isinstance(body, dict) and error["loc"][0] == "body" else None
    return error["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def one_line_rule(error: dict[str, Any], _body: Any) -> bool:
    return error["msg"].startswith(("must be one line of text", "must contain a visible character"))


def stripped_to_nothing(error: dict[str, Any], _body: Any) -> bool:
    return error["type"] == "string_too_short"


NOISE: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    "an ISBN's check digit (and 979-0, printed music) cannot be written in JSON Schema": isbn_rule,
    'JSON Schema counts 1815.0 as an integer; the API refuses it on purpose, as it refuses "1815"': float_year,
    "control and invisible characters are Unicode categories, which no portable JSON Schema pattern names": (
        one_line_rule
    ),
    "spaces around a text are not part of it: ' ' is an empty title, which minLength cannot see": stripped_to_nothing,
}
WARNINGS = {
    "info-license": "the project has not chosen a licence; naming one is its owners' decision, not the document's",
    "info-contact": "a contact belongs to whoever runs the server, not to the code",
    "tag-description": "the two tags, books and health, are their own description",
}


def decoded(content: dict[str, str] | None) -> str:
    if not content:
        return ""
    return base64.b64decode(content["$base64"]).decode(errors="replace") if "$base64" in content else content["string"]


def noise_reasons(interaction: dict[str, Any]) -> set[str]:
    """The reasons from NOISE that explain this response, if it is a 422 whose every error is noise; else none."""
    response = interaction.get("response") or {}
    if response.get("status_code") != 422:
        return set()
    try:
        errors = json.loads(decoded(response.get("content")))["detail"]
        body = json.loads(decoded(interaction["request"].get("body")) or "null")
    except (ValueError, KeyError, TypeError):
        return set()
    reasons = [next((why for why, test in NOISE.items() if test(e, body)), "") for e in errors]
    return set(reasons) if reasons and all(reasons) else set()


def schemathesis(server: Server, folder: Path, examples: int, headers: list[str]) -> dict[str, Any]:
    events = folder / "events.ndjson"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks", "all"]
    command += ["--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(examples)]
    command += ["--output-sanitize", "false", "--generation-database", "none", "--no-color", "--continue-on-failure"]
    command += ["--report", "ndjson", "--report-ndjson-path", str(events), *headers]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    failures: dict[str, str] = {}
    noise: dict[str, int] = {}
    cases = 0
    for line in events.read_text().splitlines() if events.exists() else []:
        event = json.loads(line)
        recorder = event.get("ScenarioFinished", {}).get("recorder", {})
        cases += len(recorder.get("cases", {}))
        for case_id, checks in recorder.get("checks", {}).items():
            for check in (c for c in checks if c["status"] == "failure"):
                interaction = recorder.get("interactions", {}).get(case_id, {})
                failure = check["failure_info"]["failure"]
                if reasons := noise_reasons(interaction):
                    for reason in reasons:
                        noise[reason] = noise.get(reason, 0) + 1
                    continue
                request, response = interaction.get("request", {}), interaction.get("response") or {}
                key = f"{failure['code']} {failure['operation']}"
                failures.setdefault(
                    key,
                    f"{failure['title']}: {request.get('method')} {request.get('uri')} "
                    f"body={decoded(request.get('body'))[:300]!r} -> {response.get('status_code')} "
                    f"{decoded(response.get('content'))[:300]}",
                )
    if not events.exists():
        failures["no report"] = result.stdout[-2000:] + result.stderr[-2000:]
    return {"cases": cases, "failures": failures, "noise": noise, "exit": result.returncode}


def npm_tools(folder: Path) -> Path:
    bin_dir = folder / "node_modules" / ".bin"
    if not all((bin_dir / name).exists() for name in ("redocly", "spectral")):
        npm = shutil.which("npm") or sys.exit("contract: npm is needed for the OpenAPI linters (apt install npm)")
        subprocess.run([npm, "install", "--prefix", str(folder), "--no-fund", "--no-audit", *NPM_TOOLS], check=True)
    return bin_dir


def lint(bin_dir: Path, document: Path) -> dict[str, Any]:
    """Errors and warnings, as rule -> count, from Redocly (recommended) and Spectral (spectral:oas)."""
    found: dict[str, dict[str, int]] = {"error": {}, "warning": {}}
    redocly = subprocess.run(
        [str(bin_dir / "redocly"), "lint", str(document), "--format", "json"], capture_output=True, text=True
    )
    for problem in json.loads(redocly.stdout[redocly.stdout.index("{") :])["problems"]:
        severity = "error" if problem["severity"] == "error" else "warning"  # Redocly's "warn"
        found[severity][problem["ruleId"]] = found[severity].get(problem["ruleId"], 0) + 1
    ruleset = document.parent / ".spectral.json"
    ruleset.write_text('{"extends": ["spectral:oas"]}')
    spectral = subprocess.run(
        [str(bin_dir / "spectral"), "lint", str(document), "-r", str(ruleset), "-f", "json", "--quiet"],
        capture_output=True,
        text=True,
    )
    for problem in json.loads(spectral.stdout or "[]"):
        severity = ["error", "warning", "warning", "warning"][problem["severity"]]  # Spectral: 0 error ... 3 hint
        found[severity][problem["code"]] = found[severity].get(problem["code"], 0) + 1
    return found


def generated_client(server: Server, folder: Path, key: str | None) -> dict[str, Any]:
    """Generate a client from the document and drive every route with it; what went wrong, as a list."""
    folder.mkdir()
    (folder / "openapi.json").write_text(httpx.get(f"{server.url}/openapi.json").text)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json", "--meta", "none"]
    subprocess.run([*command, "--output-path", "book_api_client"], cwd=folder, check=True, capture_output=True)
    functions = sorted(p.stem for p in (folder / "book_api_client" / "api").rglob("*.py") if p.stem != "__init__")
    if functions != ["create_book", "delete_book", "health", "list_books", "patch_book", "read_book", "replace_book"]:
        return {"functions": len(functions), "problems": [f"function names, not the routes': {functions}"]}
    sys.path.insert(0, str(folder))
    for name in [m for m in sys.modules if m.startswith("book_api_client")]:
        del sys.modules[name]
    from book_api_client import AuthenticatedClient, Client  # type: ignore[import-not-found]
    from book_api_client.api.books import (  # type: ignore[import-not-found]
        create_book,
        delete_book,
        list_books,
        patch_book,
        read_book,
        replace_book,
    )
    from book_api_client.api.health import health  # type: ignore[import-not-found]
    from book_api_client.models import BookIn, BookPatch, Error, HTTPValidationError, ListBooksSort  # type: ignore

    sys.path.remove(str(folder))
    problems = []
    if ListBooksSort("-title").name != "TITLE_DESCENDING":
        problems.append(f"sort names: {[member.name for member in ListBooksSort]}")
    client = Client(base_url=server.url)
    if key is not None:
        client = AuthenticatedClient(base_url=server.url, token=key, prefix="", auth_header_name="X-API-Key")

    def expect(what: str, response: Any, status: int, parsed_type: type | None = None) -> Any:
        if response.status_code != status or (parsed_type and not isinstance(response.parsed, parsed_type)):
            problems.append(f"{what}: {response.status_code} {type(response.parsed).__name__} {response.content[:200]}")
        return response

    books = [("Emma", "Jane Austen", 1815, "9780141439587"), ("Persuasion", "Jane Austen", 1817, None)]
    books += [("Dune", "Frank Herbert", 1965, None)]
    ids = []
    for title, author, year, isbn in books:
        made = expect("create", create_book.sync_detailed(client=client, body=BookIn(title, author, year, isbn)), 201)
        ids.append(made.parsed.id)
        if made.headers.get("location") != f"/books/{made.parsed.id}":
            problems.append(f"Location header: {made.headers.get('location')}")
    again = BookIn("Emma again", "Jane Austen", 1815, "9780141439587")
    expect("duplicate isbn", create_book.sync_detailed(client=client, body=again), 409, Error)
    page = list_books.sync_detailed(client=client, author="jane austen", sort=ListBooksSort.TITLE_DESCENDING, limit=1)
    expect("list", page, 200, list)
    if [b.title for b in page.parsed] != ["Persuasion"] or page.headers.get("x-total-count") != "2":
        problems.append(
            f"list page: {[b.title for b in page.parsed]} X-Total-Count={page.headers.get('x-total-count')}"
        )
    later = list_books.sync_detailed(client=client, year_from=1816, year_to=1900, offset=0)
    if [b.title for b in later.parsed] != ["Persuasion"]:
        problems.append(f"year filters: {[b.title for b in later.parsed]}")
    expect("read", read_book.sync_detailed(ids[0], client=client), 200)
    expect("read a missing book", read_book.sync_detailed(10**9, client=client), 404, Error)
    patched = expect("patch", patch_book.sync_detailed(ids[1], client=client, body=BookPatch(year=1818)), 200)
    if patched.parsed.year != 1818 or patched.parsed.title != "Persuasion":
        problems.append(f"patch: {patched.parsed}")
    replaced = BookIn("Dune Messiah", "Frank Herbert", 1969, None)
    expect("put", replace_book.sync_detailed(ids[2], client=client, body=replaced), 200)
    expect("422", patch_book.sync_detailed(ids[2], client=client, body=BookPatch(year=0)), 422, HTTPValidationError)
    expect("delete", delete_book.sync_detailed(ids[2], client=client), 204)
    expect("read the deleted book", read_book.sync_detailed(ids[2], client=client), 404, Error)
    expect("health", health.sync_detailed(client=client), 200)
    if key is not None:
        keyless = Client(base_url=server.url)
        expect("401", delete_book.sync_detailed(ids[0], client=keyless), 401, Error)
    return {"functions": len(functions), "problems": problems}


def one_configuration(args: argparse.Namespace, key: str | None, tools: Path) -> tuple[bool, dict[str, Any]]:
    env = {"API_KEY": key} if key else {}
    with tempfile.TemporaryDirectory(prefix="bookapi-contract-") as name:
        folder = Path(name)
        with fresh_database(args.postgres) as url, Server(url, env=env, extra_args=["--http", "h11"]) as server:
            fuzz = schemathesis(server, folder, args.examples, ["-H", f"X-API-Key: {key}"] if key else [])
            tracebacks = server.server_errors_logged()
        document = folder / "openapi.json"
        with fresh_database(args.postgres) as url, Server(url, env=env) as server:
            document.write_text(httpx.get(f"{server.url}/openapi.json").text)
            linted = lint(tools, document)
            client = generated_client(server, folder / "client", key)
    unlisted = {rule: n for rule, n in linted["warning"].items() if rule not in WARNINGS}
    ok = not fuzz["failures"] and not tracebacks and not linted["error"] and not unlisted and not client["problems"]
    for failure, example in fuzz["failures"].items():
        print(f"  schemathesis {failure}: {example}")
    for problem in client["problems"]:
        print(f"  generated client: {problem}")
    figures = {
        "api_key": "set" if key else "unset",
        "cases": fuzz["cases"],
        "failures": len(fuzz["failures"]),
        "noise": sum(fuzz["noise"].values()),
        "tracebacks": tracebacks,
        "lint_errors": linted["error"] or 0,
        "unlisted_warnings": unlisted or 0,
        "client_functions": client["functions"],
        "client_problems": len(client["problems"]),
    }
    for reason, count in fuzz["noise"].items():
        print(f"  noise ({count}): {reason}")
    for rule, count in linted["warning"].items():
        print(f"  warning {rule} ({count}): {WARNINGS.get(rule, 'NOT LISTED')}")
    return ok, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="most test cases per operation and phase")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL (default: a new SQLite file)")
    parser.add_argument("--tools", type=Path, default=Path.home() / ".cache" / "bookapi-contract-tools")
    args = parser.parse_args()
    started = time.monotonic()
    tools = npm_tools(args.tools)
    results = [one_configuration(args, key, tools) for key in (None, KEY)]
    ok = all(passed for passed, _ in results)
    for _, figures in results:
        summary("contract", ok, figures)
    return summary("contract", ok, {"seconds": round(time.monotonic() - started)})


if __name__ == "__main__":
    sys.exit(main())
