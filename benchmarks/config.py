"""What is measured and where: workload sizes and backend URLs."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import make_url

__all__ = [
    "BACKENDS",
    "FULL",
    "QUICK",
    "WORKLOADS",
    "BackendConfig",
    "Sizes",
    "backend_config",
]

#: The timed workloads, in the order they run and are reported.
WORKLOADS = (
    "point_core",
    "point_raw",
    "fetch_all",
    "execute_many",
    "concurrent",
    "transactions",
    "iterate",
)

BACKENDS = ("postgresql", "mysql", "sqlite")


@dataclass(frozen=True)
class Sizes:
    rows: int  # rows in bench_items
    point_queries: int  # sequential fetch_one calls in point_core / point_raw
    fetch_all_repeats: int  # fetch_all of every row, this many times per run
    execute_many_rows: int  # rows inserted by one execute_many
    concurrent_tasks: int
    concurrent_queries: int  # point queries per task
    pool_size: int
    transactions: int  # transactions of one insert each
    chunk_size: int  # rows per fetch when a contender streams by hand (raw drivers)
    memory_rows: int  # rows streamed by the --memory mode
    rounds: int
    timeout: float  # seconds one workload run may take before it is recorded as failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes(
    rows=20_000,
    point_queries=2_000,
    fetch_all_repeats=3,
    execute_many_rows=5_000,
    concurrent_tasks=64,
    concurrent_queries=100,
    pool_size=10,
    transactions=500,
    chunk_size=1_000,
    memory_rows=1_000_000,
    rounds=5,
    timeout=300.0,
)

QUICK = Sizes(
    rows=200,
    point_queries=50,
    fetch_all_repeats=1,
    execute_many_rows=100,
    concurrent_tasks=8,
    concurrent_queries=10,
    pool_size=4,
    transactions=20,
    chunk_size=50,
    memory_rows=10_000,
    rounds=1,
    timeout=60.0,
)


@dataclass(frozen=True)
class BackendConfig:
    """One database, as each contender names it."""

    name: str  # postgresql, mysql, sqlite
    url: str  # the encode/databases and dbaccess URL, without pool options
    sqlalchemy_url: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    database: str = ""  # the database name, or the SQLite file path

    def describe(self) -> dict[str, Any]:
        """Where it runs, without the password."""
        return {
            "url": str(make_url(self.url).render_as_string(hide_password=True)),
            "sqlalchemy_url": make_url(self.sqlalchemy_url).render_as_string(hide_password=True),
        }


DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/dbaccess_bench"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/dbaccess_bench"


def _server(name: str, url: str, sqlalchemy_driver: str, default_port: int) -> BackendConfig:
    parsed = make_url(url)
    base = parsed.set(drivername=parsed.get_backend_name())
    return BackendConfig(
        name=name,
        url=base.render_as_string(hide_password=False),
        sqlalchemy_url=parsed.set(drivername=sqlalchemy_driver).render_as_string(
            hide_password=False
        ),
        host=parsed.host or "127.0.0.1",
        port=parsed.port or default_port,
        user=parsed.username or "",
        password=parsed.password or "",
        database=parsed.database or "",
    )


def backend_config(name: str, scratch_dir: str | None = None) -> BackendConfig:
    """The backend ``name``, with URLs from BENCH_POSTGRES_URL, BENCH_MYSQL_URL and
    BENCH_SQLITE_PATH when set (else the local servers' ``dbaccess_bench`` and a file in
    ``scratch_dir``, a temporary directory)."""
    if name == "postgresql":
        url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        return _server(name, url, "postgresql+asyncpg", 5432)
    if name == "mysql":
        url = os.environ.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL)
        return _server(name, url, "mysql+aiomysql", 3306)
    if name == "sqlite":
        path = os.environ.get("BENCH_SQLITE_PATH") or os.path.join(
            scratch_dir or tempfile.gettempdir(), "dbaccess_bench.sqlite3"
        )
        path = os.path.abspath(path)
        return BackendConfig(
            name=name,
            url=f"sqlite:///{path}",
            sqlalchemy_url=f"sqlite+aiosqlite:///{path}",
            database=path,
        )
    raise ValueError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)}")
