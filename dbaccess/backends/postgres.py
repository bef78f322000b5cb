"""PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, ClassVar

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
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
from ..options import Options, Parser, keyword_parameters, parse_int, parse_options
from ..url import DatabaseURL
from .base import Backend, BackendConnection, Outcome, Rows, TransactionMode

__all__ = ["PostgresBackend"]

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


def _translate(exc: Exception) -> DBAccessError:
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        ours = _SQLSTATES.get(sqlstate) or _SQLSTATE_CLASSES.get(sqlstate[:2], DatabaseError)
        return translate(exc, ours)
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's client-side DataError is an InterfaceError and a ValueError.
        return translate(exc, DataError if isinstance(exc, ValueError) else InterfaceError)
    if isinstance(exc, asyncio.TimeoutError):
        return translate(exc, OperationalError, _TIMEOUT)
    if isinstance(exc, OSError):
        return translate(exc, OperationalError)
    return translate(exc, DatabaseError)


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


def _rowcount(status: str) -> int:
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else -1


#: asyncpg 0.32 opens a cursor in any transaction; before, only in one begun through
#: its own API (Connection.transaction()), which dbaccess's raw BEGIN is not.
_CURSOR_IN_ANY_TRANSACTION = tuple(
    int(part) for part in re.findall(r"\d+", asyncpg.__version__)[:2]
) >= (0, 32)


class PostgresConnection(BackendConnection):
    __slots__ = ("_conn", "_cursors")

    atomic_execute_many = True  # asyncpg >= 0.22

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        #: Cursors declared in SQL and still open (asyncpg < 0.32, see _stream_declared).
        self._cursors = 0

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
            self._conn.terminate()
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
        return Outcome(_rowcount(status), None, (), ())

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, many_args)
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, transaction_open: bool
    ) -> AsyncGenerator[Rows, None]:
        if _CURSOR_IN_ANY_TRANSACTION:
            return self._stream(sql, args, chunk_size, transaction_open)
        if transaction_open:
            return self._stream_declared(sql, args, chunk_size)
        return self._stream_in_own_transaction(sql, args, chunk_size)

    async def _stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, transaction_open: bool
    ) -> AsyncGenerator[Rows, None]:
        # A server-side cursor lives inside a transaction: open one if none is.
        if not transaction_open:
            await self.run("BEGIN")
        finished = False
        try:
            async for chunk in self._cursor_chunks(sql, args, chunk_size):
                yield chunk
            finished = True
        finally:
            if not transaction_open and not self.is_closed:
                await self.run("COMMIT" if finished else "ROLLBACK")

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
            await transaction.start()  # BEGIN, as in _stream(): no extra round trip
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
        self._cursors += 1
        name = f"dbaccess_cursor_{self._cursors}"  # unique among the open ones
        try:
            try:
                await self._conn.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", *args)
                fetch = await self._conn.prepare(f"FETCH FORWARD {int(chunk_size)} FROM {name}")
            except _DRIVER_ERRORS as exc:
                raise self._failed(exc) from exc
            declared = True
            try:
                while True:
                    try:
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
        finally:
            self._cursors -= 1

    async def _close_cursor(self, name: str) -> None:
        try:
            await self._conn.execute(f"CLOSE {name}")
        except asyncpg.InFailedSQLTransactionError:
            pass  # a statement of the loop body failed: the cursor ends with the transaction
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc

    async def begin(self, mode: TransactionMode) -> None:
        sql = "BEGIN"
        if mode.isolation:
            sql += f" ISOLATION LEVEL {mode.isolation.upper()}"
        if mode.readonly:
            sql += " READ ONLY"
        if mode.deferrable is not None:
            sql += " DEFERRABLE" if mode.deferrable else " NOT DEFERRABLE"
        await self.run(sql)

    async def commit(self) -> None:
        try:
            status = await self._conn.execute("COMMIT")
        except _DRIVER_ERRORS as exc:
            raise self._failed(exc) from exc
        if status == "ROLLBACK":
            # PostgreSQL aborts a transaction at its first error and answers COMMIT by
            # rolling back; say so instead of letting the caller believe it committed.
            raise InternalError(
                "cannot commit: PostgreSQL aborted this transaction after an error in "
                "one of its statements, and rolled it back"
            )

    async def rollback(self) -> None:
        await self.run("ROLLBACK")

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
        self._conn.terminate()


def _json_decoder(data: bytes) -> Any:
    return json.loads(data)


def _jsonb_decoder(data: bytes) -> Any:
    return json.loads(data[1:])  # binary jsonb starts with a version byte


def _jsonb_encoder(text: str) -> bytes:
    return b"\x01" + text.encode()


class PostgresBackend(Backend):
    url_options: ClassVar[dict[str, Parser]] = {
        "host": lambda name, value: str(value),
        "application_name": lambda name, value: str(value),
        "statement_cache_size": lambda name, value: parse_int(name, value, minimum=0),
    }
    isolation_levels: ClassVar[frozenset[str]] = frozenset(
        {"read uncommitted", "read committed", "repeatable read", "serializable"}
    )
    supports_deferrable: ClassVar[bool] = True

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        self._options = parse_options(
            url.options,
            keywords,
            backend_parsers=self.url_options,
            driver_keywords=keyword_parameters(asyncpg.connect),
            managed=frozenset({"dsn", "host", "port", "user", "password", "database", "timeout"}),
            backend_name="PostgreSQL",
        )
        self._url = url
        self._dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def options(self) -> Options:
        return self._options

    async def connect(self) -> PostgresConnection:
        options = self._options
        url = self._url
        kwargs: dict[str, Any] = {
            "host": url.components.hostname or options.backend.get("host"),
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database or None,
            "timeout": options.connect_timeout or 10.0,
            "command_timeout": options.command_timeout,
        }
        if options.ssl is not None:
            kwargs["ssl"] = options.ssl
        if "statement_cache_size" in options.backend:
            kwargs["statement_cache_size"] = options.backend["statement_cache_size"]
        if "application_name" in options.backend:
            settings = dict(options.driver.get("server_settings") or {})
            settings["application_name"] = options.backend["application_name"]
            kwargs["server_settings"] = settings
        kwargs = {**options.driver, **kwargs}
        try:
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
        except BaseException:
            conn.terminate()
            raise
        return PostgresConnection(conn)

    async def close(self) -> None:
        return None
