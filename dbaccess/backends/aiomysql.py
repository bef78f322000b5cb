"""MySQL and MariaDB through aiomysql (``mysql://``, ``mysql+aiomysql://``, ``mariadb://``)."""

from __future__ import annotations

from typing import Any

import aiomysql
import pymysql
from sqlalchemy.dialects.mysql.aiomysql import MySQLDialect_aiomysql

from .mysql import MySQLBackendBase, MySQLDriver

__all__ = ["MySQLBackend"]


class _Aiomysql(MySQLDriver):
    name = "aiomysql"
    error = pymysql.err.Error
    found_rows_flag = pymysql.constants.CLIENT.FOUND_ROWS
    connect = aiomysql.connect
    database_argument = "db"
    unbuffered_cursor = aiomysql.SSCursor

    connection_class = aiomysql.Connection

    @staticmethod
    async def handshake(conn: Any) -> None:
        # What aiomysql.connect() awaits after creating the Connection; dbaccess creates
        # it itself so that it can close a connection whose handshake is interrupted.
        await conn._connect()

    @staticmethod
    async def cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
        return await (conn.cursor(cursor_class) if cursor_class else conn.cursor())

    @staticmethod
    def is_closed(conn: Any) -> bool:
        if conn.closed:
            return True
        # A connection the server closed while it sat idle (KILL, restart, timeout):
        # aiomysql only notices on its next read, but its stream reader already holds
        # the end of the stream. Checking it costs no round trip.
        reader = getattr(conn, "_reader", None)
        return reader is not None and reader.at_eof()

    @staticmethod
    def abort(conn: Any) -> None:
        writer = conn._writer
        if writer is not None:
            writer.transport.abort()
        conn.close()


class MySQLBackend(MySQLBackendBase):
    """MySQL and MariaDB through aiomysql."""

    dialect_class = MySQLDialect_aiomysql
    driver = _Aiomysql
