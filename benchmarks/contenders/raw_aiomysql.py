"""aiomysql on its own: the MySQL/MariaDB baseline (ratio 1.00). Autocommit on, as
dbaccess, databases and SQLAlchemy's pool leave their connections between statements."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiomysql
import sqlalchemy as sa

from ..config import BackendConfig
from ..schema import COLUMNS, ITEMS, SCRATCH, insert_sql, point_sql, select_all_sql
from .base import Contender, build_point_query

__all__ = ["RawAiomysql"]


class RawAiomysql(Contender):
    """aiomysql.Pool and plain (tuple) cursors; point_core builds the Core statement
    and runs the SQL string."""

    name: ClassVar[str] = "aiomysql"
    pool: Any

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "mysql"

    async def open(self) -> None:
        self.point_sql = point_sql(ITEMS, "format")
        self.select_sql = select_all_sql(ITEMS)
        self.insert_sql = insert_sql(SCRATCH, "format")
        self.many_args = [tuple(row[c] for c in COLUMNS) for row in self.many_rows]
        self.transaction_args = [tuple(row[c] for c in COLUMNS) for row in self.transaction_rows]
        backend, size = self.backend, self.sizes.pool_size
        self.pool = await aiomysql.create_pool(
            host=backend.host,
            port=backend.port,
            user=backend.user,
            password=backend.password,
            db=backend.database,
            minsize=size,
            maxsize=size,
            autocommit=True,
            charset="utf8mb4",
        )

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def point_core(self) -> int:
        return await self._point(build=True)

    async def point_raw(self) -> int:
        return await self._point(build=False)

    async def _point(self, build: bool) -> int:
        sql = self.point_sql
        found = 0
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            for i in self.point_ids:
                if build:
                    build_point_query(i)
                await cursor.execute(sql, (i,))
                row = await cursor.fetchone()
                if row is not None:
                    _id, _name, _value, _flag, _created_at = row
                    found += 1
        return found

    async def fetch_all(self) -> int:
        sql = self.select_sql
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            async with self.pool.acquire() as conn, conn.cursor() as cursor:
                await cursor.execute(sql)
                rows = await cursor.fetchall()
            for _id, _name, _value, _flag, _created_at in rows:
                pass
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        async with self.pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cursor:
                await cursor.executemany(self.insert_sql, self.many_args)
            await conn.commit()
        return len(self.many_args)

    async def concurrent(self) -> int:
        pool, sql = self.pool, self.point_sql

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                async with pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute(sql, (i,))
                    row = await cursor.fetchone()
                if row is not None:
                    _id, _name, _value, _flag, _created_at = row
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        sql = self.insert_sql
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            for args in self.transaction_args:
                await conn.begin()
                await cursor.execute(sql, args)
                await conn.commit()
        return len(self.transaction_args)

    async def stream(self, table: sa.Table) -> int:
        sql, chunk = select_all_sql(table), self.sizes.chunk_size
        seen = 0
        async with self.pool.acquire() as conn, conn.cursor(aiomysql.SSCursor) as cursor:
            await cursor.execute(sql)
            while rows := await cursor.fetchmany(chunk):
                for _id, _name, _value, _flag, _created_at in rows:
                    pass
                seen += len(rows)
        return seen
