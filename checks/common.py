"""What every check needs: a fresh database, a real `uvicorn main:app` on a spare port, and a bounded client."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # so that a check can import main


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def fresh_database(postgres_url: str | None = None) -> Iterator[str]:
    """A URL for an empty database: a new SQLite file, or a new database on the PostgreSQL server given."""
    if postgres_url is None:
        with tempfile.TemporaryDirectory(prefix="bookapi-check-") as folder:
            yield f"sqlite+aiosqlite:///{folder}/books.db"
        return
    name = f"bookapi_check_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


class Server:
    """`uvicorn main:app` in its own process group, so that stop() and kill() reach every worker."""

    def __init__(
        self,
        database_url: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        app: str = "main:app",
        app_dir: Path = ROOT / "checks",
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = spare_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workers = workers
        self.app = app
        self.app_dir = app_dir
        self.extra_args = extra_args or []
        self.env = {key: value for key, value in os.environ.items() if key not in {"API_KEY", "SQL_ECHO"}}
        self.env.update(DATABASE_URL=database_url, **(env or {}))
        self.cwd = ROOT  # the folder it runs in
        self.ready_path = "/health"  # answers 200 once the server is up
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="bookapi-server-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self, timeout: float = 30) -> "Server":
        command = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        command += [
            "--workers",
            str(self.workers),
            "--no-access-log",
            "--app-dir",
            str(self.app_dir),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; log: {self.log.name}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy in {timeout} s; log: {self.log.name}")

    def stop(self, timeout: float = 15) -> None:
        """A graceful shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9 every process of the server, as a crash or a power cut would stop it."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def server_errors_logged(self) -> int:
        return Path(self.log.name).read_text(errors="replace").count("Traceback")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def isbn13(n: int) -> str:
    """A valid ISBN-13 made from a number, for generated books."""
    digits = f"9791{n % 10**8:08d}"
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return digits + str(check)


def summary(name: str, ok: bool, figures: dict[str, object]) -> int:
    """Print the one summary line (figures last) and return the exit status."""
    shown = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"{name}: {'PASS' if ok else 'FAIL'} {shown}", flush=True)
    return 0 if ok else 1
