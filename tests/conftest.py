"""Shared fixtures: every behavioural test runs once per URL in DBACCESS_TEST_URLS.

DBACCESS_TEST_URLS is a comma-separated list of database URLs (SQLite in memory when
unset). A server that cannot be reached skips its tests with a message saying how to
start it; under CI=true it fails the run instead.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import json
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiosqlite
import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseURL

from .servers import (
    PrivateMariaDB,
    PrivatePgBouncer,
    PrivatePostgreSQL,
    PrivateReplica,
    PrivateServer,
)

DEFAULT_URLS = "sqlite:///:memory:"
TEST_URLS = [
    url.strip()
    for url in os.environ.get("DBACCESS_TEST_URLS", DEFAULT_URLS).split(",")
    if url.strip()
]
IN_CI = os.environ.get("CI", "").lower() == "true"
#: The port of the PgBouncer (transaction mode) the PostgreSQL URLs go through, when the
#: suite runs under tests/through_pgbouncer.py.
PGBOUNCER_PORT = os.environ.get("DBACCESS_TEST_PGBOUNCER")


def _url_id(url: str) -> str:
    return DatabaseURL(url).scheme


_reachable: dict[str, str | None] = {}


def _unreachable_reason(url: str) -> str | None:
    """Why a server URL cannot be reached now, or None when it can (cached)."""
    if url not in _reachable:
        parsed = DatabaseURL(url)
        reason = None
        if parsed.dialect != "sqlite":
            default_port = 5432 if parsed.dialect.startswith("postgres") else 3306
            address = (parsed.hostname or "127.0.0.1", parsed.port or default_port)
            try:
                socket.create_connection(address, timeout=3).close()
            except OSError as exc:
                reason = f"{parsed.obscure_password} is not reachable ({exc})"
        _reachable[url] = reason
    return _reachable[url]


@pytest.fixture(params=TEST_URLS, ids=_url_id)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    reason = _unreachable_reason(url)
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires every configured backend")
        pytest.skip(
            f"{reason}: start the servers with `docker compose up -d`, or set "
            "DBACCESS_TEST_URLS to the backends you have (see README.md)"
        )
    return url


def behind_pgbouncer(url: str) -> bool:
    """Whether ``url`` goes through the suite's PgBouncer in transaction mode."""
    return PGBOUNCER_PORT is not None and DatabaseURL(url).port == int(PGBOUNCER_PORT)


#: Why a test cannot run through PgBouncer in transaction mode, by what it needs.
BEYOND_PGBOUNCER = {
    # Statements outside a transaction share one server session: a SET, a session lock,
    # a tag read back, a backend pid read twice (docs/pgbouncer.md: what does not survive).
    "one session": "needs one server session across transactions",
    # The server sessions are PgBouncer's: it opens, keeps and closes them, not dbaccess.
    "server sessions": "counts or kills the server sessions, which are PgBouncer's",
    # PgBouncer refuses libpq's `options` startup parameter.
    "startup options": "sends libpq's options= startup parameter, which PgBouncer refuses",
    # SQLAlchemy's asyncpg dialect names its prepared statements.
    "sqlalchemy": "runs SQLAlchemy's own asyncpg dialect, which names its prepared statements",
}


def skip_behind_pgbouncer(url: str, need: str) -> None:
    """Skip the test when ``url`` goes through the suite's PgBouncer and the test has a
    ``need`` (a key of BEYOND_PGBOUNCER) that transaction pooling cannot meet."""
    if behind_pgbouncer(url):
        pytest.skip(f"{BEYOND_PGBOUNCER[need]}: PgBouncer in transaction mode")


@pytest.fixture
def one_session(database_url: str) -> None:
    """For a test whose statements outside a transaction must share one server session."""
    skip_behind_pgbouncer(database_url, "one session")


@pytest.fixture
def own_server_sessions(database_url: str) -> None:
    """For a test that counts or kills the server sessions of its connections."""
    skip_behind_pgbouncer(database_url, "server sessions")


@pytest.fixture
def dialect(database_url: str) -> str:
    """'postgresql', 'mysql' or 'sqlite'."""
    name = DatabaseURL(database_url).dialect
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url) as db:
        yield db


# -- the tables the tests use --------------------------------------------------------

metadata = sa.MetaData()

notes = sa.Table(
    "dbaccess_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
    sa.Column("completed", sa.Boolean, nullable=False, default=False),
)

users = sa.Table(
    "dbaccess_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
)

accounts = sa.Table(
    "dbaccess_accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("balance", sa.Integer, nullable=False),
)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class JSONText(sa.types.TypeDecorator[Any]):
    """A custom type: JSON stored in a text column by our own code."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


everything = sa.Table(
    "dbaccess_types",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("integer", sa.Integer),
    sa.Column("string", sa.String(100)),
    sa.Column("text", sa.Text),
    sa.Column("boolean", sa.Boolean),
    sa.Column("float", sa.Float),
    sa.Column("numeric", sa.Numeric(10, 2)),
    sa.Column("date", sa.Date),
    sa.Column("time", sa.Time),
    sa.Column("naive", sa.DateTime),
    sa.Column("aware", sa.DateTime(timezone=True)),
    sa.Column("mood", sa.Enum(Mood, native_enum=False)),
    sa.Column("json", sa.JSON),
    sa.Column("binary", sa.LargeBinary),
    sa.Column("custom", JSONText),
)

ALL_TABLES = [notes, users, accounts, everything]

SAMPLE_VALUES: dict[str, Any] = {
    "integer": -2147483648,
    "string": "héllo ✓ 'quoted' \"double\" %s :name",
    "text": "line one\nline two " * 50,
    "boolean": True,
    "float": 3.25,
    "numeric": decimal.Decimal("12345678.90"),
    "date": datetime.date(2024, 2, 29),
    "time": datetime.time(23, 59, 58),
    "naive": datetime.datetime(2024, 2, 29, 13, 14, 15),
    "aware": datetime.datetime(
        2024, 2, 29, 13, 14, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
    ),
    "mood": Mood.SAD,
    "json": {"a": [1, 2.5, None, True], "b": {"c": "ü"}},
    "binary": bytes(range(256)),
    "custom": {"nested": [1, {"x": "y"}]},
}


async def create_tables(db: Database) -> None:
    await drop_tables(db)
    for table in ALL_TABLES:
        await db.execute(sa.schema.CreateTable(table))


async def drop_tables(db: Database) -> None:
    for table in reversed(ALL_TABLES):
        await db.execute(sa.schema.DropTable(table, if_exists=True))


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    """A connected Database with the test tables created, and dropped afterwards."""
    await create_tables(database)
    try:
        yield database
    finally:
        await drop_tables(database)


async def released(db: Database) -> bool:
    """Whether every pooled connection is back, after letting pending clean-ups run
    (an abandoned ``async for`` is closed by the event loop in a task of its own)."""
    for attempt in range(500):
        if db.pool_stats.in_use == 0:
            return True
        await asyncio.sleep(0 if attempt < 20 else 0.01)
    return db.pool_stats.in_use == 0


def driver_in_transaction(raw: Any) -> bool:
    """Whether a driver connection (asyncpg, psycopg, aiomysql, asyncmy, aiosqlite) is
    in a transaction, asked of the driver itself."""
    if hasattr(raw, "pgconn"):  # psycopg: INTRANS or INERROR
        return raw.pgconn.transaction_status in (2, 3)
    if hasattr(raw, "is_in_transaction"):  # asyncpg
        return bool(raw.is_in_transaction())
    if hasattr(raw, "get_transaction_status"):  # aiomysql, asyncmy
        return bool(raw.get_transaction_status())
    return bool(raw.in_transaction)  # aiosqlite


@pytest.fixture
def secret_password() -> Iterator[str]:
    yield "s3cr3t-PASSWORD-dbaccess"


# -- servers of the tests' own (tests/servers.py), for tests that freeze a server ------


@pytest.fixture(scope="session")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    """A MariaDB of this test session's own, that a test may freeze."""
    yield from _private(PrivateMariaDB)


@pytest.fixture(scope="session")
def private_postgresql() -> Iterator[PrivatePostgreSQL]:
    """A PostgreSQL of this test session's own, that a test may freeze."""
    yield from _private(PrivatePostgreSQL)


@pytest.fixture(scope="session")
def private_pgbouncer() -> Iterator[PrivatePgBouncer]:
    """A PgBouncer of this test session's own, in transaction mode in front of the shared
    PostgreSQL (127.0.0.1:5432), with 4 server connections."""
    yield from _private(PrivatePgBouncer)


@pytest.fixture(scope="session")
def streaming_pair() -> Iterator[tuple[PrivatePostgreSQL, PrivateReplica]]:
    """A PostgreSQL of this session's own and its streaming replica, for tests that only
    look where connections land; a test that stops or promotes one takes fresh_pair."""
    yield from _primary_and_replica()


@pytest.fixture
def fresh_pair() -> Iterator[tuple[PrivatePostgreSQL, PrivateReplica]]:
    """A new PostgreSQL and its streaming replica, removed after the test: for a test
    that stops the primary or promotes the replica (about 2 s to make)."""
    yield from _primary_and_replica()


def _primary_and_replica() -> Iterator[tuple[PrivatePostgreSQL, PrivateReplica]]:
    for primary in _private(PrivatePostgreSQL):
        for replica in _private(PrivateReplica, primary):
            yield primary, replica


ServerT = TypeVar("ServerT", bound=PrivateServer)


def _private(kind: type[ServerT], *args: Any) -> Iterator[ServerT]:
    server = kind(*args)
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        server.remove()
        if IN_CI:
            pytest.fail(f"could not start a private {kind.name}: {exc}")
        pytest.skip(f"could not start a private {kind.name} (are its binaries installed?): {exc}")
    try:
        yield server
    finally:
        server.remove()


async def system_name(db: Database) -> str:
    """The database system as OpenTelemetry names it: postgresql, mysql, mariadb, sqlite."""
    dialect = db.url.dialect
    if dialect == "sqlite":
        return "sqlite"
    if dialect.startswith("postgres"):
        return "postgresql"
    version = str(await db.fetch_val("SELECT VERSION()"))
    return "mariadb" if "mariadb" in version.lower() else "mysql"


# -- whether a pool's connections are closed: on the server, or SQLite's threads ------

# Each backend's way to list this pool's connections on the server, and to count which
# of them are still open.
OPEN_SESSIONS = {
    "postgresql": (
        "SELECT pg_backend_pid()",
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:ids)",
    ),
    "mysql": (
        "SELECT CONNECTION_ID()",
        "SELECT count(*) FROM information_schema.processlist WHERE id IN :ids",
    ),
}


def aiosqlite_workers() -> set[threading.Thread]:
    """The worker threads of open aiosqlite connections: threads running its
    _connection_worker_thread (aiosqlite >= 0.22), or its connections themselves, which
    were threads before."""
    return {
        thread
        for thread in threading.enumerate()
        if "_connection_worker_thread" in thread.name or isinstance(thread, aiosqlite.Connection)
    }


def sqlite_threads() -> int:
    return len(aiosqlite_workers())


async def session_ids(db: Database, dialect: str, count: int) -> list[int]:
    """The server ids of ``count`` connections of the pool, all held at once (on SQLite,
    which has no server, zeros)."""
    query = OPEN_SESSIONS[dialect][0] if dialect in OPEN_SESSIONS else "SELECT 0"
    ids: list[int] = []
    all_held = asyncio.Event()

    async def hold() -> None:
        async with db.connection() as conn:
            ids.append(int(await conn.fetch_val(query)))
            if len(ids) == count:
                all_held.set()
            await all_held.wait()

    await asyncio.gather(*(hold() for _ in range(count)))
    return ids


async def eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    for _ in range(200):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def all_closed(admin: Database, dialect: str, ids: list[int], threads: int) -> bool:
    """Whether the server sessions ``ids`` end soon (on SQLite: whether no more than
    ``threads`` worker threads are left), asked through ``admin``."""
    if dialect == "sqlite":

        async def threads_ended() -> bool:
            return sqlite_threads() <= threads

        return await eventually(threads_ended)
    count = OPEN_SESSIONS[dialect][1]

    async def sessions_ended() -> bool:
        return int(await admin.fetch_val(count, {"ids": ids})) == 0

    return await eventually(sessions_ended)
