"""SQLAlchemy's asyncio engine (postgresql+asyncpg, mysql+aiomysql, sqlite+aiosqlite),
with its default settings apart from the pool size."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..schema import ITEMS, SCRATCH, insert_sql, point_sql
from .base import SCRATCH_INSERT, Contender

__all__ = ["SQLAlchemy"]


class SQLAlchemy(Contender):
    name: ClassVar[str] = "sqlalchemy"
    engine: AsyncEngine

    async def open(self) -> None:
        self.point_text = sa.text(point_sql(ITEMS, "named"))
        self.insert_text = sa.text(insert_sql(SCRATCH, "named"))
        size = self.sizes.pool_size
        self.engine = create_async_engine(
            self.backend.sqlalchemy_url, pool_size=size, max_overflow=0
        )
        # The pool opens connections lazily: open them all now, as the other
        # contenders' pools do at connect time.
        connections: list[AsyncConnection] = []
        try:
            for _ in range(size):
                connections.append(await self.engine.connect())
        finally:
            for conn in connections:
                await conn.close()

    async def close(self) -> None:
        await self.engine.dispose()

    async def point_core(self) -> int:
        items, id_column = ITEMS, ITEMS.c.id
        found = 0
        async with self.engine.connect() as conn:
            for i in self.point_ids:
                row = (await conn.execute(sa.select(items).where(id_column == i))).first()
                if row is not None:
                    _id, _name, _value, _flag, _created_at = (
                        row.id,
                        row.name,
                        row.value,
                        row.flag,
                        row.created_at,
                    )
                    found += 1
        return found

    async def point_raw(self) -> int:
        query = self.point_text
        found = 0
        async with self.engine.connect() as conn:
            for i in self.point_ids:
                row = (await conn.execute(query, {"id": i})).first()
                if row is not None:
                    _id, _name, _value, _flag, _created_at = (
                        row.id,
                        row.name,
                        row.value,
                        row.flag,
                        row.created_at,
                    )
                    found += 1
        return found

    async def fetch_all(self) -> int:
        engine, query = self.engine, sa.select(ITEMS)
        seen = 0
        for _ in range(self.sizes.fetch_all_repeats):
            async with engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                _id, _name, _value, _flag, _created_at = (
                    row.id,
                    row.name,
                    row.value,
                    row.flag,
                    row.created_at,
                )
            seen += len(rows)
        return seen

    async def execute_many(self) -> int:
        async with self.engine.begin() as conn:
            await conn.execute(SCRATCH_INSERT, self.many_rows)
        return len(self.many_rows)

    async def concurrent(self) -> int:
        engine, query = self.engine, self.point_text

        async def task(ids: list[int]) -> int:
            found = 0
            for i in ids:
                async with engine.connect() as conn:
                    row = (await conn.execute(query, {"id": i})).first()
                if row is not None:
                    _id, _name, _value, _flag, _created_at = (
                        row.id,
                        row.name,
                        row.value,
                        row.flag,
                        row.created_at,
                    )
                    found += 1
            return found

        return sum(await asyncio.gather(*(task(ids) for ids in self.task_ids)))

    async def transactions(self) -> int:
        query = self.insert_text
        async with self.engine.connect() as conn:
            for values in self.transaction_rows:
                async with conn.begin():
                    await conn.execute(query, values)
        return len(self.transaction_rows)

    async def stream(self, table: sa.Table) -> int:
        query = sa.select(table).execution_options(yield_per=self.sizes.chunk_size)
        seen = 0
        async with self.engine.connect() as conn:
            result = await conn.stream(query)
            async for row in result:
                _id, _name, _value, _flag, _created_at = (
                    row.id,
                    row.name,
                    row.value,
                    row.flag,
                    row.created_at,
                )
                seen += 1
        return seen
