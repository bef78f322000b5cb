"""SQLite through aiosqlite, with a real pool.

Each connection is set up once: autocommit mode (dbaccess issues BEGIN itself),
foreign keys on, a busy timeout, and WAL journaling for files so readers and a
writer do not block each other. ``sqlite:///:memory:`` is one in-memory database
shared by every connection of the pool (SQLite's ``memdb`` VFS); it lives until
:meth:`Database.disconnect`.

aiosqlite runs every sqlite3 call in the connection's own thread, and each call is a
round trip between threads. dbaccess runs a whole statement (execute, read the rows,
close the cursor) as one call, where aiosqlite's public cursor API takes three, and runs
a transaction's BEGIN in the same call as its first statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine.interfaces import Dialect

from ..errors import (
    ConfigurationError,
    DatabaseError,
    DataError,
    DBAccessError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    translate,
)
from ..options import Options, Parser, parse_bool, parse_options, parse_seconds
from ..url import DatabaseURL
from .base import Backend, BackendConnection, Outcome, Rows, TransactionMode

__all__ = ["SQLiteBackend"]

_T = TypeVar("_T")

_JOURNAL_MODES = ("delete", "truncate", "persist", "memory", "wal", "off")
_memory_names = itertools.count(1)


def _parse_journal_mode(name: str, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in _JOURNAL_MODES:
        raise ConfigurationError(
            f"option {name}={value!r} must be one of: {', '.join(_JOURNAL_MODES)}"
        )
    return mode


_ERRORS: tuple[tuple[type[BaseException], type[DBAccessError]], ...] = (
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.DataError, DataError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.DatabaseError, DatabaseError),
    (sqlite3.Error, DatabaseError),
)
_SQLITE_ERROR = 1  # "SQL logic error": bad syntax, no such table or column


def _translate(exc: Exception) -> DBAccessError:
    if isinstance(exc, sqlite3.OperationalError) and _is_sql_error(exc):
        return translate(exc, ProgrammingError)
    if isinstance(exc, ValueError):  # aiosqlite: "no active connection"
        return translate(exc, InterfaceError)
    for theirs, ours in _ERRORS:
        if isinstance(exc, theirs):
            return translate(exc, ours)
    return translate(exc, DatabaseError)


def _is_sql_error(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code == _SQLITE_ERROR)
    message = str(exc)
    return message.startswith(("no such ", "near ", "syntax error")) or " syntax " in message


_DRIVER_ERRORS = (sqlite3.Error, ValueError)
# sqlite3.connect() keywords a caller may pass (the others dbaccess sets itself).
_SQLITE_KEYWORDS = frozenset({"detect_types", "check_same_thread", "factory", "cached_statements"})


# Statements run whole in the connection's thread: execute, read, close.


def _fetch(db: sqlite3.Connection, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
    cursor = db.execute(sql, args)
    try:
        rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        return rows, tuple(column[0] for column in cursor.description or ())
    finally:
        cursor.close()


def _execute(
    db: sqlite3.Connection, sql: str, args: Sequence[Any], returns_rows: bool
) -> tuple[Sequence[Any], tuple[str, ...], int, int | None]:
    cursor = db.execute(sql, args)
    try:
        rows = cursor.fetchall() if returns_rows else ()
        keys = tuple(column[0] for column in cursor.description or ())
        return rows, keys, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _execute_many(db: sqlite3.Connection, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
    db.executemany(sql, many_args).close()


def _run(db: sqlite3.Connection, sql: str) -> None:
    db.execute(sql).close()


def _nothing(db: sqlite3.Connection) -> None:
    return None


_QUERY_ONLY_ON = "PRAGMA query_only = ON"


def _begun(
    db: sqlite3.Connection, begin: tuple[str, ...], function: Callable[..., _T], *args: Any
) -> _T:
    """Begin the transaction, then run ``function``: both in one call."""
    for sql in begin:
        db.execute(sql).close()
    return function(db, *args)


def _unless_terminated(
    connection: SQLiteConnection, function: Callable[..., _T], db: sqlite3.Connection, *args: Any
) -> _T:
    """Run ``function`` in the worker thread, unless the connection was terminated while
    the call waited in the thread's queue (its caller was cancelled): a statement nobody
    waits for any more would hold the thread, and disconnect(), until it finished."""
    if connection._closed:
        raise sqlite3.InterfaceError("the connection was terminated")
    return function(db, *args)


# aiosqlite runs each call in its connection's thread through Connection._execute(),
# the one method all its public ones share (since 0.11). Running a whole statement in
# one call takes one thread hop instead of three; should a later aiosqlite drop it,
# the functions run through the public API instead, each step a hop.
_ONE_HOP = callable(getattr(aiosqlite.Connection, "_execute", None)) and isinstance(
    getattr(aiosqlite.Connection, "_conn", None), property
)


async def _multi_hop(conn: aiosqlite.Connection, function: Callable[..., _T], *args: Any) -> _T:
    if function is _fetch:
        sql, params, limit = args
        async with conn.execute(sql, params) as cursor:
            rows = await (cursor.fetchall() if limit is None else cursor.fetchmany(limit))
            keys = tuple(column[0] for column in cursor.description or ())
        return (list(rows), keys)  # type: ignore[return-value]
    if function is _execute:
        sql, params, returns_rows = args
        async with conn.execute(sql, params) as cursor:
            rows = list(await cursor.fetchall()) if returns_rows else []
            keys = tuple(column[0] for column in cursor.description or ())
            return (rows, keys, cursor.rowcount, cursor.lastrowid)  # type: ignore[return-value]
    if function is _execute_many:
        await conn.executemany(*args)
        return None  # type: ignore[return-value]
    await conn.execute(*args)
    return None  # type: ignore[return-value]


def _stop(conn: aiosqlite.Connection) -> asyncio.Future[Any] | None:
    """Close ``conn`` and end its thread without waiting; return what ends with it."""
    stop = getattr(conn, "stop", None)
    if stop is not None:  # aiosqlite >= 0.22.1
        stopped: asyncio.Future[Any] | None = stop()
        return stopped
    # Older aiosqlite has no stop(): close() queues the same work (the thread closes
    # the sqlite3 connection, then ends), in a task of its own so that nothing waits.
    try:
        return asyncio.get_running_loop().create_task(_close_quietly(conn))
    except RuntimeError:  # no event loop any more: the thread ends with the process
        return None


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    # Already closed, or its statement was interrupted: nothing left to close.
    with contextlib.suppress(*_DRIVER_ERRORS):
        await conn.close()


class SQLiteConnection(BackendConnection):
    __slots__ = (
        "_begin",
        "_closed",
        "_conn",
        "_deadline",
        "_never_began",
        "_query_only",
        "_stopping",
        "_timeout",
    )

    def __init__(
        self,
        conn: aiosqlite.Connection,
        stopping: set[asyncio.Future[Any]],
        timeout: float | None = None,
    ) -> None:
        self._conn = conn
        #: command_timeout: each statement arms a deadline that SQLite's progress
        #: handler checks in the worker thread (see SQLiteBackend._open).
        self._timeout = timeout
        self._deadline = math.inf
        # Where terminate() leaves the future of the worker thread's end, for the
        # backend to wait on before the event loop may close.
        self._stopping = stopping
        self._closed = False
        self._query_only = False
        #: The BEGIN of a transaction, not run yet: it runs with the transaction's first
        #: statement, in the same call to the connection's thread (one hop, not two).
        self._begin: tuple[str, ...] = ()
        #: That BEGIN failed (SQLITE_BUSY after the busy timeout, say): there is no
        #: transaction to roll back, and none to commit.
        self._never_began = False

    @property
    def raw(self) -> aiosqlite.Connection:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return bool(self._begin) or bool(self._conn.in_transaction)

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _arm(self) -> None:
        if self._timeout is not None:
            self._deadline = time.monotonic() + self._timeout

    def interrupt_due(self) -> bool:
        """SQLite's progress handler: True stops the running statement."""
        return time.monotonic() > self._deadline

    def _error(self, exc: Exception) -> DBAccessError:
        if self._timeout is not None and str(exc) == "interrupted":
            return translate(
                exc,
                OperationalError,
                f"the statement ran longer than command_timeout={self._timeout} s and was "
                "interrupted; the connection stays usable",
            )
        return _translate(exc)

    async def _in_thread(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(sqlite3_connection, *args)`` in the connection's thread."""
        begin = self._begin
        if begin:
            self._begin = ()
            if _QUERY_ONLY_ON in begin:
                self._query_only = True  # reset by _end, whether or not it ran
            try:
                return await self._call(_begun, begin, function, *args)
            except DBAccessError:
                self._never_began = not self._conn.in_transaction
                raise
        return await self._call(function, *args)

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        self._arm()
        try:
            if _ONE_HOP:
                # The whole statement in one hop to the connection's thread.
                result: _T = await self._conn._execute(  # type: ignore[no-untyped-call]
                    _unless_terminated, self, function, self._conn._conn, *args
                )
                return result
            if function is _begun:
                begin, function, *args = args  # type: ignore[assignment]
                for sql in begin:
                    await _multi_hop(self._conn, _run, sql)
            return await _multi_hop(self._conn, function, *args)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        return await self._in_thread(_fetch, sql, args, limit)

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        rows, keys, rowcount, lastrowid = await self._in_thread(_execute, sql, args, returns_rows)
        if returns_rows and rowcount < 0:
            rowcount = len(rows)
        return Outcome(rowcount, lastrowid, rows, keys)

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        await self._in_thread(_execute_many, sql, many_args)

    async def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, transaction_open: bool
    ) -> AsyncGenerator[Rows, None]:
        if self._begin:  # the cursor below is opened outside _in_thread: begin first
            await self._in_thread(_nothing)
        self._arm()
        try:
            cursor = await self._conn.execute(sql, args)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        keys = [column[0] for column in cursor.description or ()]
        try:
            while True:
                self._arm()
                try:
                    rows = await cursor.fetchmany(chunk_size)
                except _DRIVER_ERRORS as exc:
                    raise self._error(exc) from exc
                if not rows:
                    return
                yield rows, keys  # type: ignore[misc]
        finally:
            await cursor.close()

    async def begin(self, mode: TransactionMode) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads
        # and then writes can fail at once with SQLITE_BUSY, the busy timeout unused.
        self._never_began = False
        self._begin = ("BEGIN DEFERRED", _QUERY_ONLY_ON) if mode.readonly else ("BEGIN IMMEDIATE",)

    async def commit(self) -> None:
        await self._end("COMMIT")

    async def rollback(self) -> None:
        await self._end("ROLLBACK")

    async def _end(self, sql: str) -> None:
        if self._begin or self._never_began:
            # No statement ran (nothing to end), or the BEGIN itself failed.
            never_began = self._never_began
            self._begin, self._never_began = (), False
            if never_began and sql == "COMMIT":
                raise OperationalError(
                    "cannot commit: the transaction never began (its BEGIN failed with "
                    "the first statement's error)"
                )
            return
        try:
            await self.run(sql)
        finally:
            if self._query_only and not self._conn.in_transaction:
                await self.run("PRAGMA query_only = OFF")
                self._query_only = False

    async def run(self, sql: str) -> None:
        await self._in_thread(_run, sql)

    async def close(self) -> None:
        self._closed = True
        try:
            await self._conn.close()
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    def terminate(self) -> None:
        if self._closed:
            return
        self._closed = True
        raw = self._conn._connection
        if raw is not None:
            # A statement may still run in the worker thread (its caller was cancelled):
            # stop it now. interrupt() is the one sqlite3 call safe from another thread;
            # without it the thread runs the statement to its end, which can outlast
            # disconnect() and the event loop.
            raw.interrupt()
        stopped = _stop(self._conn)
        if stopped is not None:
            self._stopping.add(stopped)
            stopped.add_done_callback(self._stopping.discard)


class SQLiteBackend(Backend):
    url_options: ClassVar[dict[str, Parser]] = {
        "busy_timeout": parse_seconds,
        "foreign_keys": parse_bool,
        "journal_mode": _parse_journal_mode,
    }
    isolation_levels: ClassVar[frozenset[str]] = frozenset(
        # SQLite transactions are serializable, which satisfies every weaker level.
        {"read uncommitted", "read committed", "repeatable read", "serializable"}
    )
    supports_deferrable: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        options = parse_options(
            url.options,
            keywords,
            backend_parsers=self.url_options,
            driver_keywords=_SQLITE_KEYWORDS,
            managed=frozenset({"database", "isolation_level", "uri", "timeout"}),
            backend_name="SQLite",
        )
        if options.ssl is not None:
            raise ConfigurationError("option 'ssl' is not supported on SQLite")
        self._options = options
        self._dialect = SQLiteDialect_aiosqlite()
        path = url.database
        self._memory = path in ("", ":memory:")
        if self._memory:
            # One named in-memory database per Database object, shared by its pool.
            self._target = f"file:/dbaccess-memory-{id(self)}-{next(_memory_names)}?vfs=memdb"
        else:
            self._target = path if path.startswith("file:") else f"file:{quote(path)}"
        self._busy_timeout = options.backend.get("busy_timeout") or 5.0
        self._foreign_keys = options.backend.get("foreign_keys", True)
        default_mode = "memory" if self._memory else "wal"
        self._journal_mode = options.backend.get("journal_mode", default_mode)
        # Keeps a memory database alive while the pool's connections come and go.
        self._keeper: SQLiteConnection | None = None
        self._stopping: set[asyncio.Future[Any]] = set()

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    @property
    def is_memory(self) -> bool:
        return self._memory

    async def connect(self) -> SQLiteConnection:
        if self._memory and self._keeper is None:
            self._keeper = await self._open()
        return await self._open()

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await keeper.close()
        if self._stopping:  # worker threads of terminated connections
            await asyncio.wait(set(self._stopping), timeout=5.0)

    async def _open(self) -> SQLiteConnection:
        try:
            conn = await aiosqlite.connect(
                self._target,
                uri=True,
                isolation_level=None,
                timeout=self._busy_timeout,
                **self._options.driver,
            )
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        timeout = self._options.command_timeout
        connection = SQLiteConnection(conn, self._stopping, timeout)
        try:
            await connection.run(f"PRAGMA foreign_keys = {'ON' if self._foreign_keys else 'OFF'}")
            if not self._memory:
                await connection.run(f"PRAGMA journal_mode = {self._journal_mode}")
            if timeout is not None:
                # Checked every 1,000 SQLite VM instructions: microseconds apart.
                await conn.set_progress_handler(connection.interrupt_due, 1000)
        except BaseException:
            await connection.close()
            raise
        return connection
