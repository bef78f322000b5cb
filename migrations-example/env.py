"""Alembic's environment: the application's URL, dbaccess's async drivers, both modes."""

import asyncio
import logging.config
import os

import sqlalchemy as sa
from alembic import context
from models import metadata
from sqlalchemy.ext.asyncio import create_async_engine

from dbaccess import sqlalchemy_url

config = context.config

if config.config_file_name is not None:
    # disable_existing_loggers=False: under dbaccess.migrate() this runs inside the
    # application, whose loggers must go on working afterwards.
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> sa.URL:
    """The URL the application gives Database(), converted for SQLAlchemy."""
    # dbaccess.migrate() hands its URL over; on the command line it is DATABASE_URL.
    url: str | None = config.attributes.get("dbaccess.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "set DATABASE_URL to the URL the application gives dbaccess.Database(), "
            "for example DATABASE_URL=sqlite:///notes.db"
        )
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    """Write the SQL to standard output instead of running it (`alembic upgrade --sql`)."""
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it; autogenerate then writes batch operations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # NullPool: one connection for the run, closed with it.
    engine = create_async_engine(database_url(), poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
