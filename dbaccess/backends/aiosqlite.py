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
import functools
import itertools
import math
import operator
import re
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode

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
from ..options import Options, Parser, parse_bool, parse_int, parse_options, parse_seconds
from ..url import DatabaseURL
from .base import Backend, BackendConnection, Outcome, Rows, TransactionMode
from .deferred import BeginState, DeferredBegin
from .values import a, container_problem, driver_refused, refused, text_problem

__all__ = ["SQLiteBackend"]

#: Read on the path of every statement.
_PENDING, _FAILED = BeginState.PENDING, BeginState.FAILED

_T = TypeVar("_T")

_JOURNAL_MODES = ("delete", "truncate", "persist", "memory", "wal", "off")
_memory_names = itertools.count(1)


#: How a read-write transaction begins: "auto" chooses from its first statement.
_TRANSACTION_MODES = ("auto", "deferred", "immediate", "exclusive")


def _parse_transaction_mode(name: str, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in _TRANSACTION_MODES:
        raise ConfigurationError(
            f"option {name}={value!r} must be one of: {', '.join(_TRANSACTION_MODES)}"
        )
    return mode


def _parse_journal_mode(name: str, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in _JOURNAL_MODES:
        raise ConfigurationError(
            f"option {name}={value!r} must be one of: {', '.join(_JOURNAL_MODES)}"
        )
    return mode


def _choice(*choices: str) -> Parser:
    def parse(name: str, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigurationError(
                f"option {name}={value!r} must be one of: {', '.join(choices)}"
            )
        return text

    return parse


#: sqlite3's name for the busy timeout.
_ALIASES: dict[str, tuple[str, Parser]] = {"timeout": ("busy_timeout", parse_seconds)}


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
    if isinstance(exc, OverflowError):  # an int beyond 64 bits (values are found again)
        return translate(exc, DataError)
    if isinstance(exc, UnicodeError):  # a str that is not valid Unicode (same)
        return translate(exc, DataError)
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


_DRIVER_ERRORS = (sqlite3.Error, ValueError, OverflowError)

# -- values SQLite cannot take ---------------------------------------------------------

#: Types sqlite3 binds as they are, NaN aside: a statement with only these and floats
#: needs no more than a look at its floats.
_PLAIN = frozenset({type(None), int, bool, str, bytes})
_INT_RANGE = range(-(2**63), 2**63)


def _problem(value: Any) -> str | None:
    """Why sqlite3 cannot bind ``value`` as it is, or None."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, float) and value != value:
        return "nan (a float): SQLite cannot store NaN (it would store NULL)"
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        return f"{value} (an int) is outside SQLite's 64-bit integer range"
    problem = container_problem(value)
    if problem is None and not isinstance(value, (int, float, bytes, bytearray, memoryview)):
        problem = f"{a(type(value).__name__)} cannot be bound: sqlite3 has no conversion for it"
    return problem


_PLAIN_OR_FLOAT = _PLAIN | {float}


def _check(args: Sequence[Any]) -> None:
    """Refuse NaN before sending: sqlite3 would store NULL instead, without a word."""
    if _PLAIN.issuperset(map(type, args)):
        return
    for position, value in enumerate(args):
        if type(value) is float and value != value:
            raise refused(position, "nan (a float): SQLite cannot store NaN (it would store NULL)")


def _check_many(many_args: Sequence[Sequence[Any]]) -> None:
    """_check for each set of values: all of them in one pass (in C) where none is NaN,
    the only value of these types that differs from itself."""
    values = list(itertools.chain.from_iterable(many_args))
    if _PLAIN_OR_FLOAT.issuperset(map(type, values)) and not any(map(operator.ne, values, values)):
        return
    for args in many_args:
        _check(args)


def _refusal(exc: DBAccessError, args: Sequence[Any]) -> DBAccessError:
    """The error for a value sqlite3 refused while binding, naming it; ``exc`` else."""
    orig = exc.orig
    binding = isinstance(orig, (OverflowError, UnicodeError)) or (
        isinstance(orig, sqlite3.ProgrammingError) and "binding parameter" in str(orig)
    )
    if not binding or orig is None:
        return exc
    return driver_refused(orig, args, _problem)


# sqlite3.connect() and aiosqlite.connect() keywords passed as they are; the others
# are options below (isolation_level is dbaccess's own).
_SQLITE_KEYWORDS = frozenset({"factory", "iter_chunk_size"})


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


def _nothing(db: sqlite3.Connection, sql: str) -> None:
    """Run nothing: the transaction's BEGIN, chosen for ``sql``, runs before it."""
    return None


_QUERY_ONLY_ON = "PRAGMA query_only = ON"
_BEGIN_DEFERRED = "BEGIN DEFERRED"
#: The BEGIN of a transaction in "auto" mode, chosen when its first statement runs.
_AUTO_BEGIN = ("BEGIN",)

# What SQL text starts with, past blanks, comments and opening parentheses.
_LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*", re.DOTALL)
_WRITES = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_SQLITE_BUSY = 5
_SQLITE_BUSY_SNAPSHOT = 517


@functools.lru_cache(maxsize=256)
def _reads(sql: str) -> bool:
    """Whether a statement only reads: a SELECT, VALUES or EXPLAIN, or a WITH whose text
    names no write. Anything else counts as a write; so does a read whose text mentions
    one (a string literal 'delete', say), which only costs it the IMMEDIATE lock."""
    leading = _LEADING.match(sql)
    head = sql[leading.end() if leading else 0 :][:8].upper()
    if head.startswith(("SELECT", "VALUES", "EXPLAIN")):
        return True
    return head.startswith("WITH") and _WRITES.search(sql) is None


def _begin_sql(mode: str, first_sql: str) -> str:
    if mode == "auto":
        # A transaction that starts by reading takes no lock until it writes, so it
        # neither waits for nor blocks a writer; one that starts by writing takes the
        # write lock at once, waiting for it up to busy_timeout. See README,
        # "Transactions on SQLite", for a read-then-write transaction under contention.
        return _BEGIN_DEFERRED if _reads(first_sql) else "BEGIN IMMEDIATE"
    return f"BEGIN {mode.upper()}"


def _is_busy(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_BUSY_SNAPSHOT)
    return isinstance(exc, sqlite3.OperationalError) and str(exc) == "database is locked"


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
# the one method all its public ones share (every admitted version has it, with the
# sqlite3 connection as its _conn property). A whole statement runs in one call: one
# thread hop instead of three (execute, fetch, close the cursor).
if not callable(getattr(aiosqlite.Connection, "_execute", None)) or not isinstance(
    getattr(aiosqlite.Connection, "_conn", None), property
):
    raise ImportError(
        "this aiosqlite has no Connection._execute() or Connection._conn, which dbaccess "
        "runs its statements through; install an aiosqlite that pyproject.toml admits"
    )


async def _thread_ended(conn: aiosqlite.Connection) -> None:
    """Wait (a second at most) for the thread of a connection that failed to open.

    aiosqlite stops it then, and the thread reports that to the event loop: a loop
    closed before (an application's, a test's) would meet "Event loop is closed" in
    that thread. Older aiosqlite connections are the thread themselves."""
    thread = getattr(conn, "_thread", conn)
    if isinstance(thread, threading.Thread) and thread.is_alive():
        await asyncio.to_thread(thread.join, 1.0)


def _stop(conn: aiosqlite.Connection) -> asyncio.Future[Any] | None:
    """Close ``conn`` and end its thread without waiting; return what ends with it."""
    stop = getattr(conn, "stop", None)
    if stop is not None:  # aiosqlite >= 0.22.1
        stopped: asyncio.Future[Any] | None = stop()
        return stopped
    # Older aiosqlite has no stop(). The close is queued straight onto the worker's
    # queue, so that it runs whether or not the event loop lives on to schedule anything
    # (a close() in a task would never run once the loop had closed, and the thread, not
    # a daemon, would keep the process alive); then the thread is told to end: 0.21 and
    # 0.22.0 by _stop_running(), which queues its end, 0.19 and 0.20 by _running, which
    # they read whenever their queue is empty (every 0.1 s).
    try:
        closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    except RuntimeError:  # no event loop any more: end the thread as far as it can be
        conn._running = False
        return None
    raw = conn._connection
    if raw is not None:
        conn._tx.put_nowait((closed, raw.close))
    else:
        closed.set_result(None)
    stop_running = getattr(conn, "_stop_running", None)
    if stop_running is not None:
        stop_running()
    conn._running = False
    return closed


class SQLiteConnection(BackendConnection):
    __slots__ = (
        "_begin",
        "_closed",
        "_conn",
        "_deadline",
        "_query_only",
        "_reader",
        "_stopping",
        "_timeout",
        "_transaction_mode",
        "opened_at",
        "queries",
    )

    def __init__(
        self,
        conn: aiosqlite.Connection,
        stopping: set[asyncio.Future[Any]],
        timeout: float | None = None,
        transaction_mode: str = "auto",
    ) -> None:
        self._conn = conn
        self.queries = 0
        self.opened_at = time.monotonic()
        #: How read-write transactions begin, unless a transaction says otherwise.
        self._transaction_mode = transaction_mode
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
        #: FAILED when it did not take (SQLITE_BUSY after the busy timeout, say).
        self._begin = DeferredBegin()
        #: The open transaction began DEFERRED: its first write must upgrade its lock,
        #: which fails at once while another connection writes (see _as_reader).
        self._reader = False

    @property
    def raw(self) -> aiosqlite.Connection:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        # Open since begin(), though its BEGIN may still wait for the first statement.
        return self._begin.state is _PENDING or bool(self._conn.in_transaction)

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

    async def _in_thread(self, function: Callable[..., _T], sql: str, *args: Any) -> _T:
        """Run ``function(sqlite3_connection, sql, *args)`` in the connection's thread."""
        begin = self._begin.take()
        if begin:
            if begin is _AUTO_BEGIN:
                begin = (_begin_sql("auto", sql),)
            if _QUERY_ONLY_ON in begin:
                self._query_only = True  # reset by _end, whether or not it ran
            try:
                result: _T = await self._call(_begun, begin, function, sql, *args)
            except DBAccessError:
                if not self._conn.in_transaction:
                    self._begin.failed()
                raise
            self._reader = begin[0] == _BEGIN_DEFERRED and _reads(sql)
            return result
        if self._reader and function is not _run:
            return await self._as_reader(function, sql, *args)
        return await self._call(function, sql, *args)

    async def _as_reader(self, function: Callable[..., _T], sql: str, *args: Any) -> _T:
        """Run a statement of a transaction that began DEFERRED and has only read."""
        try:
            result = await self._call(function, sql, *args)
        except OperationalError as exc:
            # Its first write must turn its read lock into the write lock. While another
            # connection writes, SQLite refuses at once, without the busy handler (waiting
            # could deadlock); in WAL mode it also refuses once another connection has
            # committed since this transaction's first read (SQLITE_BUSY_SNAPSHOT).
            orig = exc.orig
            if (
                isinstance(orig, sqlite3.OperationalError)
                and _is_busy(orig)
                and not _reads(sql)
                and self._conn.in_transaction
            ):
                raise translate(
                    orig,
                    OperationalError,
                    f"{orig}: this transaction began by reading (BEGIN DEFERRED), and SQLite "
                    "cannot make it a writer while another connection writes or has written "
                    "since (busy_timeout does not apply); roll it back and retry it, or "
                    "begin it with its write or with transaction_mode='immediate'",
                ) from orig
            raise
        if not _reads(sql):
            self._reader = False  # it holds the write lock now
        return result

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        self._arm()
        try:
            # The whole statement in one hop to the connection's thread.
            result: _T = await self._conn._execute(  # type: ignore[no-untyped-call]
                _unless_terminated, self, function, self._conn._conn, *args
            )
            return result
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        _check(args)
        try:
            return await self._in_thread(_fetch, sql, args, limit)
        except DBAccessError as exc:
            raise _refusal(exc, args) from exc.orig

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        _check(args)
        try:
            rows, keys, rowcount, lastrowid = await self._in_thread(
                _execute, sql, args, returns_rows
            )
        except DBAccessError as exc:
            raise _refusal(exc, args) from exc.orig
        if returns_rows and rowcount < 0:
            rowcount = len(rows)
        return Outcome(rowcount, lastrowid, rows, keys)

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        _check_many(many_args)
        try:
            await self._in_thread(_execute_many, sql, many_args)
        except DBAccessError as exc:
            for args in many_args:
                error = _refusal(exc, args)
                if error.argument_index is not None:
                    raise error from exc.orig
            raise _refusal(exc, ()) from exc.orig

    async def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, shared: bool
    ) -> AsyncGenerator[Rows, None]:
        if self._begin.state is _PENDING:  # the cursor is opened outside _in_thread: begin first
            await self._in_thread(_nothing, sql)
        _check(args)
        self._arm()
        try:
            cursor = await self._conn.execute(sql, args)
        except _DRIVER_ERRORS as exc:
            raise _refusal(self._error(exc), args) from exc
        keys = tuple(column[0] for column in cursor.description or ())
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

    async def transaction_survived(self) -> bool:
        # SQLite rolls the whole transaction back on some errors (SQLITE_INTERRUPT from
        # command_timeout, SQLITE_FULL, SQLITE_NOMEM...); its autocommit flag tells.
        return not self._closed and bool(self._conn.in_transaction)

    async def begin(self, mode: TransactionMode) -> None:
        # The BEGIN runs with the first statement, and in "auto" mode is chosen for it
        # (_begin_sql). A read-only transaction never writes: DEFERRED, unless it says.
        self._reader = False
        chosen = mode.transaction_mode or ("deferred" if mode.readonly else self._transaction_mode)
        if mode.readonly:
            self._begin.defer((_begin_sql(chosen, "SELECT"), _QUERY_ONLY_ON))
        elif chosen == "auto":
            self._begin.defer(_AUTO_BEGIN)
        else:
            self._begin.defer((_begin_sql(chosen, ""),))

    async def commit(self) -> None:
        await self._end("COMMIT")

    async def rollback(self) -> None:
        await self._end("ROLLBACK")

    async def _end(self, sql: str) -> None:
        self._reader = False
        began = self._begin.end()
        if began is _PENDING or began is _FAILED:
            # No statement ran (nothing to end), or the BEGIN itself failed.
            if began is _FAILED and sql == "COMMIT":
                raise OperationalError(
                    "cannot commit: the transaction never began (its BEGIN failed with "
                    "the first statement's error)"
                )
            return
        try:
            if sql == "COMMIT" or self._conn.in_transaction:
                # (A ROLLBACK of a transaction SQLite already rolled back would fail
                # with "no transaction is active".)
                await self.run(sql)
        finally:
            if self._query_only and not self._conn.in_transaction:
                await self.run("PRAGMA query_only = OFF")
                self._query_only = False

    async def reset_session(self) -> bool:
        # Pragmas, temporary tables and attached databases belong to the connection: a
        # new one (cheap: no server) starts clean. A memory database lives on in the
        # backend's keeper connection.
        return False

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
    url_aliases: ClassVar[dict[str, tuple[str, Parser]]] = _ALIASES
    url_options: ClassVar[dict[str, Parser]] = {
        "busy_timeout": parse_seconds,
        "foreign_keys": parse_bool,
        "journal_mode": _parse_journal_mode,
        "transaction_mode": _parse_transaction_mode,
        # sqlite3.connect()'s arguments, in the URL too.
        "check_same_thread": parse_bool,
        "cached_statements": lambda name, value: parse_int(name, value, minimum=0),
        "detect_types": lambda name, value: parse_int(name, value, minimum=0),
        "uri": parse_bool,
        # SQLite's URI parameters.
        "mode": _choice("ro", "rw", "rwc", "memory"),
        "cache": _choice("shared", "private"),
    }
    isolation_levels: ClassVar[frozenset[str]] = frozenset(
        # SQLite transactions are serializable, which satisfies every weaker level.
        {"read uncommitted", "read committed", "repeatable read", "serializable"}
    )
    supports_deferrable: ClassVar[bool] = False
    transaction_modes: ClassVar[frozenset[str]] = frozenset(_TRANSACTION_MODES)

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        options = parse_options(
            url.options,
            keywords,
            backend_parsers=self.url_options,
            driver_keywords=_SQLITE_KEYWORDS,
            managed=frozenset({"database", "isolation_level"}),
            backend_name="SQLite",
            backend_aliases=self.url_aliases,
        )
        if options.ssl is not None:
            raise ConfigurationError("option 'ssl' is not supported on SQLite")
        self._options = options
        self._dialect = SQLiteDialect_aiosqlite()
        backend = options.backend
        path = url.database
        # sqlite3 reads a name as a URI only with uri=True; dbaccess reads one that
        # starts with "file:" as a URI unless told uri=false.
        is_uri = backend.get("uri", path.startswith("file:")) and path.startswith("file:")
        name = path[len("file:") :] if is_uri else path
        mode, cache = backend.get("mode"), backend.get("cache")
        memory = name in ("", ":memory:") or mode == "memory"
        self._memory = memory
        if memory and (mode == "memory" or cache == "shared"):
            # A named in-memory database, shared by every connection of the process that
            # opens it by that name (what mode=memory&cache=shared means to sqlite3).
            # SQLite's memdb VFS shares it without the shared cache, whose table locks
            # fail a waiting transaction at once instead of after the busy timeout.
            self._target = f"file:/{quote(name or ':memory:')}?vfs=memdb"
        elif memory:
            # One named in-memory database per Database object, shared by its pool.
            self._target = f"file:/dbaccess-memory-{id(self)}-{next(_memory_names)}?vfs=memdb"
        else:
            target = path if is_uri else f"file:{quote(path)}"
            parameters = {key: value for key, value in (("mode", mode), ("cache", cache)) if value}
            if parameters:
                target += ("&" if "?" in target else "?") + urlencode(parameters)
            self._target = target
        # Opened read-only, a database keeps the journal mode it has, unless told.
        self._read_only = mode == "ro"
        self._connect_args = {
            key: backend[key]
            for key in ("check_same_thread", "cached_statements", "detect_types")
            if key in backend
        }
        self._busy_timeout = options.backend.get("busy_timeout") or 5.0
        self._foreign_keys = options.backend.get("foreign_keys", True)
        default_mode = "memory" if self._memory else "wal"
        self._journal_mode = options.backend.get("journal_mode", default_mode)
        self._journal_set = "journal_mode" in options.backend
        self._transaction_mode: str = options.backend.get("transaction_mode", "auto")
        # Keeps a memory database alive while the pool's connections come and go.
        self._keeper: SQLiteConnection | None = None
        self._stopping: set[asyncio.Future[Any]] = set()

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    async def connect(self) -> SQLiteConnection:
        if self._memory and self._keeper is None:
            keeper = await self._open()
            if self._keeper is None:
                self._keeper = keeper
            else:  # another event loop's pool, in another thread, opened one meanwhile
                await keeper.close()
        return await self._open()

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await keeper.close()
        # The worker threads of terminated connections; those stopped from another event
        # loop end by themselves.
        loop = asyncio.get_running_loop()
        stopping = {each for each in self._stopping if each.get_loop() is loop}
        if stopping:
            await asyncio.wait(stopping, timeout=5.0)

    async def cancel_statement(self, conn: BackendConnection) -> None:
        return None  # closing the connection interrupts its statement

    def terminate(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.terminate()

    async def _open(self) -> SQLiteConnection:
        conn = aiosqlite.connect(
            self._target,
            uri=True,
            isolation_level=None,
            timeout=self._busy_timeout,
            **self._connect_args,
            **self._options.driver,
        )
        try:
            await conn
        except _DRIVER_ERRORS as exc:
            await _thread_ended(conn)
            raise _translate(exc) from exc
        except BaseException:
            # Cancelled while connecting: aiosqlite < 0.22 leaves the thread running
            # then, forever (not a daemon: the process could not exit). End it.
            _stop(conn)
            raise
        timeout = self._options.command_timeout
        connection = SQLiteConnection(conn, self._stopping, timeout, self._transaction_mode)
        try:
            await connection.run(f"PRAGMA foreign_keys = {'ON' if self._foreign_keys else 'OFF'}")
            if not self._memory and (not self._read_only or self._journal_set):
                await connection.run(f"PRAGMA journal_mode = {self._journal_mode}")
            if timeout is not None:
                # Checked every 1,000 SQLite VM instructions: microseconds apart.
                await conn.set_progress_handler(connection.interrupt_due, 1000)
        except BaseException:
            await connection.close()
            raise
        return connection
