"""What the PostgreSQL backends (asyncpg, psycopg) share: the server speaks the same
whichever driver talks to it, so its errors, transactions and session reset are
described once, here."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ..errors import (
    ConfigurationError,
    DatabaseError,
    DataError,
    DBAccessError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from ..options import Options, Parser, parse_bool, parse_int, parse_target_session_attrs
from ..url import DatabaseURL
from .base import BackendConnection, Rows, TransactionMode

__all__ = [
    "ABORTED_COMMIT",
    "ISOLATION_LEVELS",
    "RESET_SESSION",
    "URL_OPTIONS",
    "begin_statement",
    "learn_server_settings",
    "pooler_hint",
    "host_lists",
    "read_at_once",
    "rowcount",
    "session_fits",
    "sqlstate_error",
    "without_prepared_statements",
]

# SQLSTATE classes (the first two characters) and the DB-API error each one means.
_SQLSTATE_CLASSES: dict[str, type[DBAccessError]] = {
    "08": OperationalError,  # connection exception
    "0A": NotSupportedError,
    "20": ProgrammingError,  # case not found
    "21": ProgrammingError,  # cardinality violation
    "22": DataError,
    "23": IntegrityError,
    "24": InternalError,  # invalid cursor state
    "25": InternalError,  # invalid transaction state, including "transaction is aborted"
    "26": ProgrammingError,
    "27": OperationalError,
    "28": OperationalError,  # invalid authorization
    "2B": InternalError,
    "2D": InternalError,
    "2F": InternalError,
    "34": ProgrammingError,
    "38": InternalError,
    "39": InternalError,
    "3B": InternalError,
    "3D": ProgrammingError,  # invalid catalog name
    "3F": ProgrammingError,  # invalid schema name
    "40": OperationalError,  # serialization failure, deadlock
    "42": ProgrammingError,  # syntax error, undefined table or column
    "44": ProgrammingError,
    "53": OperationalError,  # insufficient resources
    "54": OperationalError,  # program limit exceeded
    "55": OperationalError,  # object not in prerequisite state, lock not available
    "57": OperationalError,  # operator intervention: cancelled, shutting down
    "58": OperationalError,  # system error
    "F0": InternalError,
    "HV": OperationalError,
    "P0": InternalError,  # PL/pgSQL raise
    "XX": InternalError,
}

# Single SQLSTATEs classed apart from their class, to match the other backends.
_SQLSTATES: dict[str, type[DBAccessError]] = {
    "25006": OperationalError,  # a write in a READ ONLY transaction (MySQL, SQLite: same)
}


def sqlstate_error(sqlstate: str | None) -> type[DBAccessError]:
    """The dbaccess error class for a server error's SQLSTATE."""
    code = sqlstate or ""
    return _SQLSTATES.get(code) or _SQLSTATE_CLASSES.get(code[:2], DatabaseError)


#: The options of PostgreSQL URLs, whichever driver: in the query string or as keywords.
URL_OPTIONS: dict[str, Parser] = {
    "host": lambda name, value: str(value),  # a Unix socket directory
    "application_name": lambda name, value: str(value),
    # 0 prepares no statement.
    "statement_cache_size": lambda name, value: parse_int(name, value, minimum=0),
    # false: for PgBouncer in transaction mode (docs: PgBouncer).
    "prepared_statements": parse_bool,
    # Which of several hosts to connect to (docs: Beyond one server).
    "target_session_attrs": parse_target_session_attrs,
}

ISOLATION_LEVELS = frozenset(
    {"read uncommitted", "read committed", "repeatable read", "serializable"}
)


def begin_statement(mode: TransactionMode) -> str:
    """The BEGIN that opens an outermost transaction in ``mode``."""
    sql = "BEGIN"
    if mode.isolation:
        sql += f" ISOLATION LEVEL {mode.isolation.upper()}"
    if mode.readonly:
        sql += " READ ONLY"
    if mode.deferrable is not None:
        sql += " DEFERRABLE" if mode.deferrable else " NOT DEFERRABLE"
    return sql


def rowcount(status: str) -> int:
    """The row count of a command tag ("UPDATE 3"), or -1 when it has none."""
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else -1


#: Back to a fresh session: settings (to the values the connection started with),
#: session advisory locks, cursors, listeners, the session user and temporary tables.
#: DISCARD ALL would also drop the prepared statements the drivers cache: this is the
#: rest of it, in its order.
RESET_SESSION = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)

#: PostgreSQL aborts a transaction at its first error and answers COMMIT by rolling
#: back; said instead of letting the caller believe it committed.
ABORTED_COMMIT = (
    "cannot commit: PostgreSQL aborted this transaction after an error in "
    "one of its statements, and rolled it back"
)


def learn_server_settings(dialect: Any, standard_conforming_strings: str | None) -> None:
    """Tell the dialect the server's settings that change the SQL text it writes."""
    # With standard_conforming_strings off, a backslash in a string literal escapes;
    # SQLAlchemy's dialect doubles it when told so, which its initialize() does from a
    # synchronous connection dbaccess never has. Its default differs: SQLAlchemy 2.0
    # assumes escaping, 2.1 does not, so a literal backslash reached the server
    # doubled on 2.0.
    dialect._backslash_escapes = standard_conforming_strings == "off"


def without_prepared_statements(options: Options) -> bool:
    """Whether ``prepared_statements=false`` was given (for a transaction pooler such as
    PgBouncer in transaction mode), refusing a statement cache beside it."""
    off = options.backend.get("prepared_statements") is False
    cache_size = options.backend.get("statement_cache_size")
    if off and cache_size:
        raise ConfigurationError(
            f"options prepared_statements=false and statement_cache_size={cache_size} "
            "contradict each other: without prepared statements nothing is cached; "
            "drop statement_cache_size"
        )
    return off


#: The names the drivers give the statements they prepare: asyncpg's
#: "__asyncpg_stmt_1a__", psycopg's "_pg3_0". Seen in an error, they mean a statement
#: prepared on one server connection was looked for on another.
_DRIVER_STATEMENT = re.compile(r'prepared statement "(__asyncpg_|_pg3_)')

_POOLER_HINT = (
    "; the driver's prepared statement is missing or different on this server "
    "connection: the connection is most likely behind PgBouncer in transaction (or "
    "statement) pool mode, or another transaction pooler, which hands each transaction "
    "to any server connection. Add prepared_statements=false to the URL's query string "
    "(or Database(url, prepared_statements=False)), or run PgBouncer 1.21+ with "
    "max_prepared_statements set, or use its session mode (see docs: PgBouncer)"
)


def pooler_hint(message: str) -> str | None:
    """The server's error message with the advice for a transaction pooler, when the
    error shows one ("prepared statement "__asyncpg_stmt_3__" does not exist"), else None."""
    if _DRIVER_STATEMENT.search(message) is None:
        return None
    return message + _POOLER_HINT


async def read_at_once(
    conn: BackendConnection, sql: str, args: Sequence[Any], chunk_size: int
) -> AsyncGenerator[Rows, None]:
    """All the rows in one statement, handed out in chunks: what a WITH HOLD cursor does
    on the server, done in this process, for prepared_statements=false (behind a
    transaction pooler the next FETCH may reach a server connection without the cursor)."""
    rows, keys = await conn.fetch(sql, args, None)
    for start in range(0, len(rows), chunk_size):
        yield rows[start : start + chunk_size], keys


def host_lists(url: DatabaseURL) -> tuple[list[str], list[int]] | None:
    """The hosts and ports of a URL naming several (libpq's ``h1:5432,h2:5433``), a host
    without a port on 5432; None for a URL with one host or none."""
    if len(url.hosts) < 2:
        return None
    return [host for host, _ in url.hosts], [port or 5432 for _, port in url.hosts]


def session_fits(attrs: str, in_recovery: bool, read_only: bool) -> bool:
    """Whether a server session meets libpq's ``target_session_attrs`` (as libpq asks:
    ``read-write`` wants no recovery and default_transaction_read_only off)."""
    if attrs == "read-write":
        return not (in_recovery or read_only)
    if attrs == "read-only":
        return in_recovery or read_only
    if attrs == "primary":
        return not in_recovery
    if attrs in ("standby", "prefer-standby"):
        return in_recovery
    return True  # any
