"""What the aiomysql and asyncmy backends share: MySQL and MariaDB.

Connections run in autocommit mode (dbaccess issues START TRANSACTION itself, in the
same query as the transaction's first statement) with the FOUND_ROWS flag, so
``rowcount`` counts matched rows as on PostgreSQL and SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

from sqlalchemy.engine.interfaces import Dialect

from ..errors import (
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
from ..options import Options, Parser, keyword_parameters, parse_options, ssl_context
from ..url import DatabaseURL
from .base import Backend, BackendConnection, Outcome, Rows, TransactionMode
from .deferred import BeginState, DeferredBegin
from .values import (
    a,
    container_problem,
    driver_refused,
    find_refused,
    non_finite,
    refused,
    text_problem,
)

__all__ = ["MySQLBackendBase", "MySQLConnection", "MySQLDriver"]

#: Read on the path of every statement.
_PENDING = BeginState.PENDING

#: What other sessions see of a session until it is gone: its table and named locks.
_RELEASE_LOCKS = ("UNLOCK TABLES", "DO RELEASE_ALL_LOCKS()")

# Server error numbers whose DB-API class differs between drivers or from
# PostgreSQL's: the same mistake raises the same dbaccess class on every backend.
_ERRNO_CLASSES: dict[int, type[DBAccessError]] = {
    1044: ProgrammingError,  # access denied to database
    1049: ProgrammingError,  # unknown database
    1050: ProgrammingError,  # table already exists
    1051: ProgrammingError,  # unknown table
    1054: ProgrammingError,  # unknown column
    1060: ProgrammingError,  # duplicate column name
    1061: ProgrammingError,  # duplicate key name
    1064: ProgrammingError,  # syntax error
    1091: ProgrammingError,  # can't drop, does not exist
    1146: ProgrammingError,  # table does not exist
    1149: ProgrammingError,  # syntax error
    1305: ProgrammingError,  # function does not exist
    1048: IntegrityError,  # column cannot be null
    1364: IntegrityError,  # NOT NULL column without a value and no default (strict mode)
    1062: IntegrityError,  # duplicate entry
    1451: IntegrityError,  # foreign key: row is referenced
    1452: IntegrityError,  # foreign key: no parent row
    3819: IntegrityError,  # check constraint violated (MySQL)
    4025: IntegrityError,  # check constraint violated (MariaDB)
    1264: DataError,  # out of range
    1265: DataError,  # data truncated
    1292: DataError,  # incorrect datetime value
    1366: DataError,  # incorrect value for column
    1406: DataError,  # data too long
    1205: OperationalError,  # lock wait timeout
    1213: OperationalError,  # deadlock
    1792: OperationalError,  # a write in a READ ONLY transaction
    1969: OperationalError,  # max_statement_time exceeded (MariaDB)
    3024: OperationalError,  # max_execution_time exceeded (MySQL)
}

_CLASS_NAMES: dict[str, type[DBAccessError]] = {
    "IntegrityError": IntegrityError,
    "ProgrammingError": ProgrammingError,
    "DataError": DataError,
    "OperationalError": OperationalError,
    "InternalError": InternalError,
    "NotSupportedError": NotSupportedError,
    "InterfaceError": InterfaceError,
    "DatabaseError": DatabaseError,
}


class MySQLDriver:
    """What differs between aiomysql and asyncmy."""

    name: ClassVar[str]
    error: ClassVar[type[Exception]]
    found_rows_flag: ClassVar[int]
    connect: ClassVar[Callable[..., Any]]
    #: The driver's argument for the database name.
    database_argument: ClassVar[str]
    unbuffered_cursor: ClassVar[type[Any]]

    #: The driver's connection class, and the coroutine method that opens one.
    connection_class: ClassVar[type[Any]]

    @staticmethod
    async def handshake(conn: Any) -> None:
        raise NotImplementedError

    @staticmethod
    async def cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
        raise NotImplementedError

    @staticmethod
    def is_closed(conn: Any) -> bool:
        """Closed, or known to be dead, without a round trip."""
        raise NotImplementedError

    @staticmethod
    def abort(conn: Any) -> None:
        """Close at once, dropping what was not sent yet; a no-op when closed."""
        raise NotImplementedError

    @staticmethod
    def last_answer(conn: Any) -> Any:
        """What the driver keeps of the last answer it read: a new object per answer."""
        return conn._result


# -- values the MySQL drivers cannot take ---------------------------------------------

#: Types both drivers bind as they are: a statement with only these needs no check.
_PLAIN = frozenset(
    {type(None), bool, int, float, str, bytes, datetime.datetime, datetime.date, datetime.time}
)
#: Types the drivers convert faithfully (a UUID as its canonical text).
_CONVERTED = (
    int,
    str,
    bytes,
    bytearray,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
)


def _problem(value: Any) -> str | None:
    """Why the MySQL drivers cannot bind ``value`` as it is, or None."""
    if isinstance(value, str):
        return text_problem(value)
    if non_finite(value):
        kind = a(type(value).__name__)
        return f"{value!r} ({kind}): MySQL and MariaDB cannot store NaN or infinity"
    if isinstance(value, (float, *_CONVERTED)) or value is None:
        return None
    # The drivers store the str() of an object they do not know (asyncmy even that
    # of a dict): refuse it rather than store something else than what was given.
    return container_problem(value) or (
        f"{a(type(value).__name__)} cannot be bound: the drivers would store its str()"
    )


def _check(args: Sequence[Any]) -> None:
    """Refuse, before sending, a value a driver would silently store changed."""
    if _PLAIN.issuperset(map(type, args)):
        return  # one C-level pass: what nearly every statement binds
    for position, value in enumerate(args):
        if type(value) not in _PLAIN:
            problem = _problem(value)
            if problem is not None:
                raise refused(position, problem)


def _check_many(many_args: Sequence[Sequence[Any]]) -> None:
    for args in many_args:
        _check(args)


#: What the drivers raise, before sending, for a value they cannot encode.
_REFUSALS = (TypeError, ValueError, OverflowError)


#: Seconds past command_timeout after which a server that has not answered is taken
#: for hung, and the connection aborted.
SERVER_GRACE = 2.0

#: What a driver call raises when the server or the connection fails.
_FAILURES = (OSError, asyncio.TimeoutError, EOFError)


class _ServerWait:
    """The one way a MySQLConnection waits on its server: bounded, and translated.

    ``with connection._waiting:`` around every await that waits for the server. While
    it is entered, a timer runs; if the server sends no answer within command_timeout +
    SERVER_GRACE, the connection is aborted (the transport's abort(): close() would
    wait to flush what a frozen server never reads), so that the pending read or write
    fails at once. A server that answers in time (one statement of an execute_many
    after another) re-arms the timer: only silence counts. On the way out, whatever the
    driver raised becomes a dbaccess error. One object per connection, reused: entering
    costs a timer and two attribute reads.
    """

    __slots__ = ("_answer", "_args", "_connection", "_timer", "hung")

    def __init__(self, connection: MySQLConnection) -> None:
        self._connection = connection
        self._timer: asyncio.TimerHandle | None = None
        self._answer: Any = None
        #: The arguments being sent (rows of them for execute_many): on a driver's
        #: refusal of a value, where to look for it.
        self._args: Sequence[Sequence[Any]] = ()
        #: Set once the server was given up on: the connection is aborted.
        self.hung = False

    def sending(self, *args: Sequence[Any]) -> _ServerWait:
        """Enter with these arguments (one tuple per statement) on their way out."""
        self._args = args
        return self

    def __enter__(self) -> None:
        connection = self._connection
        within = connection._answer_within
        if within is not None:
            self._answer = connection._driver.last_answer(connection._conn)
            self._timer = asyncio.get_running_loop().call_later(within, self._no_answer)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        sent, self._args = self._args, ()
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, DBAccessError):
            return  # success, cancellation, or already ours
        connection = self._connection
        if not self.hung and (
            isinstance(exc, _REFUSALS) or _without_errno(exc, connection._driver.error)
        ):
            raise _driver_refused(exc, sent) from exc
        if sent and isinstance(exc, connection._driver.error) and exc.args[:1] == (1366,):
            # "Incorrect string value": the drivers send a lone surrogate from
            # U+DC80..U+DCFF as the byte it escapes (surrogateescape), which the server
            # then refuses. Found again, it is named.
            found = _find(sent)
            if found is not None:
                raise refused(*found, exc) from exc
        if self.hung:
            raise translate(
                exc,
                OperationalError,
                f"the server did not answer within command_timeout + {SERVER_GRACE:g} s "
                f"({connection._answer_within:g} s); the connection was aborted",
            ) from exc
        if isinstance(exc, (connection._driver.error, *_FAILURES)):
            raise connection._translate(exc) from exc

    def _no_answer(self) -> None:
        connection = self._connection
        answer = connection._driver.last_answer(connection._conn)
        within = connection._answer_within
        if answer is not self._answer and within is not None:
            # The server answered meanwhile (a statement of a longer call): not hung.
            self._answer = answer
            self._timer = asyncio.get_running_loop().call_later(within, self._no_answer)
            return
        self._timer = None
        self.hung = True
        connection.terminate()  # the pending read or write fails at once


def _without_errno(exc: BaseException, driver_error: type[Exception]) -> bool:
    """A driver error raised before sending (pymysql's "nan can not be used with
    MySQL"): it has no server error number."""
    return isinstance(exc, driver_error) and not (exc.args and isinstance(exc.args[0], int))


def _find(sent: Sequence[Sequence[Any]]) -> tuple[int, str] | None:
    for args in sent:
        found = find_refused(args, _problem)
        if found is not None:
            return found
    return None


def _driver_refused(exc: Exception, sent: Sequence[Sequence[Any]]) -> DBAccessError:
    found = _find(sent)
    if found is not None:
        return refused(*found, exc)
    return driver_refused(exc, (), _problem)


class MySQLConnection(BackendConnection):
    __slots__ = (
        "_answer_within",
        "_begin",
        "_conn",
        "_driver",
        "_translate",
        "_waiting",
        "opened_at",
        "queries",
    )

    def __init__(
        self,
        conn: Any,
        driver: type[MySQLDriver],
        translate: Callable[[Exception], DBAccessError],
        command_timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._driver = driver
        self._translate = translate
        self.queries = 0
        self.opened_at = time.monotonic()
        #: The server enforces command_timeout (max_statement_time), but a server that
        #: hangs (frozen, or cut off by the network) answers nothing: past this many
        #: seconds without an answer dbaccess stops waiting and aborts the connection.
        self._answer_within = None if command_timeout is None else command_timeout + SERVER_GRACE
        self._waiting = _ServerWait(self)
        #: The statements that begin a transaction, not sent yet: they go with the
        #: transaction's first statement, in the same query (one round trip, not two).
        self._begin = DeferredBegin()

    async def _execute(self, cursor: Any, sql: str, args: Sequence[Any]) -> None:
        """Run ``sql`` on ``cursor``, after the pending BEGIN when there is one."""
        begin = self._begin.take()
        if not begin:
            await cursor.execute(sql, args)
            return
        # One multi-statement query (both drivers enable it); the cursor is left on the
        # result of ``sql`` (an error in it is raised by nextset()).
        answer = self._driver.last_answer(self._conn)
        try:
            await cursor.execute("; ".join((*begin, sql)), args)
        except BaseException:
            if self._driver.last_answer(self._conn) is answer and not self.is_closed:
                # Refused before the server answered anything (a value the driver cannot
                # encode): the BEGIN did not run, and still waits for the next statement.
                self._begin.put_back(begin)
            raise
        for _ in begin:
            await cursor.nextset()

    @property
    def raw(self) -> Any:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        # Open since begin(), though its BEGIN may still wait for the first statement.
        return self._begin.state is _PENDING or bool(self._conn.get_transaction_status())

    @property
    def is_closed(self) -> bool:
        return self._driver.is_closed(self._conn)

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        _check(args)
        with self._waiting.sending(args):
            cursor = await self._driver.cursor(self._conn)
            try:
                await self._execute(cursor, sql, args)
                if limit is None:
                    rows = await cursor.fetchall()
                else:
                    rows = await cursor.fetchmany(limit)
                keys = tuple(column[0] for column in cursor.description or ())
            finally:
                await cursor.close()
        return rows, keys

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        _check(args)
        with self._waiting.sending(args):
            return await self._execute_now(sql, args, returns_rows)

    async def _execute_now(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        cursor = await self._driver.cursor(self._conn)
        try:
            await self._execute(cursor, sql, args)
            rows = await cursor.fetchall() if returns_rows else ()
            keys = tuple(column[0] for column in cursor.description or ())
            rowcount, lastrowid = cursor.rowcount, cursor.lastrowid
        finally:
            await cursor.close()
        return Outcome(rowcount, lastrowid or None, rows, keys)

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        _check_many(many_args)
        with self._waiting.sending(*many_args):
            await self._begin_now()  # executemany's multi-row rewrite needs the INSERT alone
            cursor = await self._driver.cursor(self._conn)
            try:
                await cursor.executemany(sql, many_args)
            finally:
                await cursor.close()

    async def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, shared: bool
    ) -> AsyncGenerator[Rows, None]:
        if shared:
            # Other statements may run on this connection between chunks, and MySQL
            # allows none while an unbuffered result is pending: buffer this one.
            rows, keys = await self.fetch(sql, args, None)
            for start in range(0, len(rows), chunk_size):
                yield rows[start : start + chunk_size], keys
            return
        _check(args)
        started = finished = False
        waiting = self._waiting
        try:
            # Each wait on the server is bounded on its own; the time the caller spends
            # between chunks is not the server's.
            with waiting.sending(args):
                await self._begin_now()
                cursor = await self._driver.cursor(self._conn, self._driver.unbuffered_cursor)
                await cursor.execute(sql, args)
                started = True
                keys = tuple(column[0] for column in cursor.description or ())
            while True:
                with waiting:
                    rows = await cursor.fetchmany(chunk_size)
                if not rows:
                    break
                yield rows, keys
            finished = True
            with waiting:
                await cursor.close()
        finally:
            if started and not finished:
                # Unread rows would have to be drained first: closing is faster and the
                # pool replaces the connection.
                self.terminate()

    async def transaction_survived(self) -> bool:
        # The drivers read the server's in-transaction flag from OK packets, and an error
        # packet carries none: after a deadlock (1213), which rolls the whole transaction
        # back, the flag still says "in a transaction". One empty statement refreshes it.
        if self.is_closed:
            return False
        try:
            await self.execute("DO 0", (), False)
        except DBAccessError:
            return False
        return bool(self._conn.get_transaction_status())

    async def begin(self, mode: TransactionMode) -> None:
        begin: tuple[str, ...] = (
            "START TRANSACTION READ ONLY" if mode.readonly else "START TRANSACTION",
        )
        if mode.isolation:
            begin = (f"SET TRANSACTION ISOLATION LEVEL {mode.isolation.upper()}", *begin)
        self._begin.defer(begin)

    async def _begin_now(self) -> None:
        """Send the pending BEGIN (with a statement that does nothing); call it waiting."""
        if self._begin.state is _PENDING:
            await self._execute_now("DO 0", (), False)

    async def commit(self) -> None:
        if self._begin.end() is _PENDING:  # no statement ran: nothing to commit
            return
        await self.run("COMMIT")

    async def rollback(self) -> None:
        if self._begin.end() is _PENDING:
            return
        await self.run("ROLLBACK")

    async def reset_session(self) -> bool:
        # Neither driver offers COM_RESET_CONNECTION, and session state has many forms
        # (variables, user variables, temporary tables, GET_LOCK, LOCK TABLES): a new
        # connection is the reliable reset. But the locks of the old one, which other
        # sessions see, would outlive it until the server notices it closed (the next
        # user's GET_LOCK would fail meanwhile): they are released first.
        for sql in _RELEASE_LOCKS:
            # (No RELEASE_ALL_LOCKS before MySQL 5.7 and MariaDB 10.5.)
            with contextlib.suppress(DBAccessError):
                await self.run(sql)
        return False

    async def run(self, sql: str) -> None:
        with self._waiting:
            await self._execute_now(sql, (), False)

    async def close(self) -> None:
        with self._waiting:
            await self._conn.ensure_closed()

    def terminate(self) -> None:
        self._driver.abort(self._conn)


async def _open(
    driver: type[MySQLDriver],
    kwargs: dict[str, Any],
    translate_error: Callable[[Exception], DBAccessError],
) -> Any:
    """Open a driver connection within connect_timeout, or close it.

    The drivers bound the TCP connect alone: a server that accepts and never answers
    (hung) would hold the handshake forever. A timer closes the connection instead,
    which fails the pending read at once. (Not asyncio.wait_for(): the extra task it
    runs the connect in can finish connecting while being cancelled, and the connection
    would be lost unclosed.) Whatever interrupts the handshake, the connection is
    closed here: aiomysql closes it only on Exception, not on cancellation.
    """
    timeout = kwargs["connect_timeout"]
    conn = driver.connection_class(**kwargs)
    expired = False

    def give_up() -> None:
        nonlocal expired
        expired = True
        driver.abort(conn)

    timer = asyncio.get_running_loop().call_later(timeout, give_up)
    try:
        await driver.handshake(conn)
    except BaseException as exc:
        driver.abort(conn)
        if not isinstance(exc, Exception):
            raise  # cancelled: nothing to translate
        if expired:
            message = f"could not connect within connect_timeout={timeout:g} s"
            raise translate(exc, OperationalError, message) from exc
        if isinstance(exc, (driver.error, OSError, asyncio.TimeoutError)):
            raise translate_error(exc) from exc
        raise
    finally:
        timer.cancel()
    return conn


class MySQLBackendBase(Backend):
    """MySQL and MariaDB, whichever driver."""

    driver: ClassVar[type[MySQLDriver]]
    dialect_class: ClassVar[type[Dialect]]
    url_options: ClassVar[dict[str, Parser]] = {
        "unix_socket": lambda name, value: str(value),
        "charset": lambda name, value: str(value),
    }
    isolation_levels: ClassVar[frozenset[str]] = frozenset(
        {"read uncommitted", "read committed", "repeatable read", "serializable"}
    )
    supports_deferrable: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        driver = self.driver
        self._options = parse_options(
            url.options,
            keywords,
            backend_parsers=self.url_options,
            driver_keywords=keyword_parameters(driver.connect),
            managed=frozenset(
                {
                    "host",
                    "port",
                    "user",
                    "password",
                    "db",
                    "database",
                    "autocommit",
                    "timeout",
                    # Rows must come as tuples (a DictCursor would break every record).
                    "cursorclass",
                }
            ),
            backend_name=f"MySQL ({driver.name})",
        )
        if self._options.ssl is not None:
            ssl_context(self._options.ssl)  # refuse a mode MySQL drivers cannot do, now
        self._url = url
        self._dialect = self.dialect_class()
        self._learned = False

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    def translate_error(self, exc: Exception) -> DBAccessError:
        if isinstance(exc, self.driver.error):
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            ours = _ERRNO_CLASSES.get(errno) if errno is not None else None
            if ours is None:
                for cls in type(exc).__mro__:
                    ours = _CLASS_NAMES.get(cls.__name__)
                    if ours is not None:
                        break
            return translate(exc, ours or DatabaseError)
        if isinstance(exc, (OSError, asyncio.TimeoutError)):
            return translate(exc, OperationalError)
        return translate(exc, DatabaseError)

    async def connect(self) -> MySQLConnection:
        options, url, driver = self._options, self._url, self.driver
        flags = int(options.driver.get("client_flag", 0)) | driver.found_rows_flag
        kwargs: dict[str, Any] = {
            **options.driver,
            "host": url.components.hostname or "localhost",
            "port": url.port or 3306,
            "user": url.username,
            "password": url.password or "",
            driver.database_argument: url.database or None,
            "autocommit": True,
            "client_flag": flags,
            "connect_timeout": options.connect_timeout or 10.0,
            "charset": options.backend.get("charset", "utf8mb4"),
        }
        if "unix_socket" in options.backend:
            kwargs["unix_socket"] = options.backend["unix_socket"]
        if options.ssl is not None:
            kwargs["ssl"] = ssl_context(options.ssl)
        conn = await _open(driver, kwargs, self.translate_error)
        connection = MySQLConnection(conn, driver, self.translate_error, options.command_timeout)
        try:
            if options.command_timeout is not None:
                await connection.run(self._statement_timeout(conn, options.command_timeout))
            if not self._learned:
                await self._learn_sql_mode(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def _learn_sql_mode(self, connection: MySQLConnection) -> None:
        """Tell the dialect whether the server takes a backslash in a literal as escape."""
        # Once, before any query compiles (the pool opens a connection first). With
        # NO_BACKSLASH_ESCAPES (sql_mode= or init_command= options, or the server's
        # default), SQLAlchemy must not double the backslashes of the literals it
        # renders; its initialize() learns it from a synchronous connection dbaccess
        # never has. (ANSI_QUOTES needs nothing: backtick quoting works in it too.)
        rows, _ = await connection.fetch("SELECT @@SESSION.sql_mode", (), None)
        mode = str(rows[0][0] or "") if rows else ""
        self._dialect._backslash_escapes = "NO_BACKSLASH_ESCAPES" not in mode.upper()  # type: ignore[attr-defined]
        self._learned = True

    @staticmethod
    def _statement_timeout(conn: Any, seconds: float) -> str:
        if "mariadb" in str(conn.get_server_info()).lower():
            return f"SET SESSION max_statement_time = {seconds}"
        return f"SET SESSION max_execution_time = {round(seconds * 1000)}"

    async def cancel_statement(self, conn: BackendConnection) -> None:
        # The server would run it to its end after the socket closes (SLEEP() included).
        thread_id = int(conn.raw.thread_id())
        helper = await self.connect()
        try:
            await helper.run(f"KILL QUERY {thread_id}")
        finally:
            helper.terminate()

    async def close(self) -> None:
        return None

    def terminate(self) -> None:
        return None
