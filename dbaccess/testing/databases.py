"""Throw-away test databases: name one per pytest-xdist worker, create it on a server
(dropping a leftover of a crashed run first), and drop it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..database import Database
from ..errors import ConfigurationError
from ..url import DatabaseURL

__all__ = ["create_database", "database_exists", "drop_database", "worker_database_url"]

#: Names we create and drop on a server: plain identifiers, so no quoting can go wrong.
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: PostgreSQL cuts identifiers at 63 bytes and MySQL refuses names over 64 characters.
_MAX_NAME = 63
#: The database a PostgreSQL server always has, to create and drop the others from.
POSTGRES_MAINTENANCE_DATABASE = "postgres"


def _dialect(url: DatabaseURL) -> str:
    name = url.dialect
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


def worker_database_url(
    server_url: str | DatabaseURL, *, worker: str | None = None, directory: str | Path = "."
) -> DatabaseURL:
    """Return the URL of the test database for this pytest-xdist worker on a server.

    On PostgreSQL and MySQL/MariaDB the name is the server URL's database name (or
    ``dbaccess``) followed by ``_test`` and, under pytest-xdist, ``_<worker>``; on
    SQLite the database is ``<directory>/test[_<worker>].db``. ``worker`` defaults to
    ``PYTEST_XDIST_WORKER``.
    """
    url = DatabaseURL(server_url)
    if worker is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    suffix = f"_{worker}" if worker else ""
    if _dialect(url) == "sqlite":
        return url.replace(database=str(Path(directory) / f"test{suffix}.db"))
    name = f"{url.database or 'dbaccess'}_test{suffix}"
    _check_name(name, url)
    return url.replace(database=name)


def _check_name(name: str, url: DatabaseURL) -> None:
    if not _SAFE_NAME.match(name) or len(name) > _MAX_NAME:
        raise ConfigurationError(
            f"cannot use {name!r} as a test database name (from {url.obscure_password!r}): "
            f"it must be letters, digits and underscores, at most {_MAX_NAME} characters"
        )


def _server_name(url: DatabaseURL) -> str:
    name = url.database
    _check_name(name, url)
    return name


def _maintenance_url(url: DatabaseURL) -> DatabaseURL:
    # The pool of a maintenance connection needs one connection at most.
    options = {**url.options, "min_size": "1", "max_size": "1"}
    if _dialect(url) == "postgresql":
        return url.replace(database=POSTGRES_MAINTENANCE_DATABASE, options=options)
    return url.replace(database="", options=options)  # MySQL: no database selected


def _sqlite_files(url: DatabaseURL) -> list[Path]:
    path = Path(url.database)
    return [path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))]


async def database_exists(url: str | DatabaseURL) -> bool:
    """Whether the database that ``url`` names exists on its server (or as a file)."""
    url = DatabaseURL(url)
    if _dialect(url) == "sqlite":
        return _sqlite_files(url)[0].exists()
    name = _server_name(url)
    async with Database(_maintenance_url(url)) as server:
        if _dialect(url) == "postgresql":
            query = "SELECT count(*) FROM pg_database WHERE datname = :name"
            return bool(await server.fetch_val(query, {"name": name}))
        return await _mysql_has(server, name)


async def _mysql_has(server: Database, name: str) -> bool:
    query = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name"
    return bool(await server.fetch_val(query, {"name": name}))


async def create_database(url: str | DatabaseURL) -> None:
    """Create the (empty) database that ``url`` names, dropping any database of that
    name first: the leftover of an earlier run that crashed before dropping it."""
    url = DatabaseURL(url)
    await drop_database(url)
    if _dialect(url) == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return  # SQLite creates the file on the first connection
    name = _server_name(url)
    async with Database(_maintenance_url(url)) as server:
        if _dialect(url) == "postgresql":
            await server.execute(f'CREATE DATABASE "{name}"')
        else:
            await server.execute(f"CREATE DATABASE `{name}`")


async def drop_database(url: str | DatabaseURL) -> None:
    """Drop the database that ``url`` names, if it exists, ending its sessions first."""
    url = DatabaseURL(url)
    if _dialect(url) == "sqlite":
        for path in _sqlite_files(url):
            path.unlink(missing_ok=True)
        return
    name = _server_name(url)
    async with Database(_maintenance_url(url)) as server:
        if _dialect(url) == "mysql":
            # Asked first: the drivers turn the note of DROP DATABASE IF EXISTS about a
            # missing database into a Python warning, an error under filterwarnings=error.
            if await _mysql_has(server, name):
                await server.execute(f"DROP DATABASE `{name}`")
            return
        version = int(await server.fetch_val("SHOW server_version_num"))
        if version >= 130000:
            # Ends the sessions still connected (a crashed run's, an app's) and drops
            # the database in one statement, with no window for a new session.
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        await server.fetch_all(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()",
            {"name": name},
        )
        await server.execute(f'DROP DATABASE IF EXISTS "{name}"')
