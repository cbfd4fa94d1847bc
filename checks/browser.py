"""Browser check: /docs and /redoc render every operation in headless Chromium with no network but this server, and
with SQL_ECHO=1 /docs shows the SQL each request ran.

    python checks/browser.py [--out checks/out]

Chromium (Debian package `chromium`) gets a dead proxy for every host but 127.0.0.1 and a resolver that knows no
names, so a page that needs a CDN stays blank. The check counts the operations each page rendered, against the count
in /openapi.json, and saves a screenshot of each. A control app (checks/cdn_control.py: stock FastAPI, assets from a
CDN) must render none under the same cut. Then, against a server started with SQL_ECHO=1, Playwright clicks
**Try it out** and **Execute** in /docs for POST, GET, PATCH and DELETE, as a learner would, and reads the response
headers /docs shows under each answer: each must show `x-sql` with the statement that request ran.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, Server, fresh_database, summary
from playwright.sync_api import sync_playwright

OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: every request through the proxy fails
    "--proxy-bypass-list=127.0.0.1",  # except those to the API itself
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # and no host name resolves
]


def chromium(url: str, *arguments: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bookapi-chromium-") as profile:
        command = [find_chromium(), *OFFLINE, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
        result = subprocess.run([*command, *arguments, url], capture_output=True, text=True, timeout=120)
    return result.stdout


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium found: apt-get install -y chromium")


def rendered_operations(page: str, dom: str) -> set[str]:
    if page == "/docs":  # Swagger UI: one block per operation, id="operations-<tag>-<operationId>"
        return set(re.findall(r'id="operations-(?!tag-)([^"]+)"', dom))
    return set(re.findall(r'data-section-id="tag/[^"]+/operation/([^"]+)"', dom))  # ReDoc: one section each


CLICKED = [  # operation, path parameter, and what its x-sql must hold
    ("create_book", None, "INSERT INTO books"),
    ("read_book", "1", "SELECT books.id"),
    ("patch_book", "1", "UPDATE books SET year=?"),
    ("delete_book", "1", "DELETE FROM books"),
]


def sql_shown_in_docs(url: str, screenshot: Path) -> dict[str, str]:
    """Execute each operation of CLICKED in /docs; what /docs shows of its x-sql header ("" if nothing)."""
    shown = {}
    with sync_playwright() as playwright:
        flags = [flag for flag in OFFLINE if flag != "--headless"]
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(f"{url}/docs")
        for operation_id, book_id, _ in CLICKED:
            operation = page.locator(f"#operations-books-{operation_id}")
            operation.locator(".opblock-summary").click()
            operation.locator(".try-out__btn").click()
            if book_id:
                operation.locator('input[placeholder="book_id"]').fill(book_id)
            operation.locator(".execute").click()
            headers = operation.locator(".live-responses-table .response-col_description pre").last
            headers.wait_for(timeout=10_000)
            lines = [line.strip() for line in headers.inner_text().splitlines()]
            shown[operation_id] = next((line for line in lines if line.startswith("x-sql:")), "")
            if operation_id.startswith("patch"):
                operation.screenshot(path=str(screenshot))
        browser.close()
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "checks" / "out", help="folder for the screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    figures: dict[str, object] = {}
    with fresh_database() as database_url:
        with Server(database_url, env={"DEMO_BOOKS": "1"}) as server:
            expected = sum(len(methods) for methods in httpx.get(f"{server.url}/openapi.json").json()["paths"].values())
            figures["operations"] = expected
            for page in ("/docs", "/redoc"):
                name = page.strip("/")
                figures[name] = len(rendered_operations(page, chromium(server.url + page, "--dump-dom")))
                screenshot = args.out / f"{name}.png"
                chromium(server.url + page, f"--screenshot={screenshot}", "--window-size=1280,2200")
                figures[f"{name}_png_bytes"] = screenshot.stat().st_size if screenshot.exists() else 0
        with Server(database_url, app="cdn_control:app") as control:
            figures["cdn_control_docs"] = len(
                rendered_operations("/docs", chromium(control.url + "/docs", "--dump-dom"))
            )
    with fresh_database() as database_url, Server(database_url, env={"SQL_ECHO": "1"}) as server:
        shown = sql_shown_in_docs(server.url, args.out / "docs-patch-sql.png")
    missing = [operation for operation, _, words in CLICKED if words not in shown.get(operation, "")]
    figures["x_sql_shown"] = f"{len(CLICKED) - len(missing)}/{len(CLICKED)}"
    figures["patch_x_sql"] = repr(shown.get("patch_book", ""))
    figures["screenshots"] = str(args.out)
    figures["seconds"] = round(time.monotonic() - started, 1)
    ok = (
        figures["docs"] == figures["redoc"] == expected > 0
        and figures["cdn_control_docs"] == 0
        and not missing
        and all(figures[f"{name}_png_bytes"] > 10_000 for name in ("docs", "redoc"))  # type: ignore[operator]
    )
    if not ok:
        print(json.dumps(figures, indent=1))
    return summary("browser", ok, figures)


if __name__ == "__main__":
    sys.exit(main())
