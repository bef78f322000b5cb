"""MySQL and MariaDB through asyncmy (``mysql+asyncmy://``)."""

from __future__ import annotations

from typing import Any

import asyncmy
import asyncmy.cursors
import asyncmy.errors
from asyncmy.constants import CLIENT
from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy

from .mysql_common import MySQLBackendBase, MySQLDriver

__all__ = ["AsyncmyBackend"]


class _Asyncmy(MySQLDriver):
    name = "asyncmy"
    error = asyncmy.errors.Error
    found_rows_flag = CLIENT.FOUND_ROWS
    connect = asyncmy.connect
    database_argument = "database"
    unbuffered_cursor = asyncmy.cursors.SSCursor

    @staticmethod
    async def cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
        return conn.cursor(cursor_class) if cursor_class else conn.cursor()

    @staticmethod
    def is_closed(conn: Any) -> bool:
        return not conn.connected


class AsyncmyBackend(MySQLBackendBase):
    """MySQL and MariaDB through asyncmy."""

    dialect_class = MySQLDialect_asyncmy
    driver = _Asyncmy
