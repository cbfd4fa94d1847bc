"""No hidden requirements: every literal an exercise's checker asserts is written in that exercise's README.md.

    python -m pytest checks/test_exercise_texts.py

A checker may only require what its exercise states. This reads each checker's source and collects what it
requires of the learner's code: the status codes and strings it asserts, the paths it requests (their words), the
headers it sends or reads, the fields of the bodies it sends, and the tables its SQL reads. Each must appear in the
exercise's README.md, or in the top README.md (the API as it already is, which the learner knows). A failure names
the literal and the exercise; fix the exercise text, or the checker.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = sorted(folder for folder in (ROOT / "exercises").iterdir() if list(folder.glob("check_*.py")))
SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)|\bSHOW\s+([A-Za-z_]+)", re.IGNORECASE)


def strings_in(node: ast.AST) -> list[str]:
    """The constant strings of a node: a plain string, or the constant parts of an f-string (3 characters or more)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [part.value for part in node.values if isinstance(part, ast.Constant)]
        return [str(part).strip() for part in parts if len(str(part).strip()) >= 3]
    return []


def required_literals(source: str) -> set[str]:
    """What a checker's source asserts about the learner's code (see the module docstring)."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):  # statuses and strings that the assertion compares (not its message)
            for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                for operand in [compare.left, *compare.comparators]:
                    if isinstance(operand, ast.Constant) and type(operand.value) is int and 100 <= operand.value < 600:
                        found.add(str(operand.value))
                    found.update(strings_in(operand))
                    if isinstance(operand, ast.Dict):  # a body compared whole: its fields and its texts
                        parts = [*(key for key in operand.keys if key is not None), *operand.values]
                        found.update(s for part in parts for s in strings_in(part))
            for call in (n for n in ast.walk(node.test) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr in {"startswith", "endswith"}:
                    found.update(s for argument in call.args for s in strings_in(argument))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method in {"get", "post", "put", "patch", "delete", "request"} and node.args:  # a request's path
                path = node.args[-1] if method == "request" else node.args[0]
                for text in strings_in(path):
                    found.update(word for word in re.split(r"[/{}]", text) if word and not word.isdigit())
            for keyword in node.keywords:  # the fields of a body sent, and the headers sent
                if keyword.arg in {"json", "data", "headers"} and isinstance(keyword.value, ast.Dict):
                    found.update(s for key in keyword.value.keys if key is not None for s in strings_in(key))
            if method == "get" and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "headers":
                found.update(s for argument in node.args for s in strings_in(argument))  # a header read
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "text":  # raw SQL
            for sql in (s for argument in node.args for s in strings_in(argument)):
                found.update(name for match in SQL_TABLE.finditer(sql) for name in match.groups() if name)
    return {literal for literal in found if not literal.startswith(("pg_", "sqlite_"))}  # the databases' catalogues


def missing_from(literals: set[str], text: str) -> list[str]:
    lowered = text.lower()
    return sorted(
        literal
        for literal in literals
        if not (re.search(rf"\b{literal}\b", text) if literal.isdigit() else literal.lower() in lowered)
    )


@pytest.mark.parametrize("exercise", EXERCISES, ids=[folder.name for folder in EXERCISES])
def test_every_literal_a_checker_asserts_is_in_its_exercise_text(exercise: Path) -> None:
    text = (exercise / "README.md").read_text() + (ROOT / "README.md").read_text()
    literals = set().union(*(required_literals(checker.read_text()) for checker in exercise.glob("check_*.py")))
    assert literals, "the rule found nothing to check: has the checker's shape changed?"
    assert missing_from(literals, text) == [], f"{exercise.name}: its checker asserts what its README does not say"


def test_the_rule_catches_a_hidden_requirement() -> None:
    checker = """
async def test_login(client):
    response = await client.post("/token", data={"username": "ada", "password": "x"}, headers={"X-Trace": "1"})
    assert response.status_code == 418, "message text is not a requirement"
    assert response.json() == {"detail": "Wrong username or password"}
    async with engine.connect() as connection:
        await connection.scalar(text("SELECT count(*) FROM reviews"))
"""
    text = "POST /token takes a form with username and password; 401 if wrong."
    assert missing_from(required_literals(checker), text) == [
        "418",
        "Wrong username or password",
        "X-Trace",
        "detail",
        "reviews",
    ]


def test_the_sizes_table_gives_each_solution_as_it_is() -> None:
    """exercises/README.md's table of solution sizes, against `git apply --numstat` of each patch."""
    table = (ROOT / "exercises" / "README.md").read_text()
    for exercise in EXERCISES:
        numbers = subprocess.run(
            ["git", "apply", "--numstat", str(exercise / "solution.patch")], capture_output=True, text=True, check=True
        ).stdout.split()
        added, removed = sum(map(int, numbers[0::3])), sum(map(int, numbers[1::3]))
        row = re.search(rf"^\| {int(exercise.name[:2])}\. [^|]+\| (\d+) added, (\d+) removed", table, re.MULTILINE)
        assert row, f"exercises/README.md has no size row for {exercise.name}"
        assert row.groups() == (str(added), str(removed)), f"{exercise.name}: {added} added, {removed} removed"


def test_every_solution_with_migrations_keeps_ids_the_same_way() -> None:
    """Exercises 3, 4, 6 and 7 each ship migrations/env.py: its ids_never_reused must be the same in all of them."""
    functions = {}
    for exercise in EXERCISES:
        patch = (exercise / "solution.patch").read_text()
        if "+++ b/migrations/env.py" not in patch:
            continue
        env = patch.split("+++ b/migrations/env.py", 1)[1].split("\ndiff --git", 1)[0]
        source = "\n".join(line[1:] for line in env.splitlines() if line.startswith("+"))
        tree = ast.parse(source)
        found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "ids_never_reused"]
        assert found, f"{exercise.name}: migrations/env.py has no ids_never_reused"
        functions[exercise.name] = ast.get_source_segment(source, found[0])
    assert len(functions) >= 4, functions.keys()
    assert len(set(functions.values())) == 1, f"ids_never_reused differs between {sorted(functions)}"


def test_the_checkers_starting_table_is_the_starting_main_pys() -> None:
    """The checkers of exercises 3, 4 and 7 build the databases a learner already has from one frozen copy of the
    books table as the starting main.py makes it (STARTING_BOOKS, in exercise 3's migration_tools.py). A change to
    BookModel must be carried into it: this says where."""
    import sqlalchemy
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    import main

    sys.path.append(str(ROOT / "exercises" / "03-migrations"))
    from migration_tools import STARTING_BOOKS

    def ddl(table: sqlalchemy.Table, dialect: sqlalchemy.Dialect) -> list[str]:
        statements = [CreateTable(table), *(CreateIndex(index) for index in table.indexes)]
        return sorted(str(statement.compile(dialect=dialect)).replace(" IF NOT EXISTS", "") for statement in statements)

    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert ddl(STARTING_BOOKS, dialect) == ddl(main.BookModel.__table__, dialect), (
            f"exercises/03-migrations/migration_tools.py: STARTING_BOOKS differs from BookModel on {dialect.name}"
        )
