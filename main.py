"""The Book API: an async web API for a table of books, written to be read top to bottom.

What an ORM is, and why we use one
----------------------------------
A database stores rows in tables and speaks SQL. An ORM (object-relational mapper) lets Python code work with
those rows as ordinary objects: you describe a table once as a class (`BookModel` below), then
`session.add(book)` becomes an INSERT and `await session.get(BookModel, 1)` a SELECT. SQLAlchemy writes the SQL
for you (start the app with SQL_ECHO=1 to watch it), keeps it the same on SQLite and PostgreSQL, and hands back
objects instead of tuples. FastAPI turns the functions at the bottom into HTTP routes with documentation at /docs.

The lesson, in order: configuration, engine and session, the model, the schemas, the app, the routes.
Run it with `uvicorn main:app` (or `python main.py`) and open http://127.0.0.1:8000/docs.
"""

import datetime
import os
import re
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, Literal

import stdnum.isbn
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import BigInteger, Integer, String, delete, event, func, make_url, or_, select, update
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InvalidRequestError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from stdnum.exceptions import ValidationError as InvalidISBN

# --- Configuration: everything that differs between machines comes from the environment ---------------------------

DATABASE_URL = os.getenv("DATABASE_URL", "sqlite+aiosqlite:///./books.db")
SQL_ECHO = os.getenv("SQL_ECHO") == "1"  # print every SQL statement the ORM sends
API_KEY = os.getenv("API_KEY") or None  # when set, writes need the header X-API-Key with this value
DEMO_BOOKS = os.getenv("DEMO_BOOKS") == "1"  # fill an empty table with a dozen books at start-up
MAX_BODY_BYTES = 1024 * 1024  # larger request bodies get 413 before anyone parses them
MAX_ID = 2**63 - 1  # the largest 64-bit integer: what SQLite and PostgreSQL's BIGINT can store


# --- Engine and session: the engine owns a pool of connections, a session is one unit of work ----------------------


def create_engine_for(url: str) -> AsyncEngine:
    """An async engine for `url`; SQLite connections also get `configure_sqlite` and `rollback_if_unfinished`."""
    try:
        sqlite = make_url(url).get_backend_name() == "sqlite"
        # SQLite runs one writer at a time, and aiosqlite gives every connection a thread of its own. One connection
        # per process measured fastest (checks/bench.py): no threads contending for Python's GIL, no writers sleeping
        # on SQLite's lock. Requests take turns with it. PostgreSQL keeps SQLAlchemy's default pool.
        # pool_reset_on_return=None: `rollback_if_unfinished` below decides instead of an unconditional rollback.
        pool = {"poolclass": AsyncAdaptedQueuePool, "pool_size": 1, "max_overflow": 0, "pool_reset_on_return": None}
        engine = create_async_engine(url, echo=SQL_ECHO, **(pool if sqlite else {}))
    except (ArgumentError, InvalidRequestError, ImportError) as error:
        sys.exit(
            f"DATABASE_URL={url!r} cannot be used ({error}). Use an async URL such as sqlite+aiosqlite:///./books.db,"
            " or postgresql+asyncpg://user:password@host/db after pip install asyncpg."
        )
    if sqlite:
        event.listen(engine.sync_engine, "connect", configure_sqlite)
        event.listen(engine.sync_engine, "reset", rollback_if_unfinished)
    return engine


SQLITE_PRAGMAS = [
    "journal_mode=WAL",  # readers and the writer no longer block each other
    "busy_timeout=10000",  # a writer waits up to 10 s for its turn instead of failing
    "foreign_keys=ON",  # SQLite ignores foreign keys unless asked
]


def configure_sqlite(dbapi_connection: Any, _connection_record: Any) -> None:
    """Run on every new SQLite connection: these settings last only as long as the connection."""
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def rollback_if_unfinished(dbapi_connection: Any, _connection_record: Any, state: PoolResetState) -> None:
    """Run as a connection goes back to the pool. The session has already committed or rolled back, so SQLAlchemy's
    usual extra rollback here would be one more trip to aiosqlite's thread for nothing. Asking SQLite costs no trip;
    a transaction that a failure left open is still rolled back."""
    if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


engine = create_engine_for(DATABASE_URL)
# expire_on_commit=False: objects keep their values after commit, so reading them needs no new (async) query.
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request, closed (and any unfinished transaction rolled back) when the request ends."""
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# --- The model: one Python class, one table ------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class BookModel(Base):
    __tablename__ = "books"

    # BIGINT for 64-bit ids everywhere; SQLite only auto-numbers a column declared exactly INTEGER.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(100))
    year: Mapped[int] = mapped_column(index=True)
    isbn: Mapped[str | None] = mapped_column(String(13), unique=True)
    # Case-folded copies for case-insensitive search and sort. SQLite's lower() only knows A-Z, so Python
    # folds the case on write (see `columns`), and "Émile" matches "ÉMILE" the same way on SQLite and PostgreSQL.
    title_folded: Mapped[str] = mapped_column(String(200), index=True)
    author_folded: Mapped[str] = mapped_column(String(100), index=True)


def columns(fields: dict[str, Any]) -> dict[str, Any]:
    """The column values to write for these fields: the fields themselves, plus the case-folded copies."""
    folded = {f"{name}_folded": fields[name].casefold() for name in ("title", "author") if name in fields}
    return fields | folded


# --- Schemas: what clients may send, and what they get back. Pydantic checks every rule before a route runs --------


def one_line(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f-\x9f]", value):
        raise ValueError("must be one line of text, without control characters such as NUL or newline")
    return value


def to_isbn13(value: str) -> str:
    """Accept ISBN-10 or ISBN-13, with hyphens or spaces; keep the 13 digits, so each book has one spelling."""
    try:
        return stdnum.isbn.to_isbn13(stdnum.isbn.validate(value))
    except InvalidISBN as error:
        raise ValueError(f"not a valid ISBN-10 or ISBN-13: {error}") from None


OneLine = AfterValidator(one_line)
Stripped = StringConstraints(strip_whitespace=True, min_length=1)  # surrounding spaces go, then 1 character at least
Title = Annotated[str, Stripped, Field(max_length=200), OneLine]
Author = Annotated[str, Stripped, Field(max_length=100), OneLine]
SearchText = Annotated[str, Field(max_length=200), OneLine]
# Years are whole numbers in Python's datetime range, 1..9999: four digits at most, no year 0.
Year = Annotated[int, Field(ge=datetime.MINYEAR, le=datetime.MAXYEAR)]
StrictYear = Annotated[Year, Field(strict=True)]  # in a JSON body, "1937", 1937.0 and true are not years
Isbn = Annotated[str, Field(examples=["978-0-14-143951-8"]), AfterValidator(to_isbn13)]

EXAMPLE_BOOK = {"title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813, "isbn": "978-0-14-143951-8"}


class BookIn(BaseModel):
    """The body of POST and PUT: every field of a book but its id, which the database assigns."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_BOOK]})

    title: Title
    author: Author
    year: StrictYear
    isbn: Isbn | None = None


class BookPatch(BaseModel):
    """The body of PATCH: any subset of the fields; only those sent change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"year": 1813}]})

    # SkipJsonSchema[None]: "may be left out", without telling /docs that null is allowed.
    title: Title | SkipJsonSchema[None] = None
    author: Author | SkipJsonSchema[None] = None
    year: StrictYear | SkipJsonSchema[None] = None
    isbn: Isbn | None = None  # null clears the isbn

    @field_validator("title", "author", "year")
    @classmethod
    def reject_null(cls, value: object) -> object:
        if value is None:  # runs only for values sent, so a left-out field stays allowed
            raise ValueError("may be left out, but cannot be null")
        return value


class BookOut(BaseModel):
    """A book as the API returns it, read straight from a BookModel's attributes."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{"id": 1, **EXAMPLE_BOOK}]})

    id: int
    title: str
    author: str
    year: int
    isbn: str | None


# Title and author sort by their case-folded copies, so "apple" comes before "Zebra".
SORT_COLUMNS = {
    "id": BookModel.id,
    "title": BookModel.title_folded,
    "author": BookModel.author_folded,
    "year": BookModel.year,
}
SortKey = Literal["id", "-id", "title", "-title", "author", "-author", "year", "-year"]


class BookQuery(BaseModel):
    """Query parameters of GET /books: filters, then a sort, then one page of the result."""

    q: SearchText | None = Field(None, description="Case-insensitive text that the title or the author contains")
    author: SearchText | None = Field(None, description="Case-insensitive exact author")
    year_from: Year | None = Field(None, description="Earliest year, inclusive")
    year_to: Year | None = Field(None, description="Latest year, inclusive")
    sort: SortKey = Field("id", description="Field to sort by; a leading '-' sorts in descending order")
    limit: int = Field(20, ge=1, le=100, description="Books per page")
    offset: int = Field(0, ge=0, le=MAX_ID, description="Books to skip before the page starts")


class Problem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class Problems(BaseModel):
    """A 422 body: each problem, with where it is (`loc`) and what is wrong (`msg`)."""

    detail: list[Problem]


class Message(BaseModel):
    detail: str


def documented(status_code: int, description: str, example: object, model: type[BaseModel] | None = Message) -> Any:
    """An error response as /docs shows it: when it happens, its schema and an example."""
    return {
        status_code: {"model": model, "description": description, "content": {"application/json": {"example": example}}}
    }


TOO_LATE = {"type": "less_than_equal", "loc": ["body", "year"], "msg": "Input should be less than or equal to 9999"}
INVALID = documented(422, "The request breaks a rule", {"detail": [TOO_LATE]}, Problems)
NOT_FOUND = documented(404, "No book has this id", {"detail": "Book 42 not found"})
DUPLICATE = documented(409, "Another book has this isbn", {"detail": "A book with isbn 9780141439518 already exists"})
NO_KEY = documented(401, "API_KEY is set, and X-API-Key is missing or wrong", {"detail": "Missing or wrong X-API-Key"})
UNAVAILABLE = {"status": "unavailable", "detail": "The database cannot be reached"}


# --- The app: start-up and shutdown, /docs, and the answer to a request that breaks a rule ----------------------


async def create_tables() -> None:
    """Create the tables that are missing. Server processes that start together (uvicorn --workers 2) race to do
    it: a loser gets an error, looks again, and finds that table made. It can lose at most once per table."""
    tries = len(Base.metadata.tables) + 1
    for attempt in range(1, tries + 1):
        try:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            return
        except (DBAPIError, OSError) as error:
            if attempt == tries:
                raise RuntimeError(
                    f"Cannot use the database at DATABASE_URL={engine.url} ({getattr(error, 'orig', error)}). "
                    "Check that it exists, that this user may read and write it (for SQLite: the file and its "
                    "folder), and that it is a database."
                ) from None


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
    """Fill an empty table with the DEMO books, so /docs has something to show; never touch a table with data."""
    async with SessionLocal() as session:
        if await session.scalar(select(func.count()).select_from(BookModel)):
            return
        for title, author, year, isbn in DEMO:
            book = BookIn(title=title, author=author, year=year, isbn=isbn)
            session.add(BookModel(**columns(book.model_dump())))
        with suppress(IntegrityError):  # another worker process added them a moment ago
            await session.commit()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At start-up create missing tables (never at import); at shutdown close the pooled connections."""
    await create_tables()
    if DEMO_BOOKS:
        await add_demo_books()
    yield
    await engine.dispose()


# FastAPIOffline: FastAPI, with /docs and /redoc served from files installed with Python, not from a CDN.
app = FastAPIOffline(
    title="Book API",
    version="1.0.0",
    description="A small async API for a table of books: add, list, search, change and delete them.\n\n"
    "To try a route, open it, click **Try it out**, then **Execute**; every error explains itself in `detail`.\n\n"
    "If the server was started with `API_KEY`, click **Authorize** and paste the key before you write.",
    openapi_tags=[
        {"name": "books", "description": "Add, read, list, change and delete books."},
        {"name": "health", "description": "Whether the API can reach its database."},
    ],
    lifespan=lifespan,
)
app.add_middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what is wrong. Unlike FastAPI's default it does not echo the input back, which may not be
    expressible in JSON (a lone surrogate, 1e400); a key with a lone surrogate in `loc` gets a "?" instead."""
    problems = [
        {"type": error["type"], "loc": [safe_text(part) for part in error["loc"]], "msg": error["msg"]}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


def safe_text(part: int | str) -> int | str:
    return part if isinstance(part, int) else part.encode("utf-8", "replace").decode()


# --- Routes: the HTTP interface ------------------------------------------------------------------------------------

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed for writes if API_KEY is set.")


async def require_api_key(key: Annotated[str | None, Security(api_key_header)]) -> None:
    """Writes need the X-API-Key header when API_KEY is set; reads never do."""
    # compare_digest takes as long for a near miss as for a wild guess, so timing reveals nothing about the key.
    if API_KEY is not None and (key is None or not secrets.compare_digest(key.encode(), API_KEY.encode())):
        raise HTTPException(
            401,
            detail="Missing or wrong X-API-Key header: send the API key this server was started with",
            headers={"WWW-Authenticate": "APIKey"},
        )


WriteAccess = Depends(require_api_key)
BookId = Annotated[int, Path(ge=1, le=MAX_ID, description="The book's id, as assigned by the database")]
router = APIRouter(prefix="/books", tags=["books"], responses=INVALID)  # the book routes, added to the app at the end


def book_not_found(book_id: int) -> HTTPException:
    return HTTPException(404, detail=f"Book {book_id} not found")


def duplicate_isbn(isbn: str | None) -> HTTPException:
    """409 for a write that the database's unique constraint refused. The constraint, not a look-up first, decides:
    of two requests racing with one isbn, exactly one wins."""
    return HTTPException(409, detail=f"A book with isbn {isbn} already exists; isbn must be unique")


async def get_book_or_404(session: AsyncSession, book_id: int) -> BookModel:
    book = await session.get(BookModel, book_id)
    if book is None:
        raise book_not_found(book_id)
    return book


async def update_book(session: AsyncSession, book_id: int, changes: dict[str, Any]) -> BookModel:
    """Write the changes in one UPDATE ... RETURNING: nothing is read first, so no other request can slip in between
    a read and the write, and a book deleted meanwhile simply matches no row."""
    if not changes:
        return await get_book_or_404(session, book_id)
    statement = update(BookModel).where(BookModel.id == book_id).values(columns(changes)).returning(BookModel)
    try:
        book = await session.scalar(statement)
        await session.commit()
    except IntegrityError:
        raise duplicate_isbn(changes.get("isbn")) from None
    if book is None:
        raise book_not_found(book_id)
    return book


@app.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("", response_model=list[BookOut])
async def list_books(query: Annotated[BookQuery, Query()], session: SessionDep, response: Response) -> list[BookModel]:
    """One page of books, filtered and sorted; the header X-Total-Count says how many match in all."""
    filters = []
    if query.q is not None:
        q = query.q.casefold()
        filters.append(
            or_(
                BookModel.title_folded.contains(q, autoescape=True),
                BookModel.author_folded.contains(q, autoescape=True),
            )
        )
    if query.author is not None:
        filters.append(BookModel.author_folded == query.author.casefold())
    if query.year_from is not None:
        filters.append(BookModel.year >= query.year_from)
    if query.year_to is not None:
        filters.append(BookModel.year <= query.year_to)

    # Ties are ordered by id, so pages never overlap. "-year" is the exact reverse of "year", ties included:
    # then the index on year serves both directions, with no sorting step however large the table.
    column = SORT_COLUMNS[query.sort.lstrip("-")]
    order = [column.desc(), BookModel.id.desc()] if query.sort.startswith("-") else [column.asc(), BookModel.id.asc()]

    statement = select(BookModel).where(*filters).order_by(*order)
    page = list(await session.scalars(statement.limit(query.limit).offset(query.offset)))
    if len(page) < query.limit and (page or query.offset == 0):  # a short page tells the total by itself
        total = query.offset + len(page)
    else:
        total = await session.scalar(select(func.count()).select_from(BookModel).where(*filters))
    response.headers["X-Total-Count"] = str(total)
    return page


@router.get("/{book_id}", response_model=BookOut, responses=NOT_FOUND)
async def read_book(book_id: BookId, session: SessionDep) -> BookModel:
    """One book, by its id."""
    return await get_book_or_404(session, book_id)


@router.post("", response_model=BookOut, status_code=201, dependencies=[WriteAccess], responses=DUPLICATE | NO_KEY)
async def create_book(book_in: BookIn, session: SessionDep, response: Response) -> BookModel:
    """Add a book. The database assigns its id; the Location header gives its address."""
    book = BookModel(**columns(book_in.model_dump()))
    session.add(book)
    try:
        await session.commit()
    except IntegrityError:
        raise duplicate_isbn(book_in.isbn) from None
    response.headers["Location"] = f"/books/{book.id}"
    return book


@router.put("/{book_id}", response_model=BookOut, dependencies=[WriteAccess], responses=NOT_FOUND | DUPLICATE | NO_KEY)
async def replace_book(book_id: BookId, book_in: BookIn, session: SessionDep) -> BookModel:
    """Replace every field of a book; an isbn left out becomes null."""
    return await update_book(session, book_id, book_in.model_dump())


@router.patch(
    "/{book_id}", response_model=BookOut, dependencies=[WriteAccess], responses=NOT_FOUND | DUPLICATE | NO_KEY
)
async def patch_book(book_id: BookId, book_patch: BookPatch, session: SessionDep) -> BookModel:
    """Change only the fields sent: `{}` changes nothing, and `"isbn": null` clears the isbn."""
    return await update_book(session, book_id, book_patch.model_dump(exclude_unset=True))


@router.delete(
    "/{book_id}", status_code=204, response_class=Response, dependencies=[WriteAccess], responses=NOT_FOUND | NO_KEY
)
async def delete_book(book_id: BookId, session: SessionDep) -> None:
    """Delete a book, in one statement that also tells whether it existed."""
    deleted = await session.scalar(delete(BookModel).where(BookModel.id == book_id).returning(BookModel.id))
    if deleted is None:
        raise book_not_found(book_id)
    await session.commit()


@app.get("/health", tags=["health"], responses=documented(503, UNAVAILABLE["detail"], UNAVAILABLE, None))
async def health(session: SessionDep) -> JSONResponse:
    """Whether the API can reach its database: 200 once it answered `SELECT 1`, else 503."""
    try:
        await session.scalar(select(1))
    except (SQLAlchemyError, OSError):
        return JSONResponse(UNAVAILABLE, status_code=503)
    return JSONResponse({"status": "ok"})


app.include_router(router)

if __name__ == "__main__":
    port = int(os.getenv("PORT", "8000"))
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(f"Port {port} is in use, perhaps by this API started before: stop that, or set PORT={port + 1}")
    uvicorn.run(app, host="127.0.0.1", port=port)
