"""The benchmark tables, the SQL text each parameter style needs, and generated rows."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import sqlalchemy as sa

__all__ = [
    "BIG",
    "COLUMNS",
    "ITEMS",
    "SCRATCH",
    "ParamStyle",
    "insert_sql",
    "metadata",
    "point_sql",
    "scratch_rows",
    "select_all_sql",
    "sqlite_datetime",
]

metadata = sa.MetaData()


def _table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("flag", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


#: The table the read workloads query (``Sizes.rows`` rows).
ITEMS = _table("bench_items")
#: Emptied before each run of execute_many and transactions, which insert into it.
SCRATCH = _table("bench_scratch")
#: Streamed by the --memory mode (``Sizes.memory_rows`` rows).
BIG = _table("bench_big")

COLUMNS = ("id", "name", "value", "flag", "created_at")
_COLUMN_LIST = ", ".join(COLUMNS)

#: named: ``:id`` (dbaccess, databases, SQLAlchemy text()); dollar: asyncpg's ``$1``;
#: format: aiomysql's ``%s``; qmark: sqlite3's ``?``.
ParamStyle = Literal["named", "dollar", "format", "qmark"]


def _placeholders(style: ParamStyle, names: tuple[str, ...]) -> list[str]:
    if style == "named":
        return [f":{name}" for name in names]
    if style == "dollar":
        return [f"${position}" for position in range(1, len(names) + 1)]
    if style == "format":
        return ["%s"] * len(names)
    return ["?"] * len(names)


def point_sql(table: sa.Table, style: ParamStyle) -> str:
    """SELECT one row by primary key."""
    (placeholder,) = _placeholders(style, ("id",))
    return f"SELECT {_COLUMN_LIST} FROM {table.name} WHERE id = {placeholder}"


def select_all_sql(table: sa.Table) -> str:
    return f"SELECT {_COLUMN_LIST} FROM {table.name}"


def insert_sql(table: sa.Table, style: ParamStyle) -> str:
    values = ", ".join(_placeholders(style, COLUMNS))
    return f"INSERT INTO {table.name} ({_COLUMN_LIST}) VALUES ({values})"


_EPOCH = datetime.datetime(2024, 1, 1)


def scratch_rows(count: int) -> list[dict[str, Any]]:
    """Rows to insert into the scratch table: the same values the servers generate for
    the read tables (see ``dataset``)."""
    return [
        {
            "id": i,
            "name": f"name-{i}",
            "value": i * 0.25,
            "flag": i % 2 == 0,
            "created_at": _EPOCH + datetime.timedelta(seconds=i),
        }
        for i in range(1, count + 1)
    ]


def sqlite_datetime(value: datetime.datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it (raw aiosqlite has no
    datetime conversion: the raw contender binds this string)."""
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"
