"""The Book API: an async web API for a table of books, written to be read from top to bottom.

A database keeps rows in tables and speaks SQL. An ORM (object-relational mapper) lets Python work with those rows
as objects: you describe a table once, as a class (`BookModel` below), and the ORM writes the SQL: `session.add(book)`
becomes an INSERT, `await session.get(BookModel, 1)` a SELECT. SQLAlchemy is the ORM here; the same code runs on SQLite
and PostgreSQL (SQL_ECHO=1 prints the SQL it writes). FastAPI turns the `async def` functions under "Routes" into HTTP
endpoints, documented at /docs. Up to "Protecting the API" is a complete app; that section only adds: skip it at first.
"""

import os
import secrets
import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import stdnum.isbn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Response, Security
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from pydantic import MISSING, AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from sqlalchemy import BigInteger, Integer, String, asc, delete, desc, exc, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from stdnum.exceptions import ValidationError as InvalidISBN

# --- Configuration: what differs between machines comes from environment variables, never from the code ------------
DATABASE_URL = os.getenv("DATABASE_URL", "sqlite+aiosqlite:///./books.db")
SQL_ECHO = os.getenv("SQL_ECHO") == "1"  # print every SQL statement the ORM sends
API_KEY = os.getenv("API_KEY")  # when set, writes need the header X-API-Key with this value

# --- Engine and session: the engine keeps a pool of connections; a session is one unit of work ----------------------
# The engine is the app's way into the database: it knows the URL and keeps a pool of open connections, lending one
# to each unit of work (opening one is slow). SQLite writes one statement at a time, so requests take turns at one
# connection; PostgreSQL runs many at once: 15 of them. max_overflow=0: never more than that, even under load.
POOL_SIZE = 1 if DATABASE_URL.startswith("sqlite") else 15
try:
    engine = create_async_engine(DATABASE_URL, echo=SQL_ECHO, pool_size=POOL_SIZE, max_overflow=0)
except (exc.ArgumentError, exc.InvalidRequestError, ImportError, TypeError) as error:  # not a URL it can use
    sys.exit(
        f"DATABASE_URL={DATABASE_URL!r} cannot be used ({error}). Use an async URL of a file or a server, "
        "such as sqlite+aiosqlite:///./books.db, or postgresql+asyncpg://user:password@host/db (pip install asyncpg)."
    )

# A session is a unit of work: what one request reads, adds and changes, in one database transaction. Its commit makes
# the changes permanent, all together; closing it without one (or after one failed) undoes them, and gives the
# connection back to the pool. After a commit SQLAlchemy "expires" every object, so that reading `book.title` loads
# it again; in async code that hidden query is an error (MissingGreenlet): expire_on_commit=False keeps the values.
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    """A dependency: FastAPI calls it per request, gives the route what it yields, then runs the code after `yield`."""
    async with SessionLocal() as session:
        yield session


# A route asks for a session by naming this type: `session: SessionDep`. scope="function" closes it when the route
# returns, not (as by default) once the response is sent: a client that reads slowly holds no connection meanwhile.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# --- The model: one Python class, one table --------------------------------------------------------------------------
class Base(DeclarativeBase):
    """The parent of every model: subclassing DeclarativeBase gives them a registry of their tables (`Base.metadata`,
    which creates them at start-up) and one place for the settings they share, such as these two."""

    # Mapped[int] is a 64-bit BIGINT column; on SQLite an INTEGER, the only type whose new rows SQLite numbers itself.
    type_annotation_map = {int: BigInteger().with_variant(Integer, "sqlite")}
    __table_args__ = {"sqlite_autoincrement": True}  # on SQLite too, a deleted row's id is never given again


class BookModel(Base):
    """The table "books". Each `Mapped[...]` attribute is a column whose SQL type comes from the Python type in the
    brackets: `Mapped[str]` is text that must be there, `Mapped[str | None]` text that may be NULL. `mapped_column()`
    adds what the type does not say: a length, a primary key, an index, uniqueness."""

    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)  # the database numbers each new book: 1, 2, 3...
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(100))
    year: Mapped[int] = mapped_column(index=True)  # an index finds and sorts by year without reading every row
    isbn: Mapped[str | None] = mapped_column(String(13), unique=True)  # the database refuses a second book with it
    # Title and author in one case ("casefolded": "Straße" becomes "strasse"), to search and sort in any case. SQLite's
    # own lower() knows only A-Z, so Python folds them, once, as a book is written (with_folded).
    title_folded: Mapped[str] = mapped_column(index=True)
    author_folded: Mapped[str] = mapped_column(index=True)


def with_folded(fields: dict[str, Any]) -> dict[str, Any]:
    """The columns a write stores: the fields a client sent, plus the folded copies of its title and author."""
    folded = {f"{name}_folded": fields[name].casefold() for name in ("title", "author") if name in fields}
    return fields | folded  # one dict with the keys of both


# --- Schemas: what a client may send, and what it gets back. Pydantic checks every rule before a route runs ---------
# A rule of our own is a function that returns the value to keep or raises ValueError, which becomes a 422 saying why.
def one_line(text: str) -> str:
    """One line of visible text: no control character (NUL, line break), and a letter, number, punctuation or symbol."""
    categories = [unicodedata.category(c) for c in text]  # Unicode's class of each: "Lu" upper-case letter, "Cc"...
    if any(category in ("Cc", "Zl", "Zp") for category in categories):  # controls, line and paragraph separators
        raise ValueError("must be one line of text, without control characters such as NUL or newline")
    if text and not any(category[0] in "LNPS" for category in categories):  # Letter, Number, Punctuation, Symbol
        raise ValueError("must contain a visible character, not only invisible ones such as zero-width spaces")
    return text


def digits(value: Any) -> Any:
    """A number in a path or query is written with the digits 0-9: not " 1", "1.0", "1_0" or "+1", as int() allows."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written with the digits 0-9 only")
    return value


def to_isbn13(value: str) -> str:
    """A real ISBN-10 or ISBN-13 (python-stdnum checks it), kept as its 13 digits so that a book has one spelling."""
    try:
        isbn = stdnum.isbn.to_isbn13(stdnum.isbn.validate(value))
    except InvalidISBN as error:
        raise ValueError(f"not a valid ISBN-10 or ISBN-13: {error}") from None
    if isbn.startswith("9790"):  # 979-0 numbers printed music (ISMN), not books
        raise ValueError("979-0 begins an ISMN, the number of a piece of printed music, not an ISBN")
    return isbn


# Annotated[type, rule, ...] attaches rules to a type: a Title is a str of 1 to 200 characters, then passes one_line.
Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)]
Author = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(one_line)]
SearchText = Annotated[str, Field(max_length=200), AfterValidator(one_line)]
Digits = BeforeValidator(digits)  # runs before int's own check (an AfterValidator runs after), which takes " 1"
Year = Annotated[int, Field(ge=1, le=9999), Digits]  # 1 to 9999, the years Python's datetime knows
StrictYear = Annotated[Year, Field(strict=True)]  # strictly: in a JSON body, "1937", 1937.0 and true are not years
Isbn = Annotated[str, AfterValidator(to_isbn13)]
SortKey = Literal["id", "-id", "title", "-title", "author", "-author", "year", "-year"]


class Schema(BaseModel):
    """What every schema a client sends shares: each text loses the spaces around it and has one Unicode spelling
    (NFC): "é" may be typed as one character or as "e" plus an accent, and both spellings must match."""

    model_config = ConfigDict(str_strip_whitespace=True)

    @field_validator("*", mode="before")  # "*": every field; "before": before the field's own rules
    @classmethod
    def nfc(cls, value: Any) -> Any:
        return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


class BookIn(Schema):
    """The body of POST and PUT: every field of a book but its id, which the database assigns."""

    model_config = ConfigDict(extra="forbid")  # an unknown field is a 422
    title: Title
    author: Author
    year: StrictYear
    isbn: Isbn | None = None


class BookPatch(Schema):
    """The body of PATCH: only the fields to change. The usual way is `title: Title | None = None` and then
    `model_dump(exclude_unset=True)`, but that lets `"title": null` through. Pydantic's MISSING marks a field the
    client left out without making null a title, and `model_dump()` leaves it out: only the fields sent are written."""

    model_config = ConfigDict(extra="forbid")
    title: Title | MISSING = MISSING
    author: Author | MISSING = MISSING
    year: StrictYear | MISSING = MISSING
    isbn: Isbn | MISSING | None = MISSING  # null clears the isbn


class BookOut(BaseModel):
    """A book as the API returns it. from_attributes: Pydantic reads it from a BookModel's attributes."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    author: str
    year: int
    isbn: str | None


class BookQuery(Schema):
    """The query parameters of GET /books: filters, then a sort, then one page of the result."""

    q: SearchText | None = Field(None, description="Text in the title or the author, in any case")
    author: SearchText | None = Field(None, description="The author, exactly, in any case")
    year_from: Year | None = Field(None, description="Earliest year, inclusive")
    year_to: Year | None = Field(None, description="Latest year, inclusive")
    sort: SortKey = Field("id", description="Field to sort by; a leading '-' sorts in descending order")
    limit: Annotated[int, Field(ge=1, le=100), Digits] = Field(20, description="Books per page")
    offset: Annotated[int, Field(ge=0, le=2**63 - 1), Digits] = Field(0, description="Books to skip first")


class Error(BaseModel):  # the body of every error but 422 (whose `detail` lists each rule broken), as /docs shows it
    detail: str


NOT_FOUND = {404: {"model": Error, "description": "No book has this id"}}
DUPLICATE = {409: {"model": Error, "description": "Another book has this isbn"}}
NO_KEY = {401: {"model": Error, "description": "X-API-Key is missing or wrong"}} if API_KEY is not None else {}
TOTAL = {200: {"headers": {"X-Total-Count": {"description": "How many match in all", "schema": {"type": "integer"}}}}}
LOCATION = {201: {"headers": {"Location": {"description": "The new book's path", "schema": {"type": "string"}}}}}


# --- Routes: the app, its start-up and shutdown, and one function per HTTP endpoint ----------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs once, around all the requests: before the first it creates the missing tables (not at import: importing
    main.py touches no database); after the last it closes the pool. create_all works on tables, not objects, so it
    takes a connection, not a session; and it is plain (not async) code, which run_sync runs for this connection."""
    async with engine.begin() as connection:  # a connection in a transaction, committed at the end of the block
        await connection.run_sync(Base.metadata.create_all)
    yield  # the app serves requests here
    await engine.dispose()


app = FastAPIOffline(title="Book API", lifespan=lifespan)  # FastAPI, with /docs' files installed, not from a CDN
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed for writes if API_KEY is set.")


async def require_api_key(key: Annotated[str | None, Security(api_key_header)]) -> None:
    """Writes need the X-API-Key header when API_KEY is set (spaces around it are not part of it); reads never do.
    compare_digest takes as long for a near miss as for a wild guess: the time taken tells nothing about the key."""
    if API_KEY is not None and not secrets.compare_digest((key or "").strip(" \t").encode(), API_KEY.encode()):
        detail = "Missing or wrong X-API-Key header: send the API key this server was started with"
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "APIKey"})


# A router groups routes: every route of `writes` depends on require_api_key, and may answer 401.
reads = APIRouter(prefix="/books", tags=["books"])
writes = APIRouter(prefix="/books", tags=["books"], dependencies=[Depends(require_api_key)], responses=NO_KEY)
BookId = Annotated[int, Path(ge=1, le=2**63 - 1), Digits]


@writes.post("", response_model=BookOut, status_code=201, responses=DUPLICATE | LOCATION)
async def create_book(book_in: BookIn, session: SessionDep, response: Response) -> BookModel:
    """Add a book. The database assigns its id; the Location header gives its address."""
    book = BookModel(**with_folded(book_in.model_dump()))
    session.add(book)  # the session will INSERT it at the next commit
    try:
        await session.commit()  # INSERT, then COMMIT: the book is stored, and book.id is the number it got
    except exc.IntegrityError:  # the unique isbn: the database decides, so of two requests racing, exactly one wins
        raise HTTPException(409, f"A book with isbn {book.isbn} already exists; isbn must be unique") from None
    response.headers["Location"] = f"/books/{book.id}"
    return book  # response_model=BookOut: FastAPI sends what BookOut reads from it, as JSON


@reads.get("/{book_id}", response_model=BookOut, responses=NOT_FOUND)
async def read_book(book_id: BookId, session: SessionDep) -> BookModel:
    """One book, by its id."""
    book = await session.get(BookModel, book_id)  # SELECT ... WHERE id = book_id; None if there is no such row
    if book is None:
        raise HTTPException(404, f"Book {book_id} not found")
    return book


@reads.get("", response_model=list[BookOut], responses=TOTAL)
async def list_books(query: Annotated[BookQuery, Query()], session: SessionDep, response: Response) -> list[BookModel]:
    """One page of books. Query() fills a BookQuery from the query string; X-Total-Count says how many match in all."""
    title, author = BookModel.title_folded, BookModel.author_folded
    filters = []  # conditions for a WHERE clause, written in Python: `BookModel.year >= 1900` is `year >= ?` in SQL
    if query.q is not None:  # contains: LIKE '%' || q || '%'; autoescape: "%" and "_" in q are ordinary characters
        q = query.q.casefold()
        filters.append(or_(title.contains(q, autoescape=True), author.contains(q, autoescape=True)))
    if query.author is not None:
        filters.append(author == query.author.casefold())
    if query.year_from is not None:
        filters.append(BookModel.year >= query.year_from)
    if query.year_to is not None:
        filters.append(BookModel.year <= query.year_to)
    # ORDER BY the column that `sort` names (title and author in any case: "apple" before "Zebra"), then by id, so
    # that books which tie keep one order: pages never overlap. A leading "-" sorts both in descending order.
    column = {"id": BookModel.id, "title": title, "author": author, "year": BookModel.year}[query.sort.lstrip("-")]
    columns = [column] if column is BookModel.id else [column, BookModel.id]
    order = [desc(c) if query.sort.startswith("-") else asc(c) for c in columns]
    # select() builds a SELECT as SQL reads it. The plain way is two queries: the page, then `count`, the number of
    # matches. Here the count is a column of the page too (a subquery run once): execute() gives rows of (book, total).
    count = select(func.count()).select_from(BookModel).where(*filters)
    page = select(BookModel, count.scalar_subquery().label("total")).where(*filters).order_by(*order)
    rows = (await session.execute(page.limit(query.limit).offset(query.offset))).all()
    total = rows[0].total if rows else await session.scalar(count)  # past the last page, no row: scalar() gives count
    response.headers["X-Total-Count"] = str(total)
    return [book for book, _ in rows]


async def update_book(session: AsyncSession, book_id: int, changes: dict[str, Any]) -> BookModel:
    """Write `changes` to a book, and return it as stored. The plain ORM way is three steps: `book = await
    session.get(BookModel, book_id)`, `book.year = 1816` for each change, `await session.commit()`. But two requests
    changing one book can both read it before either writes, and the ORM writes only what differs from what *it* read:
    it can skip a field the other has just changed, and lose a change a client was told of. So the change is one
    statement, UPDATE ... RETURNING, which writes and reads back the row at once."""
    statement = update(BookModel).where(BookModel.id == book_id).values(with_folded(changes)).returning(BookModel)
    try:
        if changes:  # session.scalar runs it and gives back the row as a BookModel, or None if no book has the id
            book = await session.scalar(statement)
        else:  # PATCH {} writes nothing, but a missing book is still a 404
            book = await session.get(BookModel, book_id)
        await session.commit()
    except exc.IntegrityError:  # only the unique isbn can be broken
        raise HTTPException(409, f"A book with isbn {changes['isbn']} already exists; isbn must be unique") from None
    if book is None:
        raise HTTPException(404, f"Book {book_id} not found")
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

# --- Protecting the API: what the lesson does not need, added to it as handlers, middleware and listeners --------

import logging
from contextlib import suppress
from contextvars import ContextVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import DDL, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, CreateTable
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if API_KEY is not None and not (API_KEY and API_KEY.isascii() and API_KEY.isprintable() and API_KEY.strip() == API_KEY):
    sys.exit("API_KEY must be ASCII letters, digits and punctuation, with no spaces around it; unset it to allow all.")


@app.get("/health", tags=["health"])
async def health(session: SessionDep) -> dict[str, str]:
    """Whether the API can use its database: 200 once it has read from the books table, else a 503 saying why."""
    await session.scalar(select(BookModel.id).limit(1))
    return {"status": "ok"}


# SQLite's settings last as long as a connection: each new one gets them. SQLite goes on writing to a file deleted or
# replaced (`rm books.db`), writes lost with it: each use of a connection and each commit checks (`stat`) the file.
if engine.dialect.name == "sqlite":
    first_opened: dict[str, tuple[int, ...]] = {}

    class DatabaseReplaced(OSError):
        sqlite_errorname = "SQLITE_READONLY_DBMOVED"  # SQLite's own code for a file moved while open

    def sqlite_file() -> tuple[int, ...]:  # the file now at SQLite's path, as its inode and device numbers
        with suppress(OSError):
            return (stat := os.stat(str(engine.url.database).removeprefix("file:"))).st_ino, stat.st_dev
        return ()

    @event.listens_for(engine.sync_engine, "connect")
    def configure_sqlite(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # a write appends to a log instead of rewriting pages: cheaper
        cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys (such as exercise 1 adds) unless asked
        cursor.close()
        first_opened.setdefault("file", sqlite_file())

    @event.listens_for(engine.sync_engine, "checkout")
    @event.listens_for(engine.sync_engine, "commit")
    def same_file(*_: Any) -> None:
        if first_opened.get("file") != sqlite_file():  # refuse every request until a restart, even if a new file
            first_opened["file"] = (-1,)  # gets the old one's inode number
            raise DatabaseReplaced(f"{engine.url.database} was deleted or replaced")

    event.listen(engine.sync_engine, "engine_disposed", lambda _: first_opened.clear())  # then it may open another


# Server processes started together (--workers 2) run create_all at once: both may find a table missing. IF NOT EXISTS
# makes the second CREATE do nothing; on PostgreSQL, where they still collide, a lock makes one wait for the other.
@compiles(CreateTable)
@compiles(CreateIndex)
def create_if_not_exists(create: Any, compiler: Any, **kw: Any) -> str:
    create.if_not_exists = getattr(create.element, "table", create.element).metadata is Base.metadata  # not migrations'
    return getattr(compiler, f"visit_{create.__visit_name__}")(create, **kw)  # type: ignore[no-any-return]


one_process_at_a_time = DDL("SELECT pg_advisory_xact_lock(2026120701)")  # held until the transaction ends
event.listen(Base.metadata, "before_create", one_process_at_a_time.execute_if(dialect="postgresql"))


# The demo books, with DEMO_BOOKS=1. FastAPI runs a router's lifespan inside the app's: after the tables are made.
DEMO_BOOKS = os.getenv("DEMO_BOOKS") == "1"
DEMO = [  # the year each was first published, and the isbn of a current edition
    {"title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813, "isbn": "978-0-14-143951-8"},
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "978-0-14-143958-7"},
    {"title": "Frankenstein", "author": "Mary Shelley", "year": 1818, "isbn": "978-0-14-143947-1"},
    {"title": "Jane Eyre", "author": "Charlotte Brontë", "year": 1847, "isbn": "978-0-14-144114-6"},
    {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937, "isbn": "978-0-547-92822-7"},
    {"title": "Dune", "author": "Frank Herbert", "year": 1965, "isbn": "978-0-441-17271-9"},
]


@asynccontextmanager
async def add_demo_books(_app: FastAPI) -> AsyncIterator[None]:
    """With DEMO_BOOKS=1, fill an empty table with DEMO, so /docs has something to show; never touch one with books."""
    async with SessionLocal() as session:
        if DEMO_BOOKS and not await session.scalar(select(func.count()).select_from(BookModel)):
            session.add_all(BookModel(**with_folded(BookIn(**book).model_dump())) for book in DEMO)
            with suppress(exc.IntegrityError):  # another server process (uvicorn --workers 2) added them a moment ago
                await session.commit()
    yield


app.include_router(APIRouter(lifespan=add_demo_books))


BETTER_DETAIL = {  # Starlette's and FastAPI's own error texts, and what to tell a client instead
    "Not Found": "No such route: /docs lists them all (no path ends with a slash)",
    "Method Not Allowed": "This route does not take this method: the Allow header lists those it takes",
    "There was an error parsing the body": "The body cannot be read as JSON (not UTF-8, or nested too deeply?)",
}


@app.exception_handler(RequestValidationError)
@app.exception_handler(StarletteHTTPException)
async def client_error(request: Request, error: RequestValidationError | StarletteHTTPException) -> JSONResponse:
    """Every error a request causes, FastAPI's and ours, as {"detail": ...}, saying what to do where FastAPI does not.
    A write whose body cannot be read (400, 422) is refused first for want of the API key, as the route would be. A
    422 says where (`loc`) and what (`msg`) is wrong, without the input (FastAPI's own handler echoes it: 500s)."""
    status, headers = getattr(error, "status_code", 422), getattr(error, "headers", None)
    if status in (400, 422) and request.method != "GET":
        try:
            await require_api_key(request.headers.get("X-API-Key"))
        except HTTPException as refused:
            error, status, headers = refused, 401, refused.headers
    if isinstance(error, RequestValidationError):
        errors = error.errors()
        problems = [dict(type=e["type"], loc=e["loc"], msg=e["msg"].removeprefix("Value error, ")) for e in errors]
        if (first := errors[0])["type"] == "json_invalid":  # FastAPI's own words: "JSON decode error"
            problems[0]["msg"] = f"The body is not valid JSON: {first['ctx']['error']} (at character {first['loc'][1]})"
        elif isinstance(first.get("input"), bytes):  # not read as JSON, for want of the header that says it is
            problems[0]["msg"] = "Send the body as JSON, with the header Content-Type: application/json"
        return JSONResponse({"detail": problems}, 422)
    path = getattr(request.scope.get("route"), "path_format", None)  # Starlette's Allow names one route's methods
    if status == 405 and (methods := {method.upper() for method in document["paths"].get(path, ())}):  # all of them
        headers = {"Allow": ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))}
    return JSONResponse({"detail": BETTER_DETAIL.get(error.detail, error.detail)}, status, headers)


UNREACHABLE = "The database cannot be reached, or is busy: try again in a few seconds"
OUTAGES = {  # by the error's code (SQLite's name, PostgreSQL's SQLSTATE) or its start: the first match wins
    f"The database file {engine.url.database} was deleted or replaced: restart the API": ("SQLITE_READONLY_DBMOVED",),
    "The database is read-only: reads work, writes fail until the server may write to it": ("SQLITE_READONLY", "25006"),
    "The database's disk is full: writes fail until it has space again": ("SQLITE_FULL", "53100"),
    "The database file is damaged: restore it from a copy": ("SQLITE_CORRUPT", "SQLITE_NOTADB"),
    UNREACHABLE: ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "08", "40", "53", "57P"),
}  # PostgreSQL's classes: 08 connection, 40 a transaction to retry, 53 resources, 57P the server going down


@app.exception_handler(exc.DBAPIError)  # what the database and its pool raise
@app.exception_handler(exc.TimeoutError)
@app.exception_handler(OSError)
async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 when the database, not the request, is at fault, saying why (by codes: words change with the version and
    the language), with Retry-After (seconds) if waiting helps. Any other error of the database is a bug: a 500."""
    cause = getattr(error, "orig", error)
    code = str(getattr(cause, "sqlite_errorname", None) or getattr(cause, "sqlstate", None) or "")
    unconnected = getattr(error, "connection_invalidated", False) or getattr(error, "statement", "") is None
    unconnected |= isinstance(error, exc.TimeoutError | OSError)  # no connection to be had, or it broke
    detail = next((detail for detail, codes in OUTAGES.items() if code.startswith(codes)), unconnected and UNREACHABLE)
    if not detail:
        raise error  # not an outage but a bug, such as a missing column: a 500, and the server logs the traceback
    logging.getLogger("uvicorn.error").warning("503 for %s %s: %s", request.method, request.url.path, cause)
    return JSONResponse({"detail": detail}, 503, {"Retry-After": "5"} if detail == UNREACHABLE else {})


@app.exception_handler(Exception)
async def server_error(_request: Request, _error: Exception) -> JSONResponse:
    return JSONResponse({"detail": "Internal server error: the server's log says what went wrong"}, status_code=500)


MAX_BODY, TOO_LARGE = 1024 * 1024, "The body is over 1 MiB: send one book's fields only"  # far more than a book needs
START_UP_HINT = f"""Cannot use the database at DATABASE_URL={engine.url}. Check that it exists, that you may read and
write it (for SQLite, the file and its folder), and that it is a database."""


def guard(app: ASGIApp) -> ASGIApp:
    """Runs before the app sees each request. It reads the whole body first and refuses one over MAX_BODY with a 413
    before any route runs, so a refused request changes nothing (a DELETE never reads its body). And HEAD (`curl -I`),
    which FastAPI's routes do not answer, is GET without the body: the app sees GET; the server sends headers only."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # at start-up, a database that cannot be used: say what to check
            return await app(scope, receive, with_notes(send))
        if scope["type"] == "websocket":  # a WebSocket handshake: refused in JSON too (uvicorn sends it as HTTP)
            return await JSONResponse({"detail": "This API has no WebSocket routes"}, 404)(scope, receive, send)
        if scope["path"].endswith("/") and scope["path"] != "/":  # a 404, not a redirect built from the client's Host
            return await JSONResponse({"detail": BETTER_DETAIL["Not Found"]}, 404)(scope, receive, send)
        if b"transfer-encoding" in (headers := dict(scope["headers"])) and b"content-length" in headers:  # which one
            detail = {"detail": "Send Content-Length or Transfer-Encoding, not both"}  # ends the body? A proxy may read
            return await JSONResponse(detail, 400, {"Connection": "close"})(scope, receive, send)  # a request inside
        announced = int(headers.get(b"content-length", 0))  # the size a client may give in advance
        received, more = bytearray(), announced <= MAX_BODY
        while more and len(received) <= MAX_BODY:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += message.get("body", b"")
            more = message.get("more_body", False)
        if max(announced, len(received)) > MAX_BODY:  # and close: the rest, unread, must not pass for a next request
            return await JSONResponse({"detail": TOO_LARGE}, 413, {"Connection": "close"})(scope, receive, send)
        body: list[Message] = [{"type": "http.request", "body": bytes(received)}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        kept = [(name, value) for name, value in scope["headers"] if name != b"range"]  # RFC 9110: it may be ignored
        await app({**scope, "method": method, "headers": kept}, replay, with_notes(send))

    return middleware


app.add_middleware(guard)

# With SQL_ECHO=1, each response also carries the SQL its request ran, in the header X-SQL, which /docs shows under
# the response: the statements as the ORM wrote them, with `?` where the values go (the values are never sent).
statements: ContextVar[list[str]] = ContextVar("statements")  # those of the request being served


def with_notes(send: Send) -> Send:
    """What the guard adds to what the app sends: the hint at a failed start-up, and with SQL_ECHO=1 the SQL header."""
    statements.set(noted := [])

    async def send_with_notes(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed" and isinstance(sys.exc_info()[1], exc.DBAPIError | OSError):
            message = {**message, "message": f"{message['message']}\n{START_UP_HINT}"}  # after the traceback
        elif message["type"] == "http.response.start" and noted:
            sql = "; ".join(noted)
            sql = sql if len(sql) <= 4000 else sql[:3997] + "..."  # a header of 4000 characters at most
            message = {**message, "headers": [*message["headers"], (b"x-sql", sql.encode("latin-1", "replace"))]}
        await send(message)

    return send_with_notes


if SQL_ECHO:  # each statement, on one line as a header must be, and the transaction around them as SQL_ECHO says

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def note(_connection: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.get([]).append(" ".join(sql.split()))

    for name, sql in [("begin", "BEGIN (implicit)"), ("commit", "COMMIT"), ("rollback", "ROLLBACK")]:
        event.listen(engine.sync_engine, name, lambda *_, sql=sql: statements.get([]).append(sql))

# Additions to /openapi.json (and /docs), which FastAPI writes once and keeps: last, as a route added below is missed.
BOOK = {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "9780141439587"}
EXAMPLES = {"BookIn": BOOK, "BookPatch": {"year": 1816}, "BookOut": {"id": 2, **BOOK}}
ERROR = {"$ref": "#/components/schemas/Error"}  # the schema of an error's body: {"detail": "..."}
EVERY_ROUTE = {"400": "The body cannot be read", "413": "The body is over 1 MiB", "503": "The database cannot be used"}
ERRORS = {"400": BETTER_DETAIL["There was an error parsing the body"], "413": TOO_LARGE, "503": UNREACHABLE}
ERRORS |= {"401": "Missing or wrong X-API-Key header", "404": "Book 42 not found"}
ERRORS["409"] = "A book with isbn 9780141439587 already exists; isbn must be unique"
document = app.openapi()
document["info"]["description"] = "Open a route, click **Try it out**, then **Execute**."
document["info"]["description"] += " Writes need the API key: click **Authorize** first." if API_KEY else ""
document |= {"servers": [{"url": "/"}], "tags": [{"name": "books"}, {"name": "health"}]}  # linters ask for both
for name, example in EXAMPLES.items():
    document["components"]["schemas"][name]["examples"] = [example]
sort = next(p["schema"] for p in document["paths"]["/books"]["get"]["parameters"] if p["name"] == "sort")
sort["x-enum-varnames"] = [key.strip("-").upper() + "_DESCENDING" * key.startswith("-") for key in sort["enum"]]
for operation in (operation for path in document["paths"].values() for operation in path.values()):
    operation["operationId"] = operation["summary"].lower().replace(" ", "_")  # the function: list_books
    operation["security"] = operation.get("security", []) if API_KEY else []  # []: no key needed
    for status, why in EVERY_ROUTE.items():
        operation["responses"][status] = {"description": why, "content": {"application/json": {"schema": ERROR}}}
    for status in operation["responses"].keys() & ERRORS.keys():
        operation["responses"][status]["content"]["application/json"]["example"] = {"detail": ERRORS[status]}
if API_KEY is None:
    del document["components"]["securitySchemes"]
