"""Creating and filling the benchmark tables through an admin connection of the raw
driver (not through any contender), and the untimed chores between runs."""

from __future__ import annotations

import abc
import warnings
from typing import Any

import aiomysql
import aiosqlite
import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateTable

from .config import BackendConfig
from .schema import COLUMNS, SCRATCH

__all__ = ["Admin", "open_admin"]

_COLUMN_LIST = ", ".join(COLUMNS)
#: Seconds a chore waits for a lock held by a contender before failing, not hanging.
_LOCK_TIMEOUT = 30


class Admin(abc.ABC):
    """One raw connection, for setup, clean-up and checks, outside every timer."""

    def __init__(self, backend: BackendConfig) -> None:
        self.backend = backend
        self.dialect = make_url(backend.sqlalchemy_url).get_dialect()()

    @abc.abstractmethod
    async def execute(self, sql: str) -> None: ...

    @abc.abstractmethod
    async def scalar(self, sql: str) -> Any: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def server_version(self) -> str: ...

    @abc.abstractmethod
    def generate_sql(self, table: sa.Table, count: int) -> str:
        """INSERT ... SELECT of ``count`` generated rows (ids 1..count), server-side."""

    async def create(self, table: sa.Table) -> None:
        """Drop and create ``table``."""
        await self.execute(f"DROP TABLE IF EXISTS {table.name}")
        await self.execute(str(CreateTable(table).compile(dialect=self.dialect)))

    async def create_filled(self, table: sa.Table, count: int) -> None:
        """Drop, create and fill ``table`` with ``count`` rows, then refresh its statistics."""
        await self.create(table)
        if count:
            await self.execute(self.generate_sql(table, count))
        await self.analyze(table)
        found = await self.count(table)
        if found != count:
            raise RuntimeError(f"{table.name} has {found} rows after filling, not {count}")

    async def analyze(self, table: sa.Table) -> None:
        await self.execute(f"ANALYZE {table.name}")

    async def count(self, table: sa.Table) -> int:
        return int(await self.scalar(f"SELECT count(*) FROM {table.name}"))

    async def reset_scratch(self) -> None:
        await self.execute(f"TRUNCATE TABLE {SCRATCH.name}")


class PostgresAdmin(Admin):
    def __init__(self, backend: BackendConfig, conn: Any) -> None:
        super().__init__(backend)
        self._conn = conn

    async def execute(self, sql: str) -> None:
        await self._conn.execute(sql)

    async def scalar(self, sql: str) -> Any:
        return await self._conn.fetchval(sql)

    async def close(self) -> None:
        await self._conn.close()

    async def server_version(self) -> str:
        return str(await self.scalar("SELECT version()"))

    def generate_sql(self, table: sa.Table, count: int) -> str:
        return (
            f"INSERT INTO {table.name} ({_COLUMN_LIST}) "
            "SELECT g, 'name-' || g, g * 0.25, g % 2 = 0, "
            "timestamp '2024-01-01' + g * interval '1 second' "
            f"FROM generate_series(1, {int(count)}) AS g"
        )

    async def analyze(self, table: sa.Table) -> None:
        # VACUUM sets the hint bits and the visibility map now, so that the first
        # contender to read the fresh table does not pay for it.
        await self.execute(f"VACUUM (ANALYZE) {table.name}")


class MySQLAdmin(Admin):
    def __init__(self, backend: BackendConfig, conn: Any) -> None:
        super().__init__(backend)
        self._conn = conn
        self._use_sequence = True

    async def execute(self, sql: str) -> None:
        async with self._conn.cursor() as cursor:
            with warnings.catch_warnings():
                # MySQL's note for DROP TABLE IF EXISTS of a missing table.
                warnings.filterwarnings("ignore", "Unknown table", Warning)
                await cursor.execute(sql)

    async def scalar(self, sql: str) -> Any:
        async with self._conn.cursor() as cursor:
            await cursor.execute(sql)
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def close(self) -> None:
        self._conn.close()

    async def server_version(self) -> str:
        return str(await self.scalar("SELECT VERSION()"))

    def generate_sql(self, table: sa.Table, count: int) -> str:
        if not self._use_sequence:
            return (
                f"INSERT INTO {table.name} ({_COLUMN_LIST}) "
                f"WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s "
                f"WHERE seq < {int(count)}) "
                "SELECT seq, CONCAT('name-', seq), seq * 0.25, seq % 2 = 0, "
                "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM s"
            )
        # MariaDB's Sequence engine: seq_1_to_N is a virtual table of the integers 1..N.
        return (
            f"INSERT INTO {table.name} ({_COLUMN_LIST}) "
            "SELECT seq, CONCAT('name-', seq), seq * 0.25, seq % 2 = 0, "
            "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND "
            f"FROM seq_1_to_{int(count)}"
        )

    async def create_filled(self, table: sa.Table, count: int) -> None:
        try:
            await self.scalar("SELECT count(*) FROM seq_1_to_1")
        except Exception:
            # MySQL has no Sequence engine: a recursive CTE, allowed deep enough.
            self._use_sequence = False
            await self.execute(f"SET SESSION cte_max_recursion_depth = {int(count) + 1}")
        await super().create_filled(table, count)

    async def analyze(self, table: sa.Table) -> None:
        await self.execute(f"ANALYZE TABLE {table.name}")


class SQLiteAdmin(Admin):
    def __init__(self, backend: BackendConfig, conn: aiosqlite.Connection) -> None:
        super().__init__(backend)
        self._conn = conn

    async def execute(self, sql: str) -> None:
        # Closing the cursor finishes the statement: one left pending (PRAGMA
        # journal_mode returns a row) makes a later DROP TABLE fail as "locked".
        async with self._conn.execute(sql):
            pass

    async def scalar(self, sql: str) -> Any:
        async with self._conn.execute(sql) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def close(self) -> None:
        await self._conn.close()

    async def server_version(self) -> str:
        return f"SQLite {await self.scalar('SELECT sqlite_version()')}"

    def generate_sql(self, table: sa.Table, count: int) -> str:
        # Datetimes as SQLAlchemy's SQLite dialect writes them: 'YYYY-MM-DD HH:MM:SS.ffffff'.
        return (
            "WITH RECURSIVE s(i) AS "
            f"(SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {int(count)}) "
            f"INSERT INTO {table.name} ({_COLUMN_LIST}) "
            "SELECT i, 'name-' || i, i * 0.25, i % 2 = 0, "
            "datetime('2024-01-01', '+' || i || ' seconds') || '.000000' FROM s"
        )

    async def reset_scratch(self) -> None:
        await self.execute(f"DELETE FROM {SCRATCH.name}")


async def open_admin(backend: BackendConfig) -> Admin:
    """Connect the admin connection of ``backend`` (autocommit; lock waits bounded)."""
    if backend.name == "postgresql":
        conn = await asyncpg.connect(
            host=backend.host,
            port=backend.port,
            user=backend.user,
            password=backend.password or None,
            database=backend.database,
        )
        await conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}s'")
        return PostgresAdmin(backend, conn)
    if backend.name == "mysql":
        conn = await aiomysql.connect(
            host=backend.host,
            port=backend.port,
            user=backend.user,
            password=backend.password,
            db=backend.database,
            autocommit=True,
            charset="utf8mb4",
        )
        admin = MySQLAdmin(backend, conn)
        await admin.execute(f"SET SESSION lock_wait_timeout = {_LOCK_TIMEOUT}")
        return admin
    if backend.name == "sqlite":
        sqlite_conn = await aiosqlite.connect(
            backend.database, isolation_level=None, timeout=_LOCK_TIMEOUT
        )
        # Persistent in the file: every contender's connections then use WAL, as
        # dbaccess sets for files.
        sqlite_admin = SQLiteAdmin(backend, sqlite_conn)
        await sqlite_admin.execute("PRAGMA journal_mode = wal")
        return sqlite_admin
    raise ValueError(f"unknown backend {backend.name!r}")
