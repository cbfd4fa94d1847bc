"""The Book API: an async web API for a table of books, written to be read from top to bottom.

What an ORM is, and why we use one
----------------------------------
A database keeps rows in tables and speaks SQL. An ORM (object-relational mapper) lets Python work with those rows
as ordinary objects: you describe a table once, as a class (`BookModel` below), and then `session.add(book)` becomes
an INSERT and `await session.get(BookModel, 1)` a SELECT. SQLAlchemy writes the SQL for you (start the app with
SQL_ECHO=1 to watch it), the same code runs on SQLite and on PostgreSQL, and you get objects back instead of tuples.
FastAPI turns the `async def` functions under "Routes" into HTTP endpoints, documented at /docs.

The lesson, in order: configuration; engine and session; the model; the schemas; the routes. The last section,
"Protecting the API", guards the lesson against bad input and unusual clients: skip it on a first reading.
"""

import datetime
import logging
import os
import re
import secrets
import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, Literal

import stdnum.isbn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from pydantic import MISSING, AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from sqlalchemy import BigInteger, Integer, String, asc, delete, desc, event, exc, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from stdnum.exceptions import ValidationError as InvalidISBN

# --- Configuration: what differs between machines comes from environment variables, never from the code ------------

DATABASE_URL = os.getenv("DATABASE_URL", "sqlite+aiosqlite:///./books.db")
SQL_ECHO = os.getenv("SQL_ECHO") == "1"  # print every SQL statement the ORM sends
API_KEY = os.getenv("API_KEY")  # when set, writes need the header X-API-Key with this value
DEMO_BOOKS = os.getenv("DEMO_BOOKS") == "1"  # fill an empty table with a dozen books at start-up


# --- Engine and session: the engine keeps a pool of connections; a session is one unit of work ----------------------

# A pool of up to 15 connections, all kept open. SQLAlchemy's default keeps 5 and, under load, opens and closes 10 more:
# on PostgreSQL a new server process each time, and 1/5 more CPU per write. On SQLite the last section keeps just one.
try:
    engine = create_async_engine(DATABASE_URL, echo=SQL_ECHO, pool_size=15, max_overflow=0)
except (exc.ArgumentError, exc.InvalidRequestError, ImportError, TypeError) as error:  # a URL SQLAlchemy cannot use
    problem = "a database in memory, which no pool of connections can share" if isinstance(error, TypeError) else error
    sys.exit(
        f"DATABASE_URL={DATABASE_URL!r} cannot be used ({problem}). Use an async URL such as"
        " sqlite+aiosqlite:///./books.db, or postgresql+asyncpg://user:password@host/db after pip install asyncpg."
    )
# expire_on_commit=False: objects keep their values after a commit, so reading them needs no new (async) query.
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request. Closing it gives its connection back to the pool and undoes anything uncommitted."""
    async with SessionLocal() as session:
        yield session


# FastAPI runs the code after `yield` once the request is done. scope="function" runs it as soon as the route returns,
# before the response is sent, so a client that reads its response slowly (or never) holds no database connection.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# --- The model: one Python class, one table --------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class BookModel(Base):
    """The table "books": one attribute per column. `Mapped[str | None]` is a column that may be empty (NULL)."""

    __tablename__ = "books"
    __table_args__ = {"sqlite_autoincrement": True}  # SQLite, like PostgreSQL, never gives a deleted book's id again

    # A 64-bit integer, which the database assigns (SQLite only numbers a column declared exactly INTEGER).
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(100))
    year: Mapped[int] = mapped_column(index=True)  # the index lets `sort=year` read one page, not the whole table
    isbn: Mapped[str | None] = mapped_column(String(13), unique=True)  # the database itself refuses a duplicate
    # Case-folded copies of title and author, to search and sort them in any case. SQLite's own lower() knows only
    # A-Z (one written in Python made searches 20 times slower), so Python folds them as a book is written.
    title_folded: Mapped[str] = mapped_column(index=True)
    author_folded: Mapped[str] = mapped_column(index=True)


def with_folded(fields: dict[str, Any]) -> dict[str, Any]:
    """What a write stores: `fields`, plus the case-folded copies of the title and author among them."""
    return fields | {f"{name}_folded": fields[name].casefold() for name in ("title", "author") if name in fields}


# --- Schemas: what a client may send, and what it gets back. Pydantic checks every rule before a route runs ---------


def nfc(value: Any) -> Any:
    """Unicode can spell "é" as one character or as "e" plus an accent: keep one spelling (NFC), so both match."""
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def one_line(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", value):
        raise ValueError("must be one line of text, without control characters such as NUL or newline")
    if value and not any(visible(c) for c in value):
        raise ValueError("must contain a visible character, not only invisible ones such as zero-width spaces")
    return value


def visible(c: str) -> bool:
    """A letter, number, punctuation mark or symbol, or one this Python's Unicode does not know yet (a new emoji)."""
    if c in "\u115f\u1160\u2800\u3164\uffa0":  # Hangul fillers and blank braille: letters and symbols that show nothing
        return False
    return unicodedata.category(c)[0] in "LNPS" or unicodedata.category(c) == "Cn"


def digits(value: Any) -> Any:
    """In a path or query, a number is ASCII digits only: not " 1", "1.0", "1_0" or "+1", which int() would take."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written with the digits 0-9 only")
    return value


def to_isbn13(value: str) -> str:
    """Accept ISBN-10 or ISBN-13, with hyphens or spaces; keep the 13 digits, so each book has one spelling."""
    try:
        isbn = stdnum.isbn.to_isbn13(stdnum.isbn.validate(value))
    except InvalidISBN as error:
        raise ValueError(f"not a valid ISBN-10 or ISBN-13: {error}") from None
    if isbn.startswith("9790"):  # 979-0 numbers printed music (ISMN), not books
        raise ValueError("979-0 begins an ISMN, the number of a piece of printed music, not an ISBN")
    return isbn


# Title and author are normalised by nfc, lose surrounding spaces, then must have 1 to 200 (or 100) characters, all
# on one line. (Each rule in Annotated wraps the ones before it, so NFC, a BeforeValidator listed last, runs first.)
OneLine, NFC = AfterValidator(one_line), BeforeValidator(nfc)
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OneLine, NFC]
Author = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), OneLine, NFC]
WholeNumber = Annotated[int, BeforeValidator(digits)]
Year = Annotated[WholeNumber, Field(ge=datetime.MINYEAR, le=datetime.MAXYEAR)]  # 1..9999, Python's datetime range
StrictYear = Annotated[Year, Field(strict=True)]  # in a JSON body, "1937", 1937.0 and true are not years
SearchText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), OneLine, NFC]
Isbn = Annotated[str, AfterValidator(to_isbn13)]
EXAMPLE_BOOK: dict[str, Any] = {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "9780141439587"}


class BookIn(BaseModel):
    """The body of POST and PUT: every field of a book but its id, which the database assigns."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_BOOK]})

    title: Title
    author: Author
    year: StrictYear
    isbn: Isbn | None = None


class BookPatch(BaseModel):
    """The body of PATCH: only the fields to change. Pydantic's MISSING marks a field the client left out (unlike None,
    which a client sends as null), and `model_dump()` skips it, so only the fields sent are written."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"year": 1816}]})

    title: Title | MISSING = MISSING
    author: Author | MISSING = MISSING
    year: StrictYear | MISSING = MISSING
    isbn: Isbn | MISSING | None = MISSING  # null clears the isbn


class BookOut(BaseModel):
    """A book as the API returns it, read from a BookModel's attributes."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{"id": 2, **EXAMPLE_BOOK}]})

    id: int
    title: str
    author: str
    year: int
    isbn: str | None


SortKey = Literal["id", "-id", "title", "-title", "author", "-author", "year", "-year"]


class BookQuery(BaseModel):
    """The query parameters of GET /books: filters, then a sort, then one page of the result."""

    q: SearchText | None = Field(None, description="Text in the title or the author, in any case")
    author: SearchText | None = Field(None, description="The author, exactly, in any case")
    year_from: Year | None = Field(None, description="Earliest year, inclusive")
    year_to: Year | None = Field(None, description="Latest year, inclusive")
    sort: SortKey = Field("id", description="Field to sort by; a leading '-' sorts in descending order")
    limit: WholeNumber = Field(20, ge=1, le=100, description="Books per page")
    offset: WholeNumber = Field(0, ge=0, le=2**63 - 1, description="Books to skip before the page starts")


class Error(BaseModel):  # the body of every error but 422, whose `detail` lists each rule broken
    detail: str


def documented(status: int, description: str, example: str) -> Any:
    """An error response as /docs shows it: when it happens, and an example."""
    content = {"application/json": {"example": {"detail": example}}}
    return {status: {"model": Error, "description": description, "content": content}}


NOT_FOUND = documented(404, "No book has this id", "Book 42 not found")
DUPLICATE = documented(409, "Another book has this isbn", "A book with isbn 9780141439587 already exists")
NO_KEY = documented(401, "API_KEY is set, and X-API-Key is missing or wrong", "Missing or wrong X-API-Key header")
UNREACHABLE = "The database cannot be reached, or is busy: try again in a few seconds"
UNAVAILABLE = documented(503, "The database cannot be used: unreachable, busy, read-only or replaced", UNREACHABLE)


# --- Routes: the app, its start-up and shutdown, and one function per HTTP endpoint ----------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Before the first request, create the tables that are missing (never at import); after the last, close the
    pool's connections. Both functions it calls are in the last section."""
    await create_tables()  # Base.metadata.create_all
    if DEMO_BOOKS:
        await add_demo_books()
    yield
    await engine.dispose()


# FastAPIOffline is FastAPI with /docs and /redoc served from files installed with Python, not from a CDN.
app = FastAPIOffline(
    title="Book API",
    description="Add, list, search, change and delete books. To try a route, open it, click **Try it out**, then "
    "**Execute**. If the server was started with `API_KEY`, click **Authorize** and paste the key before you write.",
    lifespan=lifespan,
    responses=UNAVAILABLE,  # any route, when the database cannot be used
    redirect_slashes=False,  # /books/ is a 404, not a redirect to an address built from what the client sent
)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed for writes if API_KEY is set.")


async def require_api_key(key: Annotated[str | None, Security(api_key_header)]) -> None:
    """Writes need the X-API-Key header when API_KEY is set; reads never do. Spaces around a key are not part of it."""
    # Header text arrives decoded as Latin-1: encoding it back gives the bytes the client sent, UTF-8 for a key such as
    # "clé". compare_digest takes as long for a near miss as for a wild guess, so timing reveals nothing about the key.
    sent = (key or "").strip(" \t").encode("latin-1")
    if API_KEY is not None and not secrets.compare_digest(sent, API_KEY.strip().encode()):
        detail = "Missing or wrong X-API-Key header: send the API key this server was started with"
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "APIKey"})


reads = APIRouter(prefix="/books", tags=["books"])  # the book routes, added to the app below
writes = APIRouter(prefix="/books", tags=["books"], dependencies=[Depends(require_api_key)], responses=NO_KEY)
BookId = Annotated[WholeNumber, Path(ge=1, le=2**63 - 1, description="The book's id, as the database assigned it")]


def duplicate(isbn: str | None) -> HTTPException:
    return HTTPException(409, f"A book with isbn {isbn} already exists; isbn must be unique")


async def update_book(session: AsyncSession, book_id: int, changes: dict[str, Any]) -> BookModel:
    """Write `changes` in one UPDATE ... RETURNING, which hands back the updated row.

    Why not `session.get` the book, set its attributes and commit? Two requests changing one book at once could both
    read it before either writes; the ORM writes only what differs from what *it* read, so it could skip a field the
    other request had just changed, and a change one client was told about would be gone. One statement leaves no
    gap between reading and writing, and a book deleted in the meantime simply matches no row: a 404."""
    if changes:
        statement = update(BookModel).where(BookModel.id == book_id).values(with_folded(changes)).returning(BookModel)
        try:
            book = await session.scalar(statement)
            await session.commit()
        except exc.IntegrityError:
            raise duplicate(changes.get("isbn")) from None
    else:  # PATCH {} writes nothing, but a missing book is still a 404
        book = await session.get(BookModel, book_id)
    if book is None:
        raise HTTPException(404, f"Book {book_id} not found")
    return book


@reads.get("", response_model=list[BookOut])
async def list_books(query: Annotated[BookQuery, Query()], session: SessionDep, response: Response) -> list[BookModel]:
    """One page of books, filtered and sorted; the header X-Total-Count says how many match in all."""
    title, author = BookModel.title_folded, BookModel.author_folded
    filters = []
    if query.q is not None:  # contains: LIKE '%' || q || '%'; autoescape: "%" and "_" in q are ordinary characters
        q = query.q.casefold()
        filters.append(or_(title.contains(q, autoescape=True), author.contains(q, autoescape=True)))
    if query.author is not None:
        filters.append(author == query.author.casefold())
    if query.year_from is not None:
        filters.append(BookModel.year >= query.year_from)
    if query.year_to is not None:
        filters.append(BookModel.year <= query.year_to)

    # Title and author sort in any case ("apple" before "Zebra"). Ties are ordered by id, in the sort's direction, so
    # pages never overlap and "-year" is exactly "year" reversed.
    column = {"id": BookModel.id, "title": title, "author": author, "year": BookModel.year}[query.sort.lstrip("-")]
    columns = [column] if column is BookModel.id else [column, BookModel.id]
    order = [desc(c) if query.sort.startswith("-") else asc(c) for c in columns]

    # One query brings the page and, with each book, the count of every match: `total` is a subquery that the database
    # runs once. One trip to the database instead of two costs 1/6 less CPU per page (MAINTAINING.md).
    total = select(func.count()).select_from(BookModel).where(*filters).scalar_subquery()
    statement = select(BookModel, total).where(*filters).order_by(*order).limit(query.limit).offset(query.offset)
    rows = (await session.execute(statement)).all()  # [(book, total), ...], and none past the last page
    response.headers["X-Total-Count"] = str(rows[0][1] if rows else await session.scalar(select(total)))
    return [book for book, _ in rows]


@reads.get("/{book_id}", response_model=BookOut, responses=NOT_FOUND)
async def read_book(book_id: BookId, session: SessionDep) -> BookModel:
    """One book, by its id."""
    book = await session.get(BookModel, book_id)
    if book is None:
        raise HTTPException(404, f"Book {book_id} not found")
    return book


@writes.post("", response_model=BookOut, status_code=201, responses=DUPLICATE)
async def create_book(book_in: BookIn, session: SessionDep, response: Response) -> BookModel:
    """Add a book. The database assigns its id; the Location header gives its address."""
    book = BookModel(**with_folded(book_in.model_dump()))
    session.add(book)
    try:
        await session.commit()
    except exc.IntegrityError:  # the unique isbn: the database decides, so of two requests racing, exactly one wins
        raise duplicate(book_in.isbn) from None
    response.headers["Location"] = f"/books/{book.id}"
    return book


@writes.put("/{book_id}", response_model=BookOut, responses=NOT_FOUND | DUPLICATE)
async def replace_book(book_id: BookId, book_in: BookIn, session: SessionDep) -> BookModel:
    """Replace every field of a book; an isbn left out becomes null."""
    return await update_book(session, book_id, book_in.model_dump())


@writes.patch("/{book_id}", response_model=BookOut, responses=NOT_FOUND | DUPLICATE)
async def patch_book(book_id: BookId, book_patch: BookPatch, session: SessionDep) -> BookModel:
    """Change only the fields sent: `{}` changes nothing, and `"isbn": null` clears the isbn."""
    return await update_book(session, book_id, book_patch.model_dump())


@writes.delete("/{book_id}", status_code=204, responses=NOT_FOUND)
async def delete_book(book_id: BookId, session: SessionDep) -> None:
    """Delete a book, in one statement that also tells whether it was there."""
    deleted = await session.scalar(delete(BookModel).where(BookModel.id == book_id).returning(BookModel.id))
    if deleted is None:
        raise HTTPException(404, f"Book {book_id} not found")
    await session.commit()


app.include_router(reads)
app.include_router(writes)


@app.get("/health", tags=["health"])
async def health(session: SessionDep) -> dict[str, str]:
    """Whether the API can use its database: 200 once it has read from the books table. If it cannot, the error
    becomes a 503 saying why (`database_unavailable`, in the last section), as it does on every route."""
    await session.scalar(select(BookModel.id).limit(1))
    return {"status": "ok"}


@app.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


# --- Protecting the API, and the demo books: what the lesson does not need. Skip it on a first reading -------------


if engine.dialect.name == "sqlite":
    # SQLite runs one write at a time. With one connection per server process, requests take turns at it instead of
    # sleeping on SQLite's lock (checks/bench.py: the slowest 1% of writes took 60 ms instead of 0.6 s), and no client
    # holds it for long (see SessionDep). So on SQLite the engine above, which has not connected yet, is replaced by
    # one whose pool keeps a single connection. PostgreSQL keeps the pool of 15.
    one_connection = {"poolclass": AsyncAdaptedQueuePool, "pool_size": 1, "max_overflow": 0}
    engine = create_async_engine(engine.url, echo=SQL_ECHO, **one_connection)
    SessionLocal.configure(bind=engine)

    @event.listens_for(engine.sync_engine, "connect")
    def configure_sqlite(dbapi_connection: Any, _connection_record: Any) -> None:
        """Run on each new SQLite connection: these settings last as long as the connection."""
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer; writes cost 1/5 less CPU
        cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys (such as exercise 1 adds) unless asked
        cursor.close()

    @event.listens_for(engine.sync_engine, "checkout")
    @event.listens_for(engine.sync_engine, "commit")
    def same_file(*_: Any) -> None:
        """SQLite goes on writing to an open database file after it was deleted or replaced (`rm books.db`), and those
        writes vanish with it. So before each use of the connection and each commit, check that the file is still the
        one opened at start-up (a `stat`, a few microseconds); if not, refuse every request until a restart."""
        if getattr(app.state, "database_file", None) not in (None, sqlite_file()):
            app.state.database_file = ()  # matches no file, not even a new one given the old one's inode number
            raise DatabaseReplaced(f"The database file {engine.url.database} was deleted or replaced: restart the API")


class DatabaseReplaced(OSError):
    pass


async def create_tables() -> None:
    """Base.metadata.create_all, which creates the tables that are missing. Server processes that start together
    (uvicorn --workers 2) race to create them: a loser fails, tries again, and finds that table made, so it can
    lose once per table at most."""
    app.state.database_file = None  # which SQLite file: noted below, once it is open (see `same_file`)
    for tries_left in reversed(range(len(Base.metadata.tables) + 1)):
        try:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            app.state.database_file = sqlite_file()
            return
        except (exc.DBAPIError, OSError) as error:
            if not tries_left:
                raise RuntimeError(
                    f"Cannot use the database at DATABASE_URL={engine.url} ({getattr(error, 'orig', error)}). Check "
                    "that it exists, that you may read and write it (for SQLite, the file and its folder), and that "
                    "it is a database."
                ) from None


def sqlite_file() -> tuple[int, int] | None:
    """The file now at SQLite's path, as its device and inode numbers; None if there is none (or no SQLite)."""
    with suppress(OSError, TypeError):
        if engine.dialect.name == "sqlite":
            stat = os.stat(engine.url.database.removeprefix("file:"))  # type: ignore[union-attr]
            return stat.st_dev, stat.st_ino
    return None


DEMO = [  # title, author, first published, isbn of a current edition
    ("Pride and Prejudice", "Jane Austen", 1813, "978-0-14-143951-8"),
    ("Emma", "Jane Austen", 1815, "978-0-14-143958-7"),
    ("Frankenstein", "Mary Shelley", 1818, "978-0-14-143947-1"),
    ("Jane Eyre", "Charlotte Brontë", 1847, "978-0-14-144114-6"),
    ("Moby-Dick", "Herman Melville", 1851, "978-0-14-243724-7"),
    ("The Great Gatsby", "F. Scott Fitzgerald", 1925, "978-0-7432-7356-5"),
    ("Brave New World", "Aldous Huxley", 1932, "978-0-06-085052-4"),
    ("The Hobbit", "J. R. R. Tolkien", 1937, "978-0-547-92822-7"),
    ("Nineteen Eighty-Four", "George Orwell", 1949, "978-0-451-52493-5"),
    ("The Catcher in the Rye", "J. D. Salinger", 1951, "978-0-316-76948-8"),
    ("To Kill a Mockingbird", "Harper Lee", 1960, "978-0-06-112008-4"),
    ("Dune", "Frank Herbert", 1965, "978-0-441-17271-9"),
]


async def add_demo_books() -> None:
    """With DEMO_BOOKS=1, fill an empty table with DEMO, so /docs has something to show; never touch one with books."""
    async with SessionLocal() as session:
        if not await session.scalar(select(func.count()).select_from(BookModel)):
            books = [BookIn(title=t, author=a, year=y, isbn=i).model_dump() for t, a, y, i in DEMO]
            session.add_all(BookModel(**with_folded(book)) for book in books)
            with suppress(exc.IntegrityError):  # another server process (uvicorn --workers 2) added them a moment ago
                await session.commit()


if API_KEY is not None and not API_KEY.strip():
    sys.exit("API_KEY is set but empty. Set it to the key writes must send, or unset it (unset API_KEY) to allow all.")


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422, saying where (`loc`) and what (`msg`) is wrong. Unlike FastAPI's default it does not echo the input back,
    which may not even be expressible in JSON (1e400 is a 500 in FastAPI's own handler).
    A write is checked for its API key first, so a client without the key learns nothing about what it sent."""
    if refused := await refused_without_key(request):
        return refused
    # Pydantic starts the message of a ValueError from our own rules with "Value error, ": the rest is the sentence.
    problems = [
        {"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, ")}
        for e in error.errors()
    ]
    if "json" not in request.headers.get("content-type", "") and [p["loc"] for p in problems] == [["body"]]:
        problems[0]["msg"] = "Send the body as JSON, with the header Content-Type: application/json"
    return JSONResponse({"detail": problems}, status_code=422)


async def refused_without_key(request: Request) -> JSONResponse | None:
    """For a write whose body was refused (422, or 400 if it is not even JSON): the 401 if its API key is wrong."""
    try:
        if request.method != "GET":
            await require_api_key(request.headers.get("X-API-Key"))
    except HTTPException as refused:
        return JSONResponse({"detail": refused.detail}, refused.status_code, headers=refused.headers)
    return None


BETTER_DETAIL = {  # Starlette's and FastAPI's own error texts, and what to tell a client instead
    "Not Found": "No such route: /docs lists them all (no path ends with a slash)",
    "Method Not Allowed": "This route does not take this method: the Allow header lists those it takes",
    "There was an error parsing the body": "The body cannot be read as JSON (not UTF-8, or nested too deeply?)",
}


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Every HTTPException, FastAPI's as well as ours, as {"detail": ...}, saying what to do where FastAPI does not."""
    if error.status_code == 400 and (refused := await refused_without_key(request)):
        return refused
    detail = BETTER_DETAIL.get(error.detail, error.detail)
    return JSONResponse({"detail": detail}, error.status_code, headers=error.headers)


# What the databases say when they are busy or cannot be reached; any other error of theirs is a bug (a 500).
OUTAGE_WORDS = ("unable to open database", "database is locked", "disk I/O error", "starting up", "too many clients")


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 when the database, not the request, is at fault, saying why, with Retry-After (seconds) when waiting may be
    enough. The API recovers by itself: the pool opens a new connection once the database answers again."""
    message, retry = str(getattr(error, "orig", error)), {}
    lost = isinstance(error, exc.TimeoutError | OSError) or getattr(error, "connection_invalidated", False)
    if isinstance(error, DatabaseReplaced):
        detail = message
    elif "readonly" in message or "read-only" in message:
        detail = "The database is read-only: reads work, writes fail until the server may write to it"
    elif type(error) is exc.DatabaseError:  # SQLite: "file is not a database", "database disk image is malformed"
        detail = f"The database file is damaged ({message}): restore it from a copy"
    elif lost or any(words in message for words in OUTAGE_WORDS):
        detail, retry = UNREACHABLE, {"Retry-After": "5"}
    else:
        raise error  # not an outage but a bug, such as a missing column: a 500, and the server logs the traceback
    logging.getLogger("uvicorn.error").warning("503 for %s %s: %s", request.method, request.url.path, message)
    return JSONResponse({"detail": detail}, status_code=503, headers=retry)


for unavailable in (exc.DBAPIError, exc.TimeoutError, OSError):  # what the database and its pool raise
    app.add_exception_handler(unavailable, database_unavailable)


@app.exception_handler(Exception)
async def server_error(_request: Request, _error: Exception) -> JSONResponse:
    """A bug: a 500, in JSON like every other error. The server's log shows the traceback."""
    return JSONResponse({"detail": "Internal server error: the server's log says what went wrong"}, status_code=500)


MAX_BODY = 1024 * 1024  # 1 MiB, far more than a book needs


def guard(app: ASGIApp) -> ASGIApp:
    """Runs before the app sees each request. The whole body is read first, and one over MAX_BODY refused with a 413
    before any route runs: a refused request changes nothing (a DELETE, which never reads its body, would already
    have deleted). And HEAD (what `curl -I` sends) is GET without the body, which FastAPI's routes do not answer: the
    app sees a GET, and the server, which still sees HEAD, sends the headers only."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        announced = int(dict(scope["headers"]).get(b"content-length", 0))  # the size a client may give in advance
        chunks, received, more = [], 0, announced <= MAX_BODY
        while more and received <= MAX_BODY:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            received, more = received + len(chunks[-1]), message.get("more_body", False)
        if max(announced, received) > MAX_BODY:
            detail = "The body is over 1 MiB: send one book's fields only"
            closing = {"Connection": "close"}  # the rest of the body, unread, must not be taken for a next request
            return await JSONResponse({"detail": detail}, 413, headers=closing)(scope, receive, send)
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        await app({**scope, "method": method}, replay, send)

    return middleware


app.add_middleware(guard)
