"""MySQL and MariaDB through asyncmy (``mysql+asyncmy://``)."""

from __future__ import annotations

from typing import Any

import asyncmy
import asyncmy.connection
import asyncmy.cursors
import asyncmy.errors
from asyncmy.constants import CLIENT
from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy

from .mysql import MySQLBackendBase, MySQLDriver

__all__ = ["AsyncmyBackend"]


class _Asyncmy(MySQLDriver):
    name = "asyncmy"
    error = asyncmy.errors.Error
    found_rows_flag = CLIENT.FOUND_ROWS
    connect = asyncmy.connect
    database_argument = "database"
    unbuffered_cursor = asyncmy.cursors.SSCursor

    connection_class = asyncmy.connection.Connection

    @staticmethod
    async def handshake(conn: Any) -> None:
        await conn.connect()

    @staticmethod
    async def cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
        return conn.cursor(cursor_class) if cursor_class else conn.cursor()

    @staticmethod
    def is_closed(conn: Any) -> bool:
        if not conn.connected:
            return True
        # A connection the server closed while it sat idle (KILL, restart, timeout):
        # asyncmy's transport closes itself at the end of the stream, before asyncmy's
        # next read notices. Checking it costs no round trip.
        # asyncmy 0.2.17's close() drops the transport but leaves `connected` True:
        # no transport means closed.
        transport = getattr(conn, "_transport", None)
        return transport is None or transport.is_closing()

    @staticmethod
    def abort(conn: Any) -> None:
        transport = conn._transport
        if transport is not None:
            transport.abort()
        conn.close()


class AsyncmyBackend(MySQLBackendBase):
    """MySQL and MariaDB through asyncmy."""

    dialect_class = MySQLDialect_asyncmy
    driver = _Asyncmy
