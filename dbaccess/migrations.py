"""Share the application's database URL with SQLAlchemy and Alembic, and run migrations.

A dbaccess URL (``postgresql://...``) names a database, not a SQLAlchemy driver: given to
SQLAlchemy as it is, it makes SQLAlchemy import psycopg2 or mysqlclient. This module is
the one place that knows how dbaccess's URLs and options translate into SQLAlchemy's, so
an Alembic ``env.py`` never repeats that surgery. It lives apart from ``url.py`` because
it speaks SQLAlchemy's engine vocabulary and Alembic's, which the rest of dbaccess never
needs: the query path compiles with SQLAlchemy's dialects but never builds an engine.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .backends import backend_class
from .backends.postgresql import host_lists
from .database import Database
from .errors import ConfigurationError
from .options import COMMON_ALIASES
from .replicas import split_options
from .url import DatabaseURL

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["migrate", "sqlalchemy_url"]

#: dbaccess scheme -> the SQLAlchemy driver name of the same async driver.
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres+psycopg": "postgresql+psycopg",
    "mysql": "mysql+aiomysql",
    "mysql+aiomysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
    "mariadb+aiomysql": "mariadb+aiomysql",
    "mysql+asyncmy": "mysql+asyncmy",
    "mariadb+asyncmy": "mariadb+asyncmy",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}

#: Functions turning an option's value, as the backend parsed it, into entries of the
#: SQLAlchemy URL's query string. Options missing here are dbaccess's own (pool sizes,
#: timeouts of statements, which a long migration must not hit) or change nothing a
#: migration relies on; they are dropped.
_Mapper = Callable[[Any], dict[str, str]]


def _as(key: str) -> _Mapper:
    return lambda value: {key: f"{value:g}" if isinstance(value, float) else str(value)}


def _whole_seconds(key: str) -> _Mapper:
    # PyMySQL's and libpq's connect_timeout are integers; round up so a short timeout
    # stays > 0.
    return lambda value: {} if value is None else {key: str(math.ceil(value))}


def _postgres_ssl(key: str) -> _Mapper:
    # asyncpg takes libpq's modes as ssl=, libpq as sslmode=; true/false are dbaccess's.
    # (A URL's ssl is a mode or a bool: an SSLContext can only be a keyword.)
    def mapper(value: bool | str) -> dict[str, str]:
        if isinstance(value, bool):
            return {key: "require" if value else "disable"}
        return {key: value}

    return mapper


def _mysql_ssl(value: bool | str) -> dict[str, str]:
    if value is False or value == "disable":
        return {}
    # SQLAlchemy's URL can only carry certificate paths for aiomysql/asyncmy, which need
    # an SSLContext; dropping the option would connect in clear text, so refuse.
    raise ConfigurationError(
        f"option ssl={value!r} cannot be carried by a SQLAlchemy URL for MySQL: give "
        "sqlalchemy_url() the URL without it and pass connect_args={'ssl': ssl_context} "
        "to create_async_engine()"
    )


def _asyncpg_statements(value: bool) -> dict[str, str]:
    # All a URL can say to SQLAlchemy's asyncpg dialect; it still names its statements
    # (docs/pgbouncer.md: run migrations on PostgreSQL itself).
    return {} if value else {"prepared_statement_cache_size": "0"}


_MYSQL: dict[str, _Mapper] = {
    "connect_timeout": _whole_seconds("connect_timeout"),
    "charset": _as("charset"),
    "unix_socket": _as("unix_socket"),
    "ssl": _mysql_ssl,
}

#: By the SQLAlchemy driver (each dialect reads its own names from the query string).
_OPTION_MAPS: dict[str, dict[str, _Mapper]] = {
    "postgresql+asyncpg": {
        "host": _as("host"),  # a Unix socket directory
        "ssl": _postgres_ssl("ssl"),
        "statement_cache_size": _as("prepared_statement_cache_size"),
        "prepared_statements": _asyncpg_statements,
        "target_session_attrs": _as("target_session_attrs"),
    },
    # libpq takes the query string: its own names only (psycopg's prepare_threshold is
    # a connect argument, not one of them).
    "postgresql+psycopg": {
        "host": _as("host"),
        "ssl": _postgres_ssl("sslmode"),
        "connect_timeout": _whole_seconds("connect_timeout"),
        "target_session_attrs": _as("target_session_attrs"),
    },
    "mysql+aiomysql": _MYSQL,
    "mariadb+aiomysql": _MYSQL,
    "mysql+asyncmy": _MYSQL,
    "mariadb+asyncmy": _MYSQL,
    "sqlite+aiosqlite": {
        "busy_timeout": _as("timeout"),
    },
}


def _several_hosts(url: DatabaseURL) -> dict[str, str]:
    """SQLAlchemy's form of several PostgreSQL hosts (2.0.18+, asyncpg and psycopg):
    ``?host=h1,h2&port=p1,p2``, the one of its two that takes IPv6 addresses."""
    version = tuple(int(part) for part in re.findall(r"\d+", sa.__version__)[:3])
    if version < (2, 0, 18):
        raise ConfigurationError(
            f"database URL {url.obscure_password!r} names several hosts, which SQLAlchemy "
            f"takes from version 2.0.18 on (this is {sa.__version__}); upgrade SQLAlchemy "
            "or give sqlalchemy_url() the URL of one host"
        )
    hosts, ports = host_lists(url) or ([], [])
    return {"host": ",".join(hosts), "port": ",".join(map(str, ports))}


def sqlalchemy_url(url: str | DatabaseURL) -> sa.engine.URL:
    """Return the SQLAlchemy URL for the async driver dbaccess uses with ``url``.

    ``postgresql://`` becomes ``postgresql+asyncpg://``, ``mysql://`` ``mysql+aiomysql://``
    (``mysql+asyncmy://`` stays on asyncmy), ``sqlite://`` ``sqlite+aiosqlite://``.
    Options are checked as ``Database(url)`` checks them; those SQLAlchemy knows under
    another name are renamed (``busy_timeout`` becomes ``timeout``...), dbaccess's own
    (``min_size``, ``max_size``, ``acquire_timeout``, ``command_timeout``...) are
    dropped, and so are the read replicas (``replicas=``...): migrations run on the
    primary. ``sqlite:///:memory:`` gives ``sqlite+aiosqlite:///:memory:``, a database
    that lives as long as one SQLAlchemy connection (enough for offline SQL or a
    comparison, not for a migration the application is meant to see).
    """
    parsed = DatabaseURL(url)
    try:
        drivername = _DRIVERS[parsed.scheme]
    except KeyError:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.scheme!r}; "
            f"supported schemes are: {', '.join(sorted(_DRIVERS))}"
        ) from None
    # Migrations run on the primary: the replicas' options are checked, then dropped.
    parsed, _, _ = split_options(parsed, {})
    # The backend parses the options exactly as Database(url) would: a typo fails here
    # too, with the same message, instead of vanishing in the conversion. What it parsed
    # (aliases such as sslmode= resolved) is what is converted.
    backend = backend_class(parsed)(parsed, {})
    options = backend.options
    aliases = {**COMMON_ALIASES, **backend.url_aliases}
    mappers = _OPTION_MAPS[drivername]
    query: dict[str, str] = {}
    for name in parsed.options:
        option = aliases[name][0] if name in aliases else name
        mapper = mappers.get(option)
        if mapper is not None:
            query.update(mapper(options.backend.get(option, getattr(options, option, None))))
    family = drivername.split("+")[0]
    database: str | None = parsed.database or None
    if family == "sqlite" and database in (None, ":memory:"):
        database = ":memory:"
    host, port = parsed.components.hostname, parsed.port
    if len(parsed.hosts) > 1:
        host, port = None, None
        query.update(_several_hosts(parsed))
    return sa.engine.URL.create(
        drivername,
        username=parsed.username,
        password=parsed.password,
        host=host,
        port=port,
        database=database,
        query=query,
    )


async def migrate(
    url: str | DatabaseURL | Database,
    *,
    config: str | os.PathLike[str] | Config = "alembic.ini",
    revision: str = "head",
) -> None:
    """Upgrade the database at ``url`` to ``revision`` with Alembic, from async code.

    ``config`` is the path of an ``alembic.ini`` (relative paths in it are resolved by
    Alembic from the current directory, as on the command line) or an Alembic
    ``Config``. The URL reaches ``env.py`` twice: as ``config.attributes["dbaccess.url"]``
    (the URL as given, for an ``env.py`` that calls :func:`sqlalchemy_url`, like the one
    of ``migrations-example/``) and as the ``sqlalchemy.url`` option, already converted
    (for the ``env.py`` that ``alembic init -t async`` writes).

    Alembic runs in a worker thread: an async ``env.py`` calls ``asyncio.run()``, which
    cannot run inside the caller's event loop. The caller's loop keeps serving while the
    migration runs; cancelling the caller does not stop the migration, which finishes
    (or fails) in its thread before this call returns.
    """
    try:
        from alembic import command
        from alembic.config import Config
    except ImportError as exc:
        raise ConfigurationError(
            "migrate() needs Alembic, which is not installed: pip install 'dbaccess[alembic]'"
        ) from exc

    database_url = url.url if isinstance(url, Database) else DatabaseURL(url)
    target = sqlalchemy_url(database_url)
    if target.get_backend_name() == "sqlite" and target.database == ":memory:":
        raise ConfigurationError(
            "cannot migrate sqlite:///:memory:: an in-memory database belongs to the "
            "connections that opened it, so Alembic's connection would migrate a database "
            "of its own; use a file (sqlite:///app.db), or metadata.create_all() in tests"
        )
    alembic_config = config if isinstance(config, Config) else Config(os.fspath(config))
    alembic_config.attributes["dbaccess.url"] = str(database_url)
    # ConfigParser reads '%' as interpolation: a password holding one must be doubled.
    rendered = target.render_as_string(hide_password=False).replace("%", "%%")
    alembic_config.set_main_option("sqlalchemy.url", rendered)
    thread = asyncio.ensure_future(asyncio.to_thread(command.upgrade, alembic_config, revision))
    # Shielded: the thread cannot be stopped, so a cancelled caller still waits for it
    # instead of returning while the schema is half changed.
    try:
        await asyncio.shield(thread)
    except asyncio.CancelledError:
        await _finish(thread)
        raise


async def _finish(thread: asyncio.Future[Any]) -> None:
    """Wait for a migration thread whose caller was cancelled, whatever it raises."""
    while not thread.done():
        try:
            await asyncio.shield(thread)
        except asyncio.CancelledError:
            continue
        except Exception:
            return
