"""What the PostgreSQL backends (asyncpg, psycopg) share: the server speaks the same
whichever driver talks to it, so its errors, transactions and session reset are
described once, here."""

from __future__ import annotations

from typing import Any

from ..errors import (
    DatabaseError,
    DataError,
    DBAccessError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from .base import TransactionMode

__all__ = [
    "ABORTED_COMMIT",
    "ISOLATION_LEVELS",
    "RESET_SESSION",
    "begin_statement",
    "rowcount",
    "learn_server_settings",
    "sqlstate_error",
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
