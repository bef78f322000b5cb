"""asyncpg on its own: the PostgreSQL baseline (ratio 1.00), and ``asyncpg-queue``, a
plain asyncio.Queue of connections instead of asyncpg.Pool."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import asyncpg
import sqlalchemy as sa

from ..config import BackendConfig
from ..schema import COLUMNS, ITEMS, SCRATCH, insert_sql, point_sql, select_all_sql
from .base import Contender, PartialContender, build_point_query, read_by_name

__all__ = ["AsyncpgQueue", "RawAsyncpg"]


def _connect_kwargs(backend: BackendConfig) -> dict[str, Any]:
    return {
        "host": backend.host,
        "port": backend.port,
        "user": backend.user,
        "password": backend.password or None,
        "database": backend.database,
    }


class RawAsyncpg(Contender):
    """asyncpg.Pool; point_core builds the Core statement and runs point_raw's SQL string."""

    name: ClassVar[str] = "asyncpg"
    pool: Any

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "dollar")
        self.select_sql = select_all_sql(ITEMS)
        self.insert_sql = insert_sql(SCRATCH, "dollar")
        self.many_args = [tuple(row[c] for c in COLUMNS) for row in self.many_rows]
        self.transaction_args = [tuple(row[c] for c in COLUMNS) for row in self.transaction_rows]
        size = self.sizes.pool_size
        self.pool = await asyncpg.create_pool(
            **_connect_kwargs(self.backend), min_size=size, max_size=size
        )

    async def close(self) -> None:
        await self.pool.close()

    async def point_core(self) -> int:
        return await self._point(build=True)

    async def point_raw(self) -> int:
        return await self._point(build=False)

    async def _point(self, build: bool) -> int:
        sql = self.point_sql
        found = 0
        async with self.pool.acquire() as conn:
            for i in self.point_ids:
                if build:
                    build_point_query(i)
                row = await conn.fetchrow(sql, i)
                if row is not None:
                    read_by_name(row)
                    found += 1
        return found

    async def fetch_all(self) -> int:
        pool, sql = self.pool, self.select_sql
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            rows = await pool.fetch(sql)
            for row in rows:
                read_by_name(row)
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        async with self.pool.acquire() as conn:
            await conn.executemany(self.insert_sql, self.many_args)  # atomic
        return len(self.many_args)

    async def concurrent(self) -> int:
        pool, sql = self.pool, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                row = await pool.fetchrow(sql, i)
                if row is not None:
                    read_by_name(row)
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        sql = self.insert_sql
        async with self.pool.acquire() as conn:
            for args in self.transaction_args:
                async with conn.transaction():
                    await conn.execute(sql, *args)
        return len(self.transaction_args)

    async def stream(self, table: sa.Table) -> int:
        sql = select_all_sql(table)
        seen = 0
        async with self.pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor(sql, prefetch=self.sizes.chunk_size):
                read_by_name(row)
                seen += 1
        return seen


class AsyncpgQueue(PartialContender):
    """The concurrent workload on an asyncio.Queue of asyncpg connections: no reset
    round trip when a connection comes back, unlike asyncpg.Pool."""

    name: ClassVar[str] = "asyncpg-queue"
    scope: ClassVar[str] = "a pool alternative, measured on the concurrent workload only"

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "dollar")
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        kwargs = _connect_kwargs(self.backend)
        for _ in range(self.sizes.pool_size):
            self.queue.put_nowait(await asyncpg.connect(**kwargs))

    async def close(self) -> None:
        while not self.queue.empty():
            await self.queue.get_nowait().close()

    async def concurrent(self) -> int:
        queue, sql = self.queue, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                conn = await queue.get()
                try:
                    row = await conn.fetchrow(sql, i)
                finally:
                    queue.put_nowait(conn)
                if row is not None:
                    read_by_name(row)
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))
