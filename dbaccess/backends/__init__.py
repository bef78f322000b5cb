"""Backends by URL scheme, imported on first use so each driver stays an optional extra."""

from __future__ import annotations

import importlib

from ..errors import ConfigurationError
from ..url import DatabaseURL
from .base import Backend

__all__ = ["SUPPORTED_BACKENDS", "backend_class"]

_POSTGRES = ("dbaccess.backends.asyncpg:PostgresBackend", "postgresql", ("asyncpg",))
_PSYCOPG = ("dbaccess.backends.psycopg:PsycopgBackend", "psycopg", ("psycopg",))
_AIOMYSQL = ("dbaccess.backends.aiomysql:MySQLBackend", "mysql", ("aiomysql", "pymysql"))
_ASYNCMY = ("dbaccess.backends.asyncmy:AsyncmyBackend", "asyncmy", ("asyncmy",))
_SQLITE = ("dbaccess.backends.aiosqlite:SQLiteBackend", "sqlite", ("aiosqlite",))

#: URL scheme -> (backend import string, pip extra, driver packages).
SUPPORTED_BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "postgresql": _POSTGRES,
    "postgresql+asyncpg": _POSTGRES,
    "postgres": _POSTGRES,
    "postgresql+psycopg": _PSYCOPG,
    "postgres+psycopg": _PSYCOPG,
    "mysql": _AIOMYSQL,
    "mysql+aiomysql": _AIOMYSQL,
    "mariadb": _AIOMYSQL,
    "mariadb+aiomysql": _AIOMYSQL,
    "mysql+asyncmy": _ASYNCMY,
    "mariadb+asyncmy": _ASYNCMY,
    "sqlite": _SQLITE,
    "sqlite+aiosqlite": _SQLITE,
}


def backend_class(url: DatabaseURL) -> type[Backend]:
    """Import and return the backend class for a URL's scheme."""
    try:
        target, extra, drivers = SUPPORTED_BACKENDS[url.scheme]
    except KeyError:
        raise ConfigurationError(
            f"unsupported database URL scheme {url.scheme!r}; "
            f"supported schemes are: {', '.join(sorted(SUPPORTED_BACKENDS))}"
        ) from None
    if len(url.hosts) > 1 and extra not in ("postgresql", "psycopg"):
        # libpq's multi-host syntax: MySQL's drivers and SQLite know no such thing, and
        # connecting to the first host alone would hide the others' absence.
        raise ConfigurationError(
            f"database URL {url.obscure_password!r} names several hosts; only PostgreSQL "
            "URLs (postgresql://, postgresql+psycopg://) may"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in drivers:
            raise ConfigurationError(
                f"{url.scheme}:// URLs need the {drivers[0]} package, which is not "
                f"installed: pip install 'dbaccess[{extra}]'"
            ) from exc
        raise
    cls: type[Backend] = getattr(module, class_name)
    return cls
