"""main.py's synchronous twin, for the benchmark: the same app, with `def` routes on the blocking sqlite3 driver.

    python checks/sync_twin.py FOLDER        # writes FOLDER/main.py

It is made from main.py each time, never kept, so it cannot drift: the session, the routes and `update_book`
become plain functions (FastAPI runs them in its thread pool); the lifespans (main.py's and the demo books') stay
async, with blocking calls inside, as they run once; `create_async_engine` becomes `create_engine` on `sqlite://`
(sqlite3), `async_sessionmaker` becomes `sessionmaker`, and `AsyncSession` becomes `Session`. Everything else (the
schemas, the error handlers, the middleware, SQLite's one pooled connection and its PRAGMAs) is main.py's own.
`checks/test_sync_twin.py` sends both the same requests and compares every answer; it fails if a change to main.py
leaves something here that no longer converts.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKING = [  # the functions that touch the database, and so become plain `def`s
    "get_session",
    "update_book",
    "list_books",
    "read_book",
    "create_book",
    "replace_book",
    "patch_book",
    "delete_book",
    "health",
]
RUN_ONCE = ["lifespan", "add_demo_books"]  # async context managers that FastAPI enters: async, with blocking calls
RENAMES = [
    (r"\bcreate_async_engine\b", "create_engine"),
    (r"\basync_sessionmaker\b", "sessionmaker"),
    (r"\bAsyncSession\b", "Session"),
    (r"engine\.sync_engine\b", "engine"),
    (r"await connection\.run_sync\(Base\.metadata\.create_all\)", "Base.metadata.create_all(connection)"),
    (r"await engine\.dispose\(\)", "engine.dispose()"),
    (
        r"from sqlalchemy\.ext\.asyncio import Session, sessionmaker, create_engine",
        "from sqlalchemy import create_engine",
    ),
    (
        r"from sqlalchemy\.orm import DeclarativeBase,",
        "from sqlalchemy.orm import Session, sessionmaker, DeclarativeBase,",
    ),
    (r"from collections\.abc import AsyncIterator", "from collections.abc import AsyncIterator, Iterator"),
    (r"def get_session\(\) -> AsyncIterator\[Session\]", "def get_session() -> Iterator[Session]"),
    (
        r'(DATABASE_URL = os\.getenv\("DATABASE_URL", "sqlite\+aiosqlite:///\./books\.db"\))',
        r'\1.replace("+aiosqlite", "")',
    ),
]


def twin_source(source: str) -> str:
    """main.py's source, made synchronous (see the module docstring)."""
    for pattern, replacement in RENAMES:
        source, count = re.subn(pattern, replacement, source)
        if not count:
            raise ValueError(f"main.py no longer has {pattern!r}: update checks/sync_twin.py")
    lines = source.split("\n")
    inside = False
    for number, line in enumerate(lines):
        if line.startswith(("async def ", "def ", "@", "class ", "if ")) or (line and not line[0].isspace()):
            inside = any(line.startswith(f"async def {name}(") for name in BLOCKING + RUN_ONCE)
            if any(line.startswith(f"async def {name}(") for name in BLOCKING):
                line = line.removeprefix("async ")
        if inside:
            line = line.replace("async with ", "with ").replace("await ", "")
        lines[number] = re.sub(rf"await ({'|'.join(BLOCKING)})\(", r"\1(", line)
    return "\n".join(lines)


def write_twin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(twin_source((ROOT / "main.py").read_text()))
    return folder


if __name__ == "__main__":
    print(write_twin(Path(sys.argv[1])) / "main.py")
