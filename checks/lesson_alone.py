"""The lesson stands alone: main.py cut just before its banner ("# --- Protecting the API") is a complete app.

    python checks/lesson_alone.py

The lines above the banner go to main.py in an empty folder; `uvicorn main:app` starts there on a new SQLite file
(with no setting but DATABASE_URL), and the README's tour runs against it: POST 201 with Location, GET by id, the
author filter with X-Total-Count, a PATCH of one field, a 422, DELETE 204 and then 404. Then the same tour runs
against the whole main.py, which must answer it the same way. And the lesson must not define a name twice, nor the
last section assign one of the lesson's names again, nor an attribute or item of one (`app.openapi = ...`).
"""

import ast
import sys
import tempfile
from pathlib import Path

import httpx
from common import ROOT, Server, fresh_database, summary

BANNER = "# --- Protecting the API"
EMMA = {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "0-14-143958-0"}
PRIDE = {"title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813}


def tour(url: str) -> list[str]:
    """The README's tour; returns what went wrong, if anything."""
    problems: list[str] = []

    def expect(what: str, ok: bool) -> None:
        if not ok:
            problems.append(what)

    with httpx.Client(base_url=url, timeout=10) as client:
        created = client.post("/books", json=EMMA)
        expect(f"POST /books is 201 (got {created.status_code})", created.status_code == 201)
        location = created.headers.get("location", "")
        expect(f"POST gives Location /books/<id> (got {location!r})", location == f"/books/{created.json().get('id')}")
        expect("the isbn is stored as 13 digits", created.json().get("isbn") == "9780141439587")
        client.post("/books", json=PRIDE)
        read = client.get(location)
        expect(f"GET {location} is the book created", read.status_code == 200 and read.json() == created.json())
        listed = client.get("/books", params={"author": "jane austen", "sort": "-year"})
        titles = [book["title"] for book in listed.json()] if listed.status_code == 200 else []
        expect(f"the author filter finds both, newest first (got {titles})", titles == ["Emma", "Pride and Prejudice"])
        expect("X-Total-Count is 2", listed.headers.get("x-total-count") == "2")
        patched = client.patch(location, json={"year": 1816})
        expect(
            "PATCH changes only the year", patched.status_code == 200 and patched.json() == read.json() | {"year": 1816}
        )
        refused = client.post("/books", json={"title": "", "author": "Jane Austen", "year": 18130})
        locations = [error["loc"] for error in refused.json().get("detail", [])] if refused.status_code == 422 else []
        expect(
            f"a bad book is a 422 naming title and year (got {locations})",
            locations == [["body", "title"], ["body", "year"]],
        )
        deleted = client.delete(location)
        expect(
            f"DELETE is 204 with no body (got {deleted.status_code})",
            deleted.status_code == 204 and not deleted.content,
        )
        expect("then GET is 404", client.get(location).status_code == 404)
    return problems


def names_assigned(statements: list[ast.stmt]) -> list[str]:
    """Every module-level name the statements bind (assignments, functions, classes, imports), `if` blocks included.
    An assignment to an attribute or an item counts as binding the name it starts from: `app.openapi = f` is "app"."""
    names: list[str] = []
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                while isinstance(target, ast.Attribute | ast.Subscript):
                    target = target.value
                if isinstance(target, ast.Name):
                    names.append(target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, ast.If | ast.Try | ast.For | ast.With):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            names += [name for block in blocks for name in names_assigned(block)]
    return names


def main() -> int:
    source = (ROOT / "main.py").read_text()
    if BANNER not in source:
        return summary("lesson_alone", False, {"problem": f"main.py has no line starting {BANNER!r}"})
    lesson, closing = source.split(BANNER, 1)
    lesson_names = names_assigned(ast.parse(lesson).body)
    rebound = sorted(set(names_assigned(ast.parse(BANNER + closing).body)) & set(lesson_names))
    twice = sorted({name for name in lesson_names if lesson_names.count(name) > 1})
    figures: dict[str, object] = {
        "lesson_lines": lesson.count("\n"),
        "rebound": rebound or "none",
        "twice": twice or "none",
    }
    with tempfile.TemporaryDirectory(prefix="bookapi-lesson-") as folder:
        (Path(folder) / "main.py").write_text(lesson)
        with fresh_database() as database_url:
            server = Server(database_url, app_dir=Path(folder))
            server.cwd = Path(folder)
            server.ready_path = "/books"  # the lesson alone has no /health
            try:
                with server:
                    lesson_problems = tour(server.url)
            except RuntimeError:  # it did not start: say why, from the last line of its log
                log = Path(server.log.name).read_text(errors="replace").strip().splitlines() or ["(no log)"]
                lesson_problems = [f"uvicorn main:app does not start: {log[-1]}"]
        with fresh_database() as database_url, Server(database_url) as server:
            whole_problems = tour(server.url)
    figures["lesson_tour"] = "; ".join(lesson_problems) or "ok"
    figures["whole_tour"] = "; ".join(whole_problems) or "ok"
    return summary("lesson_alone", not (lesson_problems or whole_problems or rebound or twice), figures)


if __name__ == "__main__":
    sys.exit(main())
