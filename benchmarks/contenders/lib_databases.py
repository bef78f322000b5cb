"""encode/databases 0.9, the API dbaccess copies."""

from __future__ import annotations

from typing import Any, ClassVar

import databases

from .databases_api import DatabasesAPI

__all__ = ["Databases"]


class Databases(DatabasesAPI):
    name: ClassVar[str] = "databases"

    def make_database(self) -> Any:
        if self.backend.name == "sqlite":
            # databases has no SQLite pool: it opens a connection per query (and passes
            # options on to sqlite3.connect, which knows no pool size).
            return databases.Database(self.backend.url)
        size = self.sizes.pool_size
        return databases.Database(self.backend.url, min_size=size, max_size=size)
