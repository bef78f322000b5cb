"""dbaccess, the library under test."""

from __future__ import annotations

from typing import Any, ClassVar

import dbaccess

from .databases_api import DatabasesAPI

__all__ = ["DBAccess"]


class DBAccess(DatabasesAPI):
    name: ClassVar[str] = "dbaccess"

    def make_database(self) -> Any:
        size = self.sizes.pool_size
        return dbaccess.Database(self.backend.url, min_size=size, max_size=size)
