"""The schema of a test database: create a MetaData's tables, run Alembic's
migrations, or empty the tables again after a test that could not be rolled back."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..database import Database
from ..errors import ConfigurationError
from ..url import DatabaseURL

__all__ = ["clear_tables", "create_tables", "list_tables", "run_alembic", "run_schema"]

#: Alembic's own table: emptying it would make the migrations run again on a schema
#: they already built.
ALEMBIC_VERSION_TABLE = "alembic_version"

#: The asyncio drivers of SQLAlchemy's dialects, which a project using dbaccess has
#: installed (they are dbaccess's drivers), as Alembic's ``async`` template expects.


def _dialect(url: DatabaseURL) -> str:
    name = url.dialect
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


def _ddl_for(metadata: sa.MetaData, dialect: str) -> list[Any]:
    """The DDL elements (types, tables, indexes) ``create_all`` emits on a dialect."""
    statements: list[Any] = []
    # A mock engine needs only the dialect, not its driver: it hands over each element
    # create_all would run, in dependency order.
    engine = sa.create_mock_engine(
        sa.engine.make_url(f"{dialect}://"),
        lambda statement, *args, **kwargs: statements.append(statement),
    )
    metadata.create_all(engine, checkfirst=False)
    return statements


async def create_tables(database: Database, metadata: sa.MetaData) -> None:
    """Create a MetaData's tables, indexes and types (PostgreSQL enums) in a database."""
    for statement in _ddl_for(metadata, _dialect(database.url)):
        await database.execute(statement)


async def run_schema(database: Database, schema: Any) -> None:
    """Build a schema: a MetaData's tables, or a callable given ``database`` (awaited
    when it returns an awaitable)."""
    if isinstance(schema, sa.MetaData):
        await create_tables(database, schema)
    elif callable(schema):
        outcome = schema(database)
        if inspect.isawaitable(outcome):
            await outcome
    else:
        raise ConfigurationError(
            f"cannot build a test schema from {schema!r}: expected a sqlalchemy.MetaData, "
            "or a callable taking the test Database"
        )


def run_alembic(url: DatabaseURL, alembic_ini: str | Path, revision: str = "head") -> None:
    """Run Alembic's ``upgrade`` to ``revision`` on the database at ``url``.

    Synchronous, and never from a running event loop: Alembic's ``async`` template
    runs its own. ``env.py`` reads the URL from ``sqlalchemy.url`` (set here to
    the SQLAlchemy form) or the dbaccess URL from ``config.attributes["dbaccess_url"]``.
    """
    try:
        from alembic import command
        from alembic.config import Config
    except ImportError:
        raise ConfigurationError(
            "dbaccess_alembic_ini is set but Alembic is not installed: pip install alembic"
        ) from None
    path = Path(alembic_ini)
    if not path.is_file():
        raise ConfigurationError(f"dbaccess_alembic_ini: no such file {str(path)!r}")
    config = Config(str(path))
    # configparser interpolates '%': a password holding one must be written '%%'.
    from ..migrations import sqlalchemy_url

    rendered = sqlalchemy_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    config.attributes["dbaccess_url"] = str(url)
    command.upgrade(config, revision)


async def list_tables(database: Database) -> list[str]:
    """The names of the tables in the database's current schema, Alembic's left out."""
    dialect = _dialect(database.url)
    if dialect == "postgresql":
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    elif dialect == "mysql":
        query = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
        )
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    names = [str(row[0]) for row in await database.fetch_all(query)]
    return sorted(name for name in names if name != ALEMBIC_VERSION_TABLE)


def _quoter(dialect: str) -> Callable[[str], str]:
    sa_dialect = sa.engine.make_url(f"{dialect}://").get_dialect()()
    return sa_dialect.identifier_preparer.quote


async def clear_tables(database: Database, tables: Iterable[str] | None = None) -> None:
    """Delete every row of the given tables (by default all of :func:`list_tables`),
    whatever their foreign keys, and restart their id sequences."""
    names = sorted(set(tables)) if tables is not None else await list_tables(database)
    if not names:
        return
    dialect = _dialect(database.url)
    quoted = [_quoter(dialect)(name) for name in names]
    if dialect == "postgresql":
        await database.execute(f"TRUNCATE {', '.join(quoted)} RESTART IDENTITY CASCADE")
        return
    async with database.connection():
        if dialect == "mysql":
            # Foreign keys between the tables would refuse TRUNCATE in most orders; the
            # setting is this connection's only, and dbaccess resets it when it goes back.
            await database.execute("SET FOREIGN_KEY_CHECKS = 0")
            for name in quoted:
                await database.execute(f"TRUNCATE TABLE {name}")
            return
        async with database.transaction():
            # Foreign keys are checked at commit, when every table is empty.
            await database.execute("PRAGMA defer_foreign_keys = ON")
            for name in quoted:
                await database.execute(f"DELETE FROM {name}")
            if await database.fetch_val(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"
            ):
                for name in names:
                    await database.execute(
                        "DELETE FROM sqlite_sequence WHERE name = :name", {"name": name}
                    )
