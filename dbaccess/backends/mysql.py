"""MySQL and MariaDB through aiomysql (``mysql://``, ``mysql+aiomysql://``, ``mariadb://``)."""

from __future__ import annotations

from typing import Any

import aiomysql
import pymysql
from sqlalchemy.dialects.mysql.aiomysql import MySQLDialect_aiomysql

from .mysql_common import MySQLBackendBase, MySQLDriver

__all__ = ["MySQLBackend"]


class _Aiomysql(MySQLDriver):
    name = "aiomysql"
    error = pymysql.err.Error
    found_rows_flag = pymysql.constants.CLIENT.FOUND_ROWS
    connect = aiomysql.connect
    database_argument = "db"
    unbuffered_cursor = aiomysql.SSCursor

    @staticmethod
    async def cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
        return await (conn.cursor(cursor_class) if cursor_class else conn.cursor())

    @staticmethod
    def is_closed(conn: Any) -> bool:
        return bool(conn.closed)


class MySQLBackend(MySQLBackendBase):
    """MySQL and MariaDB through aiomysql."""

    dialect_class = MySQLDialect_aiomysql
    driver = _Aiomysql
