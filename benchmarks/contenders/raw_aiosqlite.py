"""aiosqlite on its own: the SQLite baseline (ratio 1.00). It has no pool: an
asyncio.Queue of connections stands in for one."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

import aiosqlite
import sqlalchemy as sa

from ..config import BackendConfig
from ..schema import COLUMNS, ITEMS, SCRATCH, insert_sql, point_sql, select_all_sql, sqlite_datetime
from .base import Contender, build_point_query

__all__ = ["RawAiosqlite"]


def _args(row: dict[str, Any]) -> tuple[Any, ...]:
    # sqlite3 has no datetime type: bind the text SQLAlchemy's dialect would write.
    return tuple(sqlite_datetime(row[c]) if c == "created_at" else row[c] for c in COLUMNS)


class RawAiosqlite(Contender):
    """A queue of aiosqlite connections with the sqlite3 module's default (implicit)
    transactions; queries with ``execute_fetchall`` (one trip to the connection's
    thread), streaming with ``fetchmany``."""

    name: ClassVar[str] = "aiosqlite"

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "sqlite"

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "qmark")
        self.select_sql = select_all_sql(ITEMS)
        self.insert_sql = insert_sql(SCRATCH, "qmark")
        self.many_args = [_args(row) for row in self.many_rows]
        self.transaction_args = [_args(row) for row in self.transaction_rows]
        self.queue: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for _ in range(self.sizes.pool_size):
            self.queue.put_nowait(await aiosqlite.connect(self.backend.database))

    async def close(self) -> None:
        while not self.queue.empty():
            await self.queue.get_nowait().close()

    async def point_core(self) -> int:
        return await self._point(build=True)

    async def point_raw(self) -> int:
        return await self._point(build=False)

    async def _point(self, build: bool) -> int:
        sql = self.point_sql
        found = 0
        conn = await self.queue.get()
        try:
            for i in self.point_ids:
                if build:
                    build_point_query(i)
                rows = await conn.execute_fetchall(sql, (i,))
                for _id, _name, _value, _flag, _created_at in rows:
                    found += 1
        finally:
            self.queue.put_nowait(conn)
        return found

    async def fetch_all(self) -> int:
        sql = self.select_sql
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            conn = await self.queue.get()
            try:
                rows = cast("list[Any]", await conn.execute_fetchall(sql))
            finally:
                self.queue.put_nowait(conn)
            for _id, _name, _value, _flag, _created_at in rows:
                pass
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        conn = await self.queue.get()
        try:
            await conn.executemany(self.insert_sql, self.many_args)
            await conn.commit()
        finally:
            self.queue.put_nowait(conn)
        return len(self.many_args)

    async def concurrent(self) -> int:
        queue, sql = self.queue, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                conn = await queue.get()
                try:
                    rows = await conn.execute_fetchall(sql, (i,))
                finally:
                    queue.put_nowait(conn)
                for _id, _name, _value, _flag, _created_at in rows:
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        sql = self.insert_sql
        conn = await self.queue.get()
        try:
            for args in self.transaction_args:
                await conn.execute(sql, args)  # sqlite3 opens the transaction
                await conn.commit()
        finally:
            self.queue.put_nowait(conn)
        return len(self.transaction_args)

    async def stream(self, table: sa.Table) -> int:
        sql, chunk = select_all_sql(table), self.sizes.chunk_size
        seen = 0
        conn = await self.queue.get()
        try:
            async with conn.execute(sql) as cursor:
                while rows := cast("list[Any]", await cursor.fetchmany(chunk)):
                    for _id, _name, _value, _flag, _created_at in rows:
                        pass
                    seen += len(rows)
        finally:
            self.queue.put_nowait(conn)
        return seen
