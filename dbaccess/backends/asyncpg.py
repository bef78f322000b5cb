"""PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, ClassVar

import asyncpg
from asyncpg import connect_utils
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine.interfaces import Dialect

from ..errors import (
    ConfigurationError,
    DatabaseError,
    DataError,
    DBAccessError,
    InterfaceError,
    InternalError,
    OperationalError,
    translate,
)
from ..options import (
    COMMON_PARSERS,
    Options,
    Parser,
    keyword_parameters,
    parse_int,
    parse_options,
)
from ..url import DatabaseURL
from .asyncpg_cancel import let_cancel_requests_finish
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
    session_fits,
    sqlstate_error,
    without_prepared_statements,
)

__all__ = ["PostgresBackend"]


_ARGUMENT = re.compile(r"^invalid input for query argument \$(\d+)")


def _with_position(error: DBAccessError) -> DBAccessError:
    """Note which argument asyncpg's encoder refused ("invalid input for query argument
    $2: ..."), for the connection to name its parameter."""
    if isinstance(error, DataError):
        argument = _ARGUMENT.match(str(error))
        if argument is not None:
            error.argument_index = int(argument[1]) - 1
    return error


def _translate(exc: Exception) -> DBAccessError:
    if isinstance(exc, asyncpg.PostgresError):
        ours = sqlstate_error(getattr(exc, "sqlstate", None))
        # The server's message alone: asyncpg adds to it its own hint about PgBouncer,
        # which pooler_hint() replaces with dbaccess's option.
        message = pooler_hint(str(getattr(exc, "message", exc)))
        error = translate(exc, ours, message)
        if message is not None:
            error.__dict__["hint"] = None  # shown by asyncpg's __str__; kept on error.orig
        return _with_position(error)
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's client-side DataError is an InterfaceError and a ValueError.
        if isinstance(exc, ValueError):
            return _with_position(translate(exc, DataError))
        return translate(exc, InterfaceError)
    if isinstance(exc, asyncio.TimeoutError):
        return translate(exc, OperationalError, _TIMEOUT)
    if isinstance(exc, (OSError, _NO_HOST_FITS)):
        # No host with the target_session_attrs asked for (the primary is down, say):
        # a state of the servers that may pass, as a refused connection is.
        return translate(exc, OperationalError)
    return translate(exc, DatabaseError)


_NO_HOST_FITS = getattr(asyncpg, "TargetServerAttributeNotMatched", OSError)

#: asyncpg 0.28 added target_session_attrs; for 0.27 dbaccess picks the host itself.
_NATIVE_TARGET = "target_session_attrs" in keyword_parameters(asyncpg.connect)


_TIMEOUT = (
    "the statement ran longer than command_timeout and was cancelled on the server; "
    "the connection stays usable"
)


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)

_LOST = (
    "the connection to the server was lost (it was closed by the server between two "
    "statements); leave the block: the next one gets a new connection"
)


_cursor_ids = itertools.count(1)


#: asyncpg 0.32 opens a cursor in any transaction; before, only in one begun through
#: its own API (Connection.transaction()), which dbaccess's raw BEGIN is not.
_CURSOR_IN_ANY_TRANSACTION = tuple(
    int(part) for part in re.findall(r"\d+", asyncpg.__version__)[:2]
) >= (0, 32)


_statement_ids = itertools.count(1)


def _new_process_token() -> str:
    return secrets.token_hex(4)


#: Names this process's statements apart from every other's (a forked child draws its own).
_process_token = _new_process_token()


def _redraw_process_token() -> None:
    global _process_token
    _process_token = _new_process_token()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_redraw_process_token)


class _UniquelyNamingConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, naming its prepared statements uniquely across processes.

    asyncpg numbers them from 1 in each process ("__asyncpg_stmt_1__"). Behind a
    transaction pooler left in the default mode, a statement then reaches a server
    connection where another process prepared another query under the same name, and
    that query runs with our arguments: wrong rows, silently (measured through PgBouncer:
    11-16% of the answers). With names no other process uses, the same mistake fails with
    "prepared statement ... does not exist", which names the option (pooler_hint()).
    """

    __slots__ = ()

    def _get_unique_id(self, prefix: str) -> str:  # asyncpg 0.27-0.32's naming hook
        return f"__asyncpg_{prefix}_{_process_token}_{next(_statement_ids):x}__"


class PostgresConnection(BackendConnection):
    __slots__ = ("_conn", "_unprepared", "opened_at", "queries")

    atomic_execute_many = True  # asyncpg >= 0.22

    def __init__(self, conn: asyncpg.Connection, unprepared: bool = False) -> None:
        self._conn = conn
        #: prepared_statements=false: no named statement, no server state kept between
        #: transactions (a transaction pooler gives each one any server connection).
        self._unprepared = unprepared
        self.queries = 0
        self.opened_at = time.monotonic()

    @property
    def raw(self) -> asyncpg.Connection:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    @property
    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())

    def _failed(self, exc: Exception) -> DBAccessError:
        """The dbaccess error for a driver error on this connection."""
        if isinstance(exc, asyncpg.InternalClientError):
            # asyncpg's protocol state is lost. Seen when the server's FATAL message
            # (pg_terminate_backend, shutdown) arrives while the connection is idle and
            # a statement is sent before the socket's close is read: the connection can
            # never be used again, so close it now and the pool will drop it.
            self.terminate()
            return translate(exc, OperationalError, _LOST)
        return _translate(exc)

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        try:
            if limit == 1:
                row = await self._conn.fetchrow(sql, *args)
                rows = [] if row is None else [row]
            else:
                rows = await self._conn.fetch(sql, *args)
                if limit is not None:
                    rows = rows[:limit]
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        return rows, (tuple(rows[0].keys()) if rows else ())

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        try:
            if returns_rows:
                rows = await self._conn.fetch(sql, *args)
                keys = tuple(rows[0].keys()) if rows else ()
                return Outcome(len(rows), None, rows, keys)
            status = await self._conn.execute(sql, *args)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        return Outcome(rowcount(status), None, (), ())

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, many_args)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, shared: bool
    ) -> AsyncGenerator[Rows, None]:
        if shared and not self.in_transaction:
            # Statements of the loop's body run between chunks, each committing on its
            # own: the cursor must outlive their transactions (WITH HOLD).
            if self._unprepared:
                return read_at_once(self, sql, args, chunk_size)
            return self._stream_held(sql, args, chunk_size)
        if self._unprepared:
            # asyncpg's cursor prepares a named statement and closes it later, in
            # whatever transaction (so on whatever server connection) comes next.
            if self.in_transaction:
                return self._stream_declared(sql, args, chunk_size)
            return self._stream_in_begun_transaction(sql, args, chunk_size)
        if self.in_transaction:
            if _CURSOR_IN_ANY_TRANSACTION:
                return self._cursor_chunks(sql, args, chunk_size)
            return self._stream_declared(sql, args, chunk_size)
        # A server-side cursor lives inside a transaction: open one for it.
        if _CURSOR_IN_ANY_TRANSACTION:
            return self._stream_in_begun_transaction(sql, args, chunk_size)
        return self._stream_in_own_transaction(sql, args, chunk_size)

    async def _stream_in_begun_transaction(
        self, sql: str, args: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Rows, None]:
        await self.run("BEGIN")
        finished = False
        if self._unprepared:
            chunks = self._stream_declared(sql, args, chunk_size)
        else:
            chunks = self._cursor_chunks(sql, args, chunk_size)
        try:
            async for chunk in chunks:
                yield chunk
            finished = True
        finally:
            try:
                # Now, inside the transaction: a loop left early would otherwise leave
                # the event loop to close the cursor later, after the ROLLBACK.
                await chunks.aclose()
            finally:
                if not self.is_closed:
                    await self.run("COMMIT" if finished else "ROLLBACK")

    async def _stream_held(
        self, sql: str, args: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Rows, None]:
        """Stream through a WITH HOLD cursor, which PostgreSQL keeps (materialised on
        the server, not in this process) after its transaction ends."""
        name = f"dbaccess_cursor_{next(_cursor_ids)}"
        try:
            await self._conn.execute(f"DECLARE {name} NO SCROLL CURSOR WITH HOLD FOR {sql}", *args)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        try:
            while True:
                try:
                    rows = await self._conn.fetch(f"FETCH FORWARD {int(chunk_size)} FROM {name}")
                except _DRIVER_ERRORS as exc:
                    raise self._failed(exc) from exc
                if not rows:
                    break
                yield rows, tuple(rows[0].keys())
        finally:
            if not self.is_closed:
                await self.run(f"CLOSE {name}")

    async def transaction_survived(self) -> bool:
        # PostgreSQL never ends a transaction on an error: it holds it, aborted, until
        # ROLLBACK (or ROLLBACK TO SAVEPOINT) and refuses every statement meanwhile.
        return self.in_transaction

    async def _cursor_chunks(
        self, sql: str, args: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Rows, None]:
        """asyncpg's cursor, in the transaction that is open."""
        try:
            cursor = await self._conn.cursor(sql, *args)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        while True:
            try:
                rows = await cursor.fetch(chunk_size)
            except _DRIVER_ERRORS as exc:
                raise self._failed(exc) from exc
            if not rows:
                return
            yield rows, tuple(rows[0].keys())

    async def _stream_in_own_transaction(
        self, sql: str, args: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Rows, None]:
        """asyncpg < 0.32: its cursor inside a transaction begun by asyncpg's own API."""
        transaction = self._conn.transaction()
        try:
            await (
                transaction.start()
            )  # BEGIN, as in _stream_in_begun_transaction(): no extra round trip
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        finished = False
        try:
            async for chunk in self._cursor_chunks(sql, args, chunk_size):
                yield chunk
            finished = True
        finally:
            if not self.is_closed:
                try:
                    await (transaction.commit() if finished else transaction.rollback())
                except _DRIVER_ERRORS as exc:
                    raise self._failed(exc) from exc

    async def _stream_declared(
        self, sql: str, args: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Rows, None]:
        """asyncpg < 0.32 in a transaction dbaccess began: a cursor declared in SQL.

        asyncpg refuses its own cursor there (it knows only the transactions it began).
        DECLARE takes the query's parameters; the FETCH statement is prepared apart from
        asyncpg's statement cache, because the same text reads other columns each time.
        """
        # A name never used before: a cursor abandoned by a loop left early may still be
        # open (its clean-up runs later) when the next one is declared.
        name = f"dbaccess_cursor_{next(_cursor_ids)}"
        fetch_sql = f"FETCH FORWARD {int(chunk_size)} FROM {name}"
        try:
            await self._conn.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", *args)
            # Without a statement cache (prepared_statements=false), fetch() prepares
            # an unnamed statement each time: nothing is left on the server.
            fetch = None if self._unprepared else await self._conn.prepare(fetch_sql)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        declared = True
        try:
            while True:
                try:
                    if fetch is None:
                        rows = await self._conn.fetch(fetch_sql)
                    else:
                        rows = await fetch.fetch()
                except _DRIVER_ERRORS as exc:
                    declared = False  # the transaction is aborted: no cursor left
                    raise self._failed(exc) from exc
                if not rows:
                    return
                yield rows, tuple(rows[0].keys())
        finally:
            if declared and not self.is_closed:
                await self._close_cursor(name)

    async def _close_cursor(self, name: str) -> None:
        try:
            await self._conn.execute(f"CLOSE {name}")
        except asyncpg.InFailedSQLTransactionError:
            pass  # a statement of the loop body failed: the cursor ends with the transaction
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    async def begin(self, mode: TransactionMode) -> None:
        await self.run(begin_statement(mode))

    async def commit(self) -> None:
        try:
            status = await self._conn.execute("COMMIT")
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        if status == "ROLLBACK":
            # PostgreSQL aborts a transaction at its first error and answers COMMIT by
            # rolling back; say so instead of letting the caller believe it committed.
            raise InternalError(ABORTED_COMMIT)

    async def rollback(self) -> None:
        await self.run("ROLLBACK")

    async def reset_session(self) -> bool:
        # What asyncpg's own pool runs on every release, and the temporary tables; here
        # only after a statement that changed the session (one round trip).
        try:
            await self._conn.execute(RESET_SESSION)
        except _DRIVER_ERRORS:
            return False
        return True

    async def run(self, sql: str) -> None:
        try:
            await self._conn.execute(sql)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    async def close(self) -> None:
        try:
            await self._conn.close()
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    def terminate(self) -> None:
        # Not asyncpg's cancel requests in flight: cut off, they crash PgBouncer 1.18.
        let_cancel_requests_finish(self._conn)
        self._conn.terminate()


def _json_decoder(data: bytes) -> Any:
    return json.loads(data)


def _jsonb_decoder(data: bytes) -> Any:
    return json.loads(data[1:])  # binary jsonb starts with a version byte


def _jsonb_encoder(text: str) -> bytes:
    return b"\x01" + text.encode()


#: libpq's and asyncpg's names for common options.
_ALIASES: dict[str, tuple[str, Parser]] = {
    # libpq's sslmode takes the same modes as dbaccess's ssl.
    "sslmode": ("ssl", COMMON_PARSERS["ssl"]),
    # asyncpg.connect()'s timeout: seconds to open a connection.
    "timeout": ("connect_timeout", COMMON_PARSERS["connect_timeout"]),
}


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"option {name} must be a str, not {type(value).__name__}")
    return value


def _password(name: str, value: Any) -> Any:
    # asyncpg also takes a function returning the password (rotating credentials).
    if isinstance(value, str) or callable(value):
        return value
    raise ConfigurationError(
        f"option {name} must be a str or a function returning one, not {type(value).__name__}"
    )


def _host(name: str, value: Any) -> Any:
    # asyncpg takes several hosts to try in turn, as a list.
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    return _text(name, value)


#: Keywords that replace a part of the URL.
_PARTS: dict[str, Parser] = {
    "host": _host,
    "port": lambda name, value: parse_int(name, value, minimum=1),
    "user": _text,
    "password": _password,
    "database": _text,
}


async def _connect_to_target(kwargs: dict[str, Any], attrs: str) -> Any:
    """asyncpg.connect() to the first host meeting ``attrs``, as asyncpg 0.28+ does it
    with target_session_attrs (asyncpg 0.27 tries hosts only until one accepts)."""
    hosts = kwargs["host"] if isinstance(kwargs["host"], list) else [kwargs["host"]]
    ports = kwargs["port"] if isinstance(kwargs["port"], list) else [kwargs["port"]] * len(hosts)
    timeout = kwargs["timeout"] / len(hosts)
    candidates: list[Any] = []
    chosen = None
    last_error: Exception | None = None
    try:
        for host, port in zip(hosts, ports):
            try:
                conn = await asyncpg.connect(
                    **{**kwargs, "host": host, "port": port, "timeout": timeout}
                )
            except (OSError, asyncio.TimeoutError) as exc:
                last_error = exc
                continue
            candidates.append(conn)
            in_recovery, read_only = await conn.fetchrow(
                "SELECT pg_catalog.pg_is_in_recovery(), "
                "current_setting('default_transaction_read_only') = 'on'"
            )
            if session_fits(attrs, in_recovery, read_only):
                chosen = conn
                break
        else:
            if attrs == "prefer-standby" and candidates:
                chosen = candidates[0]
    finally:
        for candidate in candidates:
            if candidate is not chosen:
                candidate.terminate()
    if chosen is not None:
        return chosen
    if last_error is not None:
        raise last_error
    raise OperationalError(f"none of the hosts has target_session_attrs={attrs!r}")


class PostgresBackend(Backend):
    url_options: ClassVar[dict[str, Parser]] = URL_OPTIONS
    url_aliases: ClassVar[dict[str, tuple[str, Parser]]] = _ALIASES
    isolation_levels: ClassVar[frozenset[str]] = ISOLATION_LEVELS
    supports_deferrable: ClassVar[bool] = True

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        if "reset" in keywords:
            # asyncpg's pool (0.30+) runs it as each connection comes back; dbaccess's
            # gives connections back synchronously, so that nothing can interrupt it.
            raise ConfigurationError(
                "keyword option 'reset' (asyncpg's pool hook run on release) is not "
                "supported: connections go back to dbaccess's pool without a round trip; "
                "do that work in setup=, which runs each time a connection is lent"
            )
        # encode/databases let these keywords override the URL's parts (it updated the
        # URL's arguments to asyncpg with the keywords): a password kept out of the URL.
        self._parts = {
            name: _PARTS[name](name, value)
            for name, value in keywords.items()
            if name in _PARTS and value is not None
        }
        self._options = parse_options(
            url.options,
            {name: value for name, value in keywords.items() if name not in _PARTS},
            backend_parsers=self.url_options,
            driver_keywords=keyword_parameters(asyncpg.connect),
            managed=frozenset({"dsn", "host", "port", "user", "password", "database"}),
            backend_name="PostgreSQL",
            backend_aliases=self.url_aliases,
        )
        self._unprepared = without_prepared_statements(self._options)
        self._url = url
        self._dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        self._learned = False

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    async def connect(self) -> PostgresConnection:
        options = self._options
        url = self._url
        host: Any = url.components.hostname
        port: Any = url.port
        several = host_lists(url)
        if several is not None:
            host, port = several
        kwargs: dict[str, Any] = {
            "host": host or options.backend.get("host"),
            "port": port,
            "user": url.username,
            "password": url.password,
            "database": url.database or None,
            # asyncpg's timeout covers all the hosts it tries: each gets its share.
            "timeout": (options.connect_timeout or 10.0) * max(1, len(url.hosts)),
            "command_timeout": options.command_timeout,
            **self._parts,
        }
        attrs = options.backend.get("target_session_attrs")
        if attrs is not None and _NATIVE_TARGET:
            kwargs["target_session_attrs"] = attrs
        if options.ssl is not None:
            kwargs["ssl"] = options.ssl
        if "statement_cache_size" in options.backend:
            kwargs["statement_cache_size"] = options.backend["statement_cache_size"]
        if "connection_class" not in options.driver:
            kwargs["connection_class"] = _UniquelyNamingConnection
        if self._unprepared:
            # asyncpg then prepares every statement unnamed, with Parse and Describe
            # followed by Flush, not Sync: PgBouncer keeps the server connection until
            # the Bind and Execute that follow, so the statement runs where it was parsed.
            kwargs["statement_cache_size"] = 0
        if "application_name" in options.backend:
            settings = dict(options.driver.get("server_settings") or {})
            settings["application_name"] = options.backend["application_name"]
            kwargs["server_settings"] = settings
        kwargs = {**options.driver, **kwargs}
        try:
            if attrs is not None and not _NATIVE_TARGET:
                conn = await _connect_to_target(kwargs, attrs)
            else:
                conn = await asyncpg.connect(**kwargs)
        except asyncio.TimeoutError as exc:
            raise translate(
                exc,
                OperationalError,
                f"could not connect within connect_timeout={kwargs['timeout']} s",
            ) from exc
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        try:
            # Like SQLAlchemy's asyncpg dialect, which our compiled queries assume:
            # JSON travels as text and is decoded here, bound values are encoded by
            # the JSON type's bind processor.
            await conn.set_type_codec(
                "json",
                encoder=str.encode,
                decoder=_json_decoder,
                schema="pg_catalog",
                format="binary",
            )
            await conn.set_type_codec(
                "jsonb",
                encoder=_jsonb_encoder,
                decoder=_jsonb_decoder,
                schema="pg_catalog",
                format="binary",
            )
        except _DRIVER_ERRORS as exc:
            # The codecs' type introspection is the first statement: a pooler mistake
            # (or a server that went away) can show here already.
            conn.terminate()
            raise _translate(exc) from exc
        except BaseException:
            conn.terminate()
            raise
        if not self._learned:
            # Once, before any query compiles (the pool opens a connection first);
            # asyncpg has the server's parameters from the handshake: no round trip.
            settings = conn.get_settings()
            learn_server_settings(
                self._dialect, getattr(settings, "standard_conforming_strings", None)
            )
            self._learned = True
        return PostgresConnection(conn, self._unprepared)

    async def cancel_statement(self, conn: BackendConnection) -> None:
        # Closing the connection would not stop it: the server notices a closed socket
        # only when it next writes to it, which pg_sleep() or a long sort never does.
        raw = conn.raw
        if self._unprepared or host_lists(self._url):
            # With several hosts, a new connection may reach another server than this
            # one's (after a failover) and cancel whatever runs there under this pid.
            # Behind a pooler the pid asyncpg was given is the pooler's invention: send
            # the cancel request of the protocol instead, which PgBouncer passes on to
            # the server connection running our statement. asyncpg has no public call
            # for it; this is what its own command_timeout sends (asyncpg 0.27-0.32).
            await connect_utils._cancel(
                loop=asyncio.get_running_loop(),
                addr=raw._addr,
                params=raw._params,
                backend_pid=raw._protocol.backend_pid,
                backend_secret=raw._protocol.backend_secret,
            )
            return
        pid = int(raw.get_server_pid())
        helper = await self.connect()
        try:
            await helper.run(f"SELECT pg_cancel_backend({pid})")
        finally:
            helper.terminate()

    async def close(self) -> None:
        return None

    def terminate(self) -> None:
        return None
