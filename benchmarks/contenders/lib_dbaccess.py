"""dbaccess, the library under test."""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa

import dbaccess

from ..config import BackendConfig
from ..schema import ITEMS
from .base import read_by_name
from .databases_api import DatabasesAPI

__all__ = [
    "DBAccess",
    "DBAccessPerCall",
    "DBAccessPsycopg",
    "DBAccessPsycopgUnprepared",
    "DBAccessReplicas",
    "DBAccessUnprepared",
]


class DBAccess(DatabasesAPI):
    name: ClassVar[str] = "dbaccess"
    #: The URL's driver, when not the dialect's default one.
    driver: ClassVar[str | None] = None
    #: Keyword options of the Database, besides the pool's size.
    options: ClassVar[dict[str, Any]] = {}

    def make_database(self) -> Any:
        size = self.sizes.pool_size
        url = dbaccess.DatabaseURL(self.backend.url)
        if self.driver is not None:
            url = url.replace(driver=self.driver)
        return dbaccess.Database(url, min_size=size, max_size=size, **self.options)


class DBAccessPsycopg(DBAccess):
    """dbaccess on its psycopg backend (postgresql+psycopg://)."""

    name: ClassVar[str] = "dbaccess-psycopg"
    driver: ClassVar[str | None] = "psycopg"

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"


class DBAccessUnprepared(DBAccess):
    """dbaccess on asyncpg with prepared_statements=false (PgBouncer's transaction mode),
    on the same server as the others: the cost of the option alone, not of the pooler."""

    name: ClassVar[str] = "dbaccess-unprepared"
    options: ClassVar[dict[str, Any]] = {"prepared_statements": False}

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"


class DBAccessPsycopgUnprepared(DBAccessPsycopg):
    """dbaccess on psycopg with prepared_statements=false."""

    name: ClassVar[str] = "dbaccess-psycopg-unprepared"
    options: ClassVar[dict[str, Any]] = {"prepared_statements": False}


class DBAccessPerCall(DBAccess):
    """dbaccess with point_core and point_raw through the top-level API, a pooled
    connection per query (outside any block, where reads may go to a replica): the
    baseline of dbaccess-replicas. The other workloads are dbaccess's own."""

    name: ClassVar[str] = "dbaccess-per-call"

    async def point_core(self) -> int:
        fetch_one, items, id_column = self.db.fetch_one, ITEMS, ITEMS.c.id
        found = 0
        for i in self.point_ids:
            row = await fetch_one(sa.select(items).where(id_column == i))
            if row is not None:
                read_by_name(row)
                found += 1
        return found

    async def point_raw(self) -> int:
        fetch_one, sql = self.db.fetch_one, self.point_sql
        found = 0
        for i in self.point_ids:
            row = await fetch_one(sql, {"id": i})
            if row is not None:
                read_by_name(row)
                found += 1
        return found


class DBAccessReplicas(DBAccessPerCall):
    """dbaccess-per-call with ``replicas=[the same URL]``: each read is classified and
    routed to the replica's pool (of the same size), writes to the primary; against
    dbaccess-per-call, the cost of routing."""

    name: ClassVar[str] = "dbaccess-replicas"

    def make_database(self) -> Any:
        database = super().make_database()
        size = self.sizes.pool_size
        return dbaccess.Database(
            database.url, min_size=size, max_size=size, replicas=[database.url]
        )
