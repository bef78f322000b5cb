"""psycopg 3 on its own, with its own pool (psycopg_pool.AsyncConnectionPool): what
dbaccess on psycopg is compared with, beside asyncpg (the PostgreSQL baseline)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..config import BackendConfig
from ..schema import COLUMNS, ITEMS, SCRATCH, insert_sql, point_sql, select_all_sql
from .base import Contender, build_point_query, read_by_name

__all__ = ["RawPsycopg"]


class RawPsycopg(Contender):
    """AsyncConnectionPool of autocommit connections with dict rows (read by name, as
    every contender reads); point_core builds the Core statement and runs point_raw's
    SQL string."""

    name: ClassVar[str] = "psycopg"
    pool: AsyncConnectionPool[Any]

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql"

    def describe(self) -> dict[str, str]:
        return {"psycopg": psycopg.__version__, "libpq": str(psycopg.pq.version())}

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "format")
        self.select_sql = select_all_sql(ITEMS)
        self.insert_sql = insert_sql(SCRATCH, "format")
        self.many_args = [tuple(row[c] for c in COLUMNS) for row in self.many_rows]
        self.transaction_args = [tuple(row[c] for c in COLUMNS) for row in self.transaction_rows]
        backend, size = self.backend, self.sizes.pool_size
        self.pool = AsyncConnectionPool(
            kwargs={
                "host": backend.host,
                "port": backend.port,
                "user": backend.user,
                "password": backend.password or None,
                "dbname": backend.database,
                "autocommit": True,
                "row_factory": dict_row,
            },
            min_size=size,
            max_size=size,
            open=False,
        )
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def point_core(self) -> int:
        return await self._point(build=True)

    async def point_raw(self) -> int:
        return await self._point(build=False)

    async def _point(self, build: bool) -> int:
        sql = self.point_sql
        found = 0
        async with self.pool.connection() as conn:
            for i in self.point_ids:
                if build:
                    build_point_query(i)
                row = await (await conn.execute(sql, (i,))).fetchone()
                if row is not None:
                    read_by_name(row)
                    found += 1
        return found

    async def fetch_all(self) -> int:
        sql = self.select_sql
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(sql)).fetchall()
            for row in rows:
                read_by_name(row)
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        async with self.pool.connection() as conn:
            # Pipelined, and all-or-nothing: one Sync ends the implicit transaction.
            await conn.cursor().executemany(self.insert_sql, self.many_args)
        return len(self.many_args)

    async def concurrent(self) -> int:
        pool, sql = self.pool, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                async with pool.connection() as conn:
                    row = await (await conn.execute(sql, (i,))).fetchone()
                if row is not None:
                    read_by_name(row)
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        sql = self.insert_sql
        async with self.pool.connection() as conn:
            for args in self.transaction_args:
                async with conn.transaction():
                    await conn.execute(sql, args)
        return len(self.transaction_args)

    async def stream(self, table: sa.Table) -> int:
        seen = 0
        async with self.pool.connection() as conn, conn.transaction():
            # A server-side cursor (DECLARE, then FETCH of itersize rows at a time).
            cursor = conn.cursor("bench_stream")
            cursor.itersize = self.sizes.chunk_size
            await cursor.execute(select_all_sql(table))
            async for row in cursor:
                read_by_name(row)
                seen += 1
            await cursor.close()
        return seen
