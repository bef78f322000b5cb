"""The encode/databases API, shared by dbaccess and databases 0.9 (same calls, same
idioms): ``Database(url)``, ``connection()``, ``transaction()``, ``fetch_*``,
``execute_many``, ``iterate``."""

from __future__ import annotations

import abc
import asyncio
from typing import Any

import sqlalchemy as sa

from ..schema import ITEMS, SCRATCH, insert_sql, point_sql
from .base import SCRATCH_INSERT, Contender, read_by_name

__all__ = ["DatabasesAPI"]


class DatabasesAPI(Contender):
    """A contender whose ``Database`` has the encode/databases API. The database object
    is typed ``Any``: the two libraries share the API but no base class."""

    db: Any

    @abc.abstractmethod
    def make_database(self) -> Any:
        """A ``Database`` whose pool holds ``sizes.pool_size`` connections, opened by
        ``connect()``."""

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "named")
        self.insert_sql = insert_sql(SCRATCH, "named")
        self.db = self.make_database()
        await self.db.connect()

    async def close(self) -> None:
        await self.db.disconnect()

    async def point_core(self) -> int:
        items, id_column = ITEMS, ITEMS.c.id
        found = 0
        async with self.db.connection() as conn:
            for i in self.point_ids:
                row = await conn.fetch_one(sa.select(items).where(id_column == i))
                if row is not None:
                    read_by_name(row)
                    found += 1
        return found

    async def point_raw(self) -> int:
        sql = self.point_sql
        found = 0
        async with self.db.connection() as conn:
            for i in self.point_ids:
                row = await conn.fetch_one(sql, {"id": i})
                if row is not None:
                    read_by_name(row)
                    found += 1
        return found

    async def fetch_all(self) -> int:
        db, query = self.db, sa.select(ITEMS)
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            rows = await db.fetch_all(query)
            for row in rows:
                read_by_name(row)
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        await self.db.execute_many(SCRATCH_INSERT, self.many_rows)
        return len(self.many_rows)

    async def concurrent(self) -> int:
        db, sql = self.db, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                row = await db.fetch_one(sql, {"id": i})
                if row is not None:
                    read_by_name(row)
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        sql = self.insert_sql
        async with self.db.connection() as conn:
            for values in self.transaction_rows:
                async with conn.transaction():
                    await conn.execute(sql, values)
        return len(self.transaction_rows)

    async def stream(self, table: sa.Table) -> int:
        seen = 0
        async for row in self.db.iterate(sa.select(table)):
            read_by_name(row)
            seen += 1
        return seen
