"""PostgreSQL through psycopg 3 (``psycopg.AsyncConnection``, in autocommit mode: dbaccess
sends BEGIN itself, as it does on every backend)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import itertools
import math
import secrets
import select
import ssl as ssl_module
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

import psycopg
from psycopg import pq
from psycopg.adapt import AdaptersMap
from psycopg.types.array import ListBinaryDumper, ListDumper
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
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
from ..options import (
    Options,
    Parser,
    keyword_parameters,
    parse_options,
)
from ..url import DatabaseURL
from .base import Backend, BackendConnection, Outcome, Rows, TransactionMode
from .postgresql import (
    ABORTED_COMMIT,
    ISOLATION_LEVELS,
    RESET_SESSION,
    URL_OPTIONS,
    begin_statement,
    host_lists,
    learn_server_settings,
    pooler_hint,
    read_at_once,
    rowcount,
    sqlstate_error,
    without_prepared_statements,
)
from .values import a, container_problem, driver_refused, find_refused, refused, text_problem

__all__ = ["PsycopgBackend"]

# psycopg's DB-API classes for errors without a SQLSTATE (raised in the client: a
# value it cannot adapt, a lost connection), most specific first.
_CLIENT_ERRORS: tuple[tuple[type[Exception], type[DBAccessError]], ...] = (
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.InterfaceError, InterfaceError),
)

_DRIVER_ERRORS = (psycopg.Error, OSError)  # asyncio.TimeoutError is an OSError

_LOST = (
    "the connection to the server was lost (it was closed by the server, or the "
    "network failed); leave the block: the next one gets a new connection"
)

# As plain ints: libpq's statuses come as ints, which compare with ints in a tenth of
# the time they take to compare with the IntEnum members.
_ACTIVE = int(pq.TransactionStatus.ACTIVE)
_INTRANS = int(pq.TransactionStatus.INTRANS)
_INERROR = int(pq.TransactionStatus.INERROR)
_OK = int(pq.ConnStatus.OK)
_READABLE = (
    getattr(select, "POLLIN", 0) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)
)

_cursor_ids = itertools.count(1)

#: psycopg's adapters, but a tuple is an array (psycopg's default makes it a record), as
#: on asyncpg: the compiler binds the list of ``IN :ids`` as one array parameter.
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(tuple, ListDumper)
_ADAPTERS.register_dumper(tuple, ListBinaryDumper)


#: What a bad value makes psycopg raise: its adaptation errors (no SQLSTATE), an
#: encoding error for text that is not Unicode, and the server's refusals of a value
#: psycopg sent in another type (an array for a text column, a numeric for an integer).
_BINDING_ERRORS = (*_DRIVER_ERRORS, UnicodeError, OverflowError)
_REFUSED_BY_THE_SERVER = frozenset({"42804", "22003"})  # datatype mismatch, out of range
_ADAPTED = (
    type(None), bool, int, float, decimal.Decimal, str, bytes, bytearray, memoryview,
    datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
)  # fmt: skip
_INT64 = range(-(2**63), 2**63)


def _problem(value: Any) -> str | None:
    """Why ``value`` cannot go into a column as one value here (asked on errors only)."""
    if isinstance(value, str):
        return text_problem(value)
    problem = container_problem(value)
    if problem is not None:
        return problem
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return f"{value} (an int) is outside PostgreSQL's 64-bit integer range"
    if not isinstance(value, _ADAPTED):
        return f"{a(type(value).__name__)} cannot be bound: psycopg has no adapter for it"
    return None


def _refusal(error: DBAccessError, rows: Sequence[Sequence[Any]]) -> DBAccessError:
    """The error for a value psycopg or the server refused, naming it; ``error`` else."""
    orig = error.orig
    client = isinstance(orig, (UnicodeError, OverflowError)) or (
        isinstance(orig, psycopg.ProgrammingError) and not orig.sqlstate
    )
    server = isinstance(orig, psycopg.Error) and orig.sqlstate in _REFUSED_BY_THE_SERVER
    if orig is None or not (client or server):
        return error
    for args in rows:
        found = find_refused(args, _problem)
        if found is not None:
            return refused(found[0], found[1], orig)
    return driver_refused(orig, (), _problem) if client else error


def _translate(exc: Exception) -> DBAccessError:
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate:
            return translate(exc, sqlstate_error(exc.sqlstate), pooler_hint(str(exc)))
        for theirs, ours in _CLIENT_ERRORS:
            if isinstance(exc, theirs):
                return translate(exc, ours)
        return translate(exc, DatabaseError)
    if isinstance(exc, OSError):
        return translate(exc, OperationalError)
    return translate(exc, DatabaseError)


#: Seconds past command_timeout after which a server that has answered neither the
#: statement nor its cancellation is taken for hung (as on MySQL), and the connection
#: closed: psycopg alone would wait 5 s for the cancel request and 5 s more.
SERVER_GRACE = 2.0


class _Deadline:
    """Cancel the running statement after ``seconds``: psycopg, interrupted, cancels it
    on the server and reads the connection back to idle, then this raises TimeoutError.
    A server that answers nothing within SERVER_GRACE more is interrupted a second
    time, on which psycopg closes the connection. (Like asyncio.timeout(), which only
    Python 3.11 has, with the second step.)"""

    __slots__ = ("_cancels", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancels = 0

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        if self._task is not None:
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        if self._task is None:
            return
        self._cancels += 1
        self._task.cancel()
        if self._cancels == 1:
            self._handle = asyncio.get_running_loop().call_later(SERVER_GRACE, self._expire)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if not self._cancels or self._task is None:
            return
        if sys.version_info >= (3, 11):
            # Take back our cancellations; one left over is the caller's: let it through.
            remaining = 0
            for _ in range(self._cancels):
                remaining = self._task.uncancel()
            if remaining > 0:
                return
        if kind is asyncio.CancelledError:
            raise asyncio.TimeoutError() from exc


class PsycopgConnection(BackendConnection):
    __slots__ = (
        "_conn",
        "_pgconn",
        "_poller",
        "_timeout",
        "_unprepared",
        "opened_at",
        "queries",
    )

    # psycopg's executemany() pipelines every statement before one Sync, which ends the
    # implicit transaction they all ran in; but a value it cannot adapt, met half-way,
    # leaves the rows before it committed: dbaccess wraps it in BEGIN and COMMIT.
    atomic_execute_many = False

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        command_timeout: float | None,
        unprepared: bool = False,
    ) -> None:
        self._conn = conn
        #: prepared_statements=false: no server state kept between transactions.
        self._unprepared = unprepared
        self._pgconn = conn.pgconn
        self._timeout = command_timeout
        self.queries = 0
        self.opened_at = time.monotonic()
        #: Polls the socket for what the server sent while idle (None where the
        #: platform has no poll(): then is_closed reads the socket every time).
        self._poller: Any = None
        if hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(conn.pgconn.socket, _READABLE)

    @property
    def raw(self) -> psycopg.AsyncConnection[Any]:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        status = self._pgconn.transaction_status
        return status in (_INTRANS, _INERROR)

    @property
    def is_closed(self) -> bool:
        pgconn = self._pgconn
        if pgconn.status != _OK:
            return True
        if pgconn.transaction_status == _ACTIVE:
            return False  # a statement is running: its own call reports a failure
        # Idle, the server has nothing to say unless it closed the connection (a FATAL
        # message, then end of file) or sent a notice. One poll() of the socket tells
        # (1.9 µs here, no round trip); then read what arrived, twice, since libpq stops
        # after the data it read and sees the end of file on the next read.
        if self._poller is not None and not self._poller.poll(0):
            return False
        try:
            pgconn.consume_input()
            pgconn.consume_input()
        except psycopg.OperationalError:
            return True
        return pgconn.status != _OK

    def _deadline(self) -> contextlib.AbstractAsyncContextManager[None]:
        if self._timeout is None:
            return contextlib.nullcontext()
        return _Deadline(self._timeout)

    def _failed(self, exc: Exception) -> DBAccessError:
        """The dbaccess error for a driver error on this connection."""
        if isinstance(exc, asyncio.TimeoutError):
            if self._pgconn.transaction_status == _ACTIVE:
                # The statement never ended (psycopg before 3.3.9 leaves the connection
                # so when its cancellation is interrupted): it can run nothing else.
                self.terminate()
            if self.is_closed:
                message = (
                    f"the server did not answer within command_timeout + {SERVER_GRACE:g} s "
                    f"({self._timeout:g} s + {SERVER_GRACE:g} s), nor the cancellation of "
                    "the statement; the connection was closed"
                )
            else:
                message = (
                    f"the statement ran longer than command_timeout ({self._timeout:g} s) "
                    "and was cancelled on the server; the connection stays usable"
                )
            return translate(exc, OperationalError, message)
        if isinstance(exc, psycopg.OperationalError) and not exc.sqlstate and self.is_closed:
            return translate(exc, OperationalError, f"{_LOST}: {exc}")
        return _translate(exc)

    @staticmethod
    async def _execute(cursor: psycopg.AsyncCursor[Any], sql: str, args: Sequence[Any]) -> None:
        if args:
            await cursor.execute(sql, args)
        else:
            # Without arguments psycopg sends the text as it is (the simple protocol,
            # which also runs several statements), so undo the doubling of % that
            # SQLAlchemy's format paramstyle applies.
            await cursor.execute(sql.replace("%%", "%") if "%" in sql else sql)

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        try:
            async with self._deadline():
                cursor = self._conn.cursor()
                await self._execute(cursor, sql, args)
                if limit == 1:
                    row = await cursor.fetchone()
                    rows = [] if row is None else [row]
                elif limit is None:
                    rows = await cursor.fetchall()
                else:
                    rows = await cursor.fetchmany(limit)
        except _BINDING_ERRORS as exc:
            raise _refusal(self._failed(exc), (args,)) from exc
        return rows, _keys(cursor)

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        try:
            async with self._deadline():
                cursor = self._conn.cursor()
                await self._execute(cursor, sql, args)
                if returns_rows:
                    rows = await cursor.fetchall() if cursor.description else []
                    return Outcome(len(rows), None, rows, _keys(cursor))
        except _BINDING_ERRORS as exc:
            raise _refusal(self._failed(exc), (args,)) from exc
        return Outcome(rowcount(cursor.statusmessage or ""), None, (), ())

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        try:
            async with self._deadline():
                # Pipelined by psycopg: every statement sent before any result is read.
                await self._conn.cursor().executemany(sql, many_args)
        except _BINDING_ERRORS as exc:
            raise _refusal(self._failed(exc), many_args) from exc

    async def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, shared: bool
    ) -> AsyncGenerator[Rows, None]:
        # A server-side cursor lives inside a transaction: open one if none is, unless
        # statements of the loop's body run between chunks, each committing on its own:
        # then the cursor must outlive their transactions (WITH HOLD, which PostgreSQL
        # materialises on the server, not in this process).
        hold = shared and not self.in_transaction
        if hold and self._unprepared:
            async for chunk in read_at_once(self, sql, args, chunk_size):
                yield chunk
            return
        own_transaction = not hold and not self.in_transaction
        if own_transaction:
            await self.run("BEGIN")
        finished = False
        name = f"dbaccess_cursor_{next(_cursor_ids)}"
        declared = False
        try:
            cursor = self._conn.cursor()
            try:
                async with self._deadline():
                    await self._execute(
                        cursor,
                        f"DECLARE {name} NO SCROLL CURSOR{' WITH HOLD' if hold else ''} FOR {sql}",
                        args,
                    )
            except _BINDING_ERRORS as exc:
                raise _refusal(self._failed(exc), (args,)) from exc
            declared = True
            fetch = f"FETCH FORWARD {int(chunk_size)} FROM {name}"
            while True:
                try:
                    async with self._deadline():
                        await cursor.execute(fetch)
                        rows = await cursor.fetchall()
                except _DRIVER_ERRORS as exc:
                    raise self._failed(exc) from exc
                if not rows:
                    break
                yield rows, _keys(cursor)
            finished = True
        finally:
            if not self.is_closed:
                if own_transaction:
                    await self.run("COMMIT" if finished else "ROLLBACK")
                elif declared and self._pgconn.transaction_status != _INERROR:
                    await self.run(f"CLOSE {name}")

    async def transaction_survived(self) -> bool:
        # PostgreSQL never ends a transaction on an error: it holds it, aborted, until
        # ROLLBACK (or ROLLBACK TO SAVEPOINT) and refuses every statement meanwhile.
        return self.in_transaction

    async def begin(self, mode: TransactionMode) -> None:
        await self.run(begin_statement(mode))

    async def commit(self) -> None:
        try:
            async with self._deadline():
                cursor = await self._conn.execute("COMMIT")
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        if cursor.statusmessage == "ROLLBACK":
            raise InternalError(ABORTED_COMMIT)

    async def rollback(self) -> None:
        await self.run("ROLLBACK")

    async def reset_session(self) -> bool:
        # The same reset as the asyncpg backend's, which keeps the prepared statements
        # psycopg caches (DISCARD ALL would drop them). One round trip.
        try:
            async with self._deadline():
                await self._conn.execute(RESET_SESSION)
        except _DRIVER_ERRORS:
            return False
        return True

    async def run(self, sql: str) -> None:
        try:
            async with self._deadline():
                await self._conn.execute(sql)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    async def close(self) -> None:
        try:
            await self._conn.close()
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    def terminate(self) -> None:
        # Closes the socket now; a call still waiting on it fails at psycopg's next
        # poll of the connection (every 0.1 s).
        self._pgconn.finish()


def _keys(cursor: psycopg.AsyncCursor[Any]) -> tuple[str, ...]:
    return tuple(column.name for column in cursor.description or ())


#: libpq's connection parameters (sslrootcert, options, keepalives...): each is a
#: keyword option, handed to the driver.
_LIBPQ_KEYWORDS = frozenset(
    option.keyword.decode() for option in pq.Conninfo.get_defaults()
) | keyword_parameters(psycopg.AsyncConnection.connect)


def _sslmode(value: bool | str | ssl_module.SSLContext) -> str:
    if isinstance(value, ssl_module.SSLContext):
        raise ConfigurationError(
            "ssl= cannot be an SSLContext on postgresql+psycopg:// (libpq makes its own): "
            "give an sslmode (require, verify-ca, verify-full...) and the certificates "
            "as the sslrootcert=, sslcert= and sslkey= keyword options"
        )
    if value is True:
        return "require"
    if value is False:
        return "disable"
    return value


def _name_statements_uniquely(conn: psycopg.AsyncConnection[Any]) -> None:
    """Start the numbers of the connection's prepared statements ("_pg3_0", "_pg3_1"...)
    at a random point: psycopg starts each connection at 0, so behind a transaction
    pooler left in the default mode a statement reaches a server connection where another
    client prepared another query under the same name, and that query runs with our
    arguments (wrong rows, silently). With names no other client uses, the mistake fails
    with "prepared statement ... does not exist", which names the option (pooler_hint())."""
    manager = getattr(conn, "_prepared", None)
    if isinstance(getattr(manager, "_prepared_idx", None), int):  # psycopg 3.3's counter
        manager._prepared_idx = secrets.randbits(48)  # type: ignore[union-attr]


class PsycopgBackend(Backend):
    url_options: ClassVar[dict[str, Parser]] = URL_OPTIONS
    isolation_levels: ClassVar[frozenset[str]] = ISOLATION_LEVELS
    supports_deferrable: ClassVar[bool] = True

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        self._options = parse_options(
            url.options,
            keywords,
            backend_parsers=self.url_options,
            driver_keywords=_LIBPQ_KEYWORDS,
            managed=frozenset(
                {
                    "conninfo",
                    "host",
                    "hostaddr",
                    "port",
                    "user",
                    "password",
                    "dbname",
                    "autocommit",
                    "connect_timeout",
                    "sslmode",
                    "row_factory",
                    "cursor_factory",
                    "context",
                }
            ),
            backend_name="PostgreSQL",
        )
        if self._options.ssl is not None:
            _sslmode(self._options.ssl)  # refused now, not at the first connection
        self._unprepared = without_prepared_statements(self._options)
        self._url = url
        # SQLAlchemy's psycopg dialect, with positional %s parameters: the compiler
        # binds by position for every backend.
        self._dialect = PGDialectAsync_psycopg(paramstyle="format")  # type: ignore[no-untyped-call]
        self._learned = False

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    async def connect(self) -> PsycopgConnection:
        options = self._options
        url = self._url
        timeout = options.connect_timeout or 10.0
        host: Any = url.components.hostname or options.backend.get("host")
        port: Any = url.port
        several = host_lists(url)
        if several is not None:
            # libpq's lists: it tries the hosts in turn, each within connect_timeout.
            host, port = ",".join(several[0]), ",".join(map(str, several[1]))
        kwargs: dict[str, Any] = {
            **options.driver,
            "host": host,
            "port": port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database or None,
            "autocommit": True,
            "context": _ADAPTERS,
            # libpq's own limit is in whole seconds, at least 2: ours, below, is exact.
            "connect_timeout": max(2, math.ceil(timeout)),
        }
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        if options.ssl is not None:
            kwargs["sslmode"] = _sslmode(options.ssl)
        if "application_name" in options.backend:
            kwargs["application_name"] = options.backend["application_name"]
        if "target_session_attrs" in options.backend:
            kwargs["target_session_attrs"] = options.backend["target_session_attrs"]
        if options.backend.get("statement_cache_size") == 0 or self._unprepared:
            # Every statement then goes as Parse, Bind, Execute and Sync together (one
            # round trip, unnamed): PgBouncer runs it all on one server connection.
            kwargs["prepare_threshold"] = None
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(**kwargs), timeout * max(1, len(url.hosts))
            )
        except asyncio.TimeoutError as exc:
            raise translate(
                exc, OperationalError, f"could not connect within connect_timeout={timeout:g} s"
            ) from exc
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        cache_size = options.backend.get("statement_cache_size")
        if cache_size:
            conn.prepared_max = cache_size
        _name_statements_uniquely(conn)
        if not self._learned:
            # Once, before any query compiles: libpq has the server's parameters from
            # the handshake, no round trip.
            scs = conn.info.parameter_status("standard_conforming_strings")
            learn_server_settings(self._dialect, scs)
            self._learned = True
        return PsycopgConnection(conn, options.command_timeout, self._unprepared)

    async def cancel_statement(self, conn: BackendConnection) -> None:
        # libpq's cancel request, on a connection of its own to the server: closing
        # ours would not stop a statement that is not writing to the socket.
        await conn.raw.cancel_safe()

    async def close(self) -> None:
        return None

    def terminate(self) -> None:
        return None
