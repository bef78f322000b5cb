"""create_all and drop_all: a MetaData's tables, indexes, sequences and (PostgreSQL) enum
types, created or dropped in dependency order through a dbaccess connection.

The DDL is SQLAlchemy's own (``CreateTable``, ``CreateIndex``...), compiled for the
backend's dialect like any other statement; which objects exist already (``checkfirst``)
is read from the server's catalog.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import CreateEnumType, DropEnumType
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import (
    AddConstraint,
    CreateIndex,
    CreateSequence,
    CreateTable,
    DropConstraint,
    DropSequence,
    DropTable,
    SetColumnComment,
    SetTableComment,
    sort_tables_and_constraints,
)

from .errors import InterfaceError

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["create_all", "drop_all"]

# Whether a table, view, sequence or enum type of this name exists; :schema None means
# the connection's default schema (database).
_TABLE_EXISTS = {
    "postgresql": (
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relname = :name "
        "AND n.nspname = coalesce(:schema, current_schema()) "
        "AND c.relkind IN ('r', 'p', 'f', 'v', 'm')"
    ),
    "mysql": (
        "SELECT 1 FROM information_schema.tables WHERE table_name = :name "
        "AND table_schema = coalesce(:schema, DATABASE())"
    ),
}
_SEQUENCE_EXISTS = {
    "postgresql": (
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relname = :name "
        "AND n.nspname = coalesce(:schema, current_schema()) AND c.relkind = 'S'"
    ),
    "mysql": (  # MariaDB's sequences are tables of type SEQUENCE
        "SELECT 1 FROM information_schema.tables WHERE table_name = :name "
        "AND table_schema = coalesce(:schema, DATABASE()) AND table_type = 'SEQUENCE'"
    ),
}
_ENUM_EXISTS = (
    "SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n "
    "ON n.oid = t.typnamespace WHERE t.typname = :name "
    "AND n.nspname = coalesce(:schema, current_schema()) AND t.typtype = 'e'"
)


async def create_all(
    connection: Connection, dialect: Dialect, metadata: sa.MetaData, checkfirst: bool
) -> None:
    """Create the tables of ``metadata`` (with their indexes, sequences and enum types)."""
    _check_metadata(metadata, "create_all")
    catalog = _Catalog(connection, dialect)
    # (Not metadata.sorted_tables: it warns about cycles, which are handled below.)
    tables = [
        table
        for table in metadata.tables.values()
        if not (checkfirst and await catalog.has_table(table))
    ]
    for enum in _enum_types(tables, dialect):
        if not (checkfirst and await catalog.has_enum(enum)):
            await connection.execute(CreateEnumType(enum))
    for sequence in _sequences(tables, dialect):
        if not (checkfirst and await catalog.has_sequence(sequence)):
            await connection.execute(CreateSequence(sequence))
    # Tables that refer to each other in a cycle: the foreign keys that close the cycle
    # are added once both tables exist (SQLite, which cannot ALTER, keeps them inline:
    # it checks them only when rows are written).
    order: list[tuple[sa.Table | None, Any]] = sort_tables_and_constraints(tables)  # type: ignore[no-untyped-call]
    for table, constraints in order:
        if table is None:
            if dialect.supports_alter:
                for constraint in constraints:
                    await connection.execute(AddConstraint(constraint))
            continue
        inline = constraints if dialect.supports_alter else None
        await connection.execute(CreateTable(table, include_foreign_key_constraints=inline))
        if dialect.supports_comments and not dialect.inline_comments:
            if table.comment is not None:
                await connection.execute(SetTableComment(table))
            for column in table.columns:
                if column.comment is not None:
                    await connection.execute(SetColumnComment(column))
        for index in sorted(table.indexes, key=lambda index: index.name or ""):
            await connection.execute(CreateIndex(index))


async def drop_all(
    connection: Connection, dialect: Dialect, metadata: sa.MetaData, checkfirst: bool
) -> None:
    """Drop the tables of ``metadata`` (with their sequences and enum types)."""
    _check_metadata(metadata, "drop_all")
    catalog = _Catalog(connection, dialect)
    tables = [
        table
        for table in metadata.tables.values()
        if not checkfirst or await catalog.has_table(table)
    ]
    order: list[tuple[sa.Table | None, Any]] = sort_tables_and_constraints(tables)  # type: ignore[no-untyped-call]
    order.reverse()
    for table, constraints in order:
        if table is None:
            # The foreign keys of a cycle go first, so that each table can be dropped.
            if dialect.supports_alter:
                for constraint in constraints:
                    if constraint.name is None:
                        raise InterfaceError(
                            f"cannot drop the tables {constraint.table.name!r} and "
                            f"{constraint.referred_table.name!r}, which refer to each "
                            "other: name their foreign key (ForeignKey(..., name=...)) so "
                            "that it can be dropped first"
                        )
                    await connection.execute(DropConstraint(constraint))
            elif constraints and dialect.name == "sqlite":
                # SQLite drops a table by deleting its rows, which the other table of
                # the cycle still refers to: check foreign keys at COMMIT, when both
                # are gone. The pragma ends with the transaction, so no session state
                # outlives it (hence its function form, which dbaccess does not count
                # as a change of session).
                await connection.execute("PRAGMA defer_foreign_keys(ON)")
            continue
        await connection.execute(DropTable(table))
    for sequence in _sequences(tables, dialect):
        if not checkfirst or await catalog.has_sequence(sequence):
            await connection.execute(DropSequence(sequence))
    for enum in _enum_types(tables, dialect):
        if not checkfirst or await catalog.has_enum(enum):
            await connection.execute(DropEnumType(enum))


def _check_metadata(metadata: Any, action: str) -> None:
    if not isinstance(metadata, sa.MetaData):
        raise InterfaceError(
            f"{action}() takes a sqlalchemy MetaData, not {type(metadata).__name__}"
        )


class _Catalog:
    """Which schema objects exist, asked of the server."""

    def __init__(self, connection: Connection, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    async def _exists(self, sql: str, name: str, schema: str | None) -> bool:
        values = {"name": name, "schema": schema}
        return await self._connection.fetch_val(sql, values) is not None

    async def has_table(self, table: sa.Table) -> bool:
        if self._dialect.name == "sqlite":
            # Another attached database's tables are listed in its own sqlite_master.
            master = "sqlite_master"
            if table.schema is not None:
                schema = self._dialect.identifier_preparer.quote_identifier(table.schema)
                master = f"{schema}.sqlite_master"
            sql = f"SELECT 1 FROM {master} WHERE type IN ('table', 'view') AND name = :name"
            return await self._connection.fetch_val(sql, {"name": table.name}) is not None
        return await self._exists(_TABLE_EXISTS[self._dialect.name], table.name, table.schema)

    async def has_sequence(self, sequence: sa.Sequence) -> bool:
        sql = _SEQUENCE_EXISTS[self._dialect.name]
        return await self._exists(sql, sequence.name, sequence.schema)

    async def has_enum(self, enum: sa.Enum) -> bool:
        return await self._exists(_ENUM_EXISTS, str(enum.name), enum.schema)


def _column_types(tables: list[sa.Table]) -> Iterator[Any]:
    """The types of the tables' columns, the types inside arrays and decorators too."""
    for table in tables:
        for column in table.columns:
            type_: Any = column.type
            while True:
                yield type_
                if isinstance(type_, sa.types.TypeDecorator):
                    type_ = type_.impl_instance
                elif isinstance(type_, sa.ARRAY):
                    type_ = type_.item_type
                else:
                    break


def _enum_types(tables: list[sa.Table], dialect: Dialect) -> list[sa.Enum]:
    """The named enum types the tables use, where they are types of their own
    (PostgreSQL), once each; not those declared with ``create_type=False``."""
    if dialect.name != "postgresql":
        return []  # MySQL's ENUM is a column type; elsewhere, a string with a CHECK
    found: dict[tuple[str | None, str], sa.Enum] = {}
    for type_ in _column_types(tables):
        if (
            isinstance(type_, sa.Enum)
            and type_.native_enum
            and type_.name is not None
            and getattr(type_, "create_type", True)
        ):
            found.setdefault((type_.schema, str(type_.name)), type_)
    return list(found.values())


def _sequences(tables: list[sa.Table], dialect: Dialect) -> list[sa.Sequence]:
    """The sequences the tables' columns draw from, where the backend has sequences."""
    if not dialect.supports_sequences:
        return []
    found: dict[tuple[str | None, str], sa.Sequence] = {}
    for table in tables:
        for column in table.columns:
            default = column.default
            if isinstance(default, sa.Sequence) and not default.optional:
                found.setdefault((default.schema, default.name), default)
    return list(found.values())
