"""dbaccess, the library under test."""

from __future__ import annotations

from typing import Any, ClassVar

import dbaccess

from ..config import BackendConfig
from .databases_api import DatabasesAPI

__all__ = ["DBAccess", "DBAccessPsycopg"]


class DBAccess(DatabasesAPI):
    name: ClassVar[str] = "dbaccess"

    def make_database(self) -> Any:
        size = self.sizes.pool_size
        return dbaccess.Database(self.backend.url, min_size=size, max_size=size)


class DBAccessPsycopg(DatabasesAPI):
    """dbaccess on its psycopg backend (postgresql+psycopg://)."""

    name: ClassVar[str] = "dbaccess-psycopg"

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"

    def make_database(self) -> Any:
        size = self.sizes.pool_size
        url = dbaccess.DatabaseURL(self.backend.url).replace(driver="psycopg")
        return dbaccess.Database(url, min_size=size, max_size=size)
