"""dbaccess, the library under test."""

from __future__ import annotations

from typing import Any, ClassVar

import dbaccess

from ..config import BackendConfig
from .databases_api import DatabasesAPI

__all__ = ["DBAccess", "DBAccessPsycopg", "DBAccessPsycopgUnprepared", "DBAccessUnprepared"]


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
