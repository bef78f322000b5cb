"""Connection options: parse the URL's query string and keyword options once, strictly.

Every option is either understood by dbaccess (the table in README.md), understood by
the backend, or a keyword accepted by the driver's ``connect()``; anything else is a
:class:`~dbaccess.ConfigurationError` naming it, never silently ignored.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "COMMON_ALIASES",
    "Hook",
    "Options",
    "keyword_parameters",
    "parse_bool",
    "parse_hook",
    "parse_int",
    "parse_options",
    "parse_seconds",
    "parse_ssl",
    "parse_target_session_attrs",
    "ssl_context",
]

Parser = Callable[[str, Any], Any]

#: A pool hook: called with the driver's own connection, awaited when it returns an awaitable.
Hook = Callable[[Any], "Awaitable[Any] | None"]

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

#: libpq's target_session_attrs (PostgreSQL 14+), which asyncpg 0.28+ takes too.
TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"option {name}={value!r} is not a boolean (true or false)")


def parse_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"option {name}={value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name}={value!r} is not an integer") from None
    if number < minimum:
        raise ConfigurationError(f"option {name}={value!r} must be at least {minimum}")
    return number


def parse_seconds(name: str, value: Any) -> float | None:
    """Parse a duration in seconds; ``none`` (or None) means no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"option {name}={value!r} is not a number of seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name}={value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"option {name}={value!r} must be a positive number of seconds")
    return seconds


def parse_hook(name: str, value: Any) -> Hook | None:
    """A coroutine function taking the driver's connection (keywords only: a URL holds text)."""
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigurationError(
            f"option {name} must be a coroutine function passed as a keyword argument "
            f"(Database(url, {name}=...)), not text such as {value!r}"
        )
    if not callable(value):
        raise ConfigurationError(
            f"option {name}={value!r} is not callable: it must be a coroutine function "
            "taking the driver's connection"
        )
    hook: Hook = value
    return hook


def parse_recycle(name: str, value: Any) -> float | None:
    """aiomysql's ``pool_recycle``: seconds, where -1 (its default) means never."""
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError, ValueError):
            if float(value) == -1:
                return None
    return parse_seconds(name, value)


def parse_inactive_lifetime(name: str, value: Any) -> float | None:
    """asyncpg's ``max_inactive_connection_lifetime``: seconds, where 0 means never."""
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError, ValueError):
            if float(value) == 0:
                return None
    return parse_seconds(name, value)


def parse_ssl(name: str, value: Any) -> bool | str | ssl_module.SSLContext:
    """``true``/``false``, a libpq-style mode, or an :class:`ssl.SSLContext`."""
    if isinstance(value, (bool, ssl_module.SSLContext)):
        return value
    text = str(value).strip().lower()
    if text in SSL_MODES:
        return text
    try:
        return parse_bool(name, text)
    except ConfigurationError:
        raise ConfigurationError(
            f"option {name}={value!r} must be true, false, an SSLContext or one of "
            f"{', '.join(SSL_MODES)}"
        ) from None


def parse_target_session_attrs(name: str, value: Any) -> str:
    """Which of a URL's hosts to connect to: one of :data:`TARGET_SESSION_ATTRS`."""
    text = str(value).strip().lower()
    if text in TARGET_SESSION_ATTRS:
        return text
    close = difflib.get_close_matches(text, TARGET_SESSION_ATTRS, n=1, cutoff=0.5)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigurationError(
        f"option {name}={value!r} is not a session attribute{guess} "
        f"(expected one of: {', '.join(TARGET_SESSION_ATTRS)})"
    )


def ssl_context(mode: bool | str | ssl_module.SSLContext) -> ssl_module.SSLContext | None:
    """Turn an ``ssl`` option into a context, for drivers that only take contexts."""
    if isinstance(mode, ssl_module.SSLContext):
        return mode
    if mode in (False, "disable"):
        return None
    if mode in ("allow", "prefer"):
        raise ConfigurationError(f"ssl={mode!r} is only supported on PostgreSQL")
    context = ssl_module.create_default_context()
    if mode in (True, "require"):
        # Like libpq's `require`: encrypted, but the certificate is not verified.
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


#: Options every backend understands, with their defaults.
COMMON_PARSERS: dict[str, Parser] = {
    "min_size": lambda n, v: parse_int(n, v, minimum=0),
    "max_size": lambda n, v: parse_int(n, v, minimum=1),
    "acquire_timeout": parse_seconds,
    "connect_timeout": parse_seconds,
    "command_timeout": parse_seconds,
    "ssl": parse_ssl,
    "init": parse_hook,
    "setup": parse_hook,
    "max_lifetime": parse_seconds,
    "max_idle": parse_seconds,
    "max_queries": lambda n, v: None if v is None else parse_int(n, v, minimum=1),
}

#: Other names for common options (the drivers' pools' and encode/databases'): name ->
#: (the dbaccess name, the parser of the value as the other name means it).
COMMON_ALIASES: dict[str, tuple[str, Parser]] = {
    # aiomysql's and asyncmy's pool arguments.
    "minsize": ("min_size", COMMON_PARSERS["min_size"]),
    "maxsize": ("max_size", COMMON_PARSERS["max_size"]),
    # aiomysql measures it from the connection's last use: a connection idle that long is
    # older than that too, so max_lifetime replaces at least every one aiomysql would.
    "pool_recycle": ("max_lifetime", parse_recycle),
    # asyncpg's pool arguments.
    "max_inactive_connection_lifetime": ("max_idle", parse_inactive_lifetime),
}

#: Names other libraries use for what dbaccess calls otherwise, for the error message.
_FOREIGN_NAMES = {
    "pool_size": "max_size",
    "max_overflow": "max_size",
    "pool_timeout": "acquire_timeout",
    "pool_max_idle": "max_idle",
    "idle_timeout": "max_idle",
    "max_age": "max_lifetime",
    # PgBouncer's transaction mode needs a driver that prepares nothing it reuses.
    "pgbouncer": "prepared_statements",
    "prepare_threshold": "prepared_statements",
}


@dataclass(frozen=True)
class Options:
    """What a backend needs to open and pool connections."""

    min_size: int = 1
    max_size: int = 10
    acquire_timeout: float | None = None
    connect_timeout: float | None = 10.0
    command_timeout: float | None = None
    ssl: bool | str | ssl_module.SSLContext | None = None
    #: Called with the driver's connection once, when the pool opens it.
    init: Hook | None = None
    #: Called with the driver's connection each time the pool lends it.
    setup: Hook | None = None
    #: Seconds after its opening when a connection is replaced (when next idle).
    max_lifetime: float | None = None
    #: Seconds a connection may sit idle in the pool before it is closed.
    max_idle: float | None = None
    #: Queries after which a connection is replaced (when next idle).
    max_queries: int | None = None
    #: Options specific to the backend, already parsed.
    backend: dict[str, Any] = field(default_factory=dict)
    #: Keyword options handed to the driver's ``connect()`` untouched.
    driver: dict[str, Any] = field(default_factory=dict)


def parse_options(
    url_options: Mapping[str, str],
    keywords: Mapping[str, Any],
    *,
    backend_parsers: Mapping[str, Parser],
    driver_keywords: frozenset[str],
    managed: frozenset[str],
    backend_name: str,
    backend_aliases: Mapping[str, tuple[str, Parser]] | None = None,
) -> Options:
    """Merge URL options and keywords (keywords win) into checked :class:`Options`.

    ``managed`` names driver arguments dbaccess sets itself (host, autocommit...): a
    keyword that would override one of them is refused, since it would break dbaccess.
    An alias (``maxsize``, ``pool_recycle``...) counts as the option it names; giving both
    in the same place is refused, since one of them would be silently dropped.
    """
    parsers = {**COMMON_PARSERS, **backend_parsers}
    aliases = {**COMMON_ALIASES, **(backend_aliases or {})}
    common: dict[str, Any] = {}
    backend: dict[str, Any] = {}
    driver: dict[str, Any] = {}

    sources: tuple[tuple[str, Mapping[str, Any]], ...] = (
        ("URL", url_options),
        ("keyword", keywords),
    )
    for source, given in sources:
        spelled: dict[str, str] = {}  # option -> how this source spelled it
        for name, value in given.items():
            option, parser = name, parsers.get(name)
            if name in aliases:
                option, parser = aliases[name]
            if parser is not None:
                if option in spelled:
                    raise ConfigurationError(
                        f"{source} options {spelled[option]!r} and {name!r} mean the same "
                        "thing; give only one of them"
                    )
                spelled[option] = name
                target = common if option in COMMON_PARSERS else backend
                target[option] = parser(name, value)
            elif source == "keyword" and name not in managed and name in driver_keywords:
                driver[name] = value
            else:
                candidates = {*parsers, *aliases}
                if source == "keyword":
                    candidates |= driver_keywords - managed
                raise ConfigurationError(
                    _unknown_option(name, source, parsers, candidates, managed, backend_name)
                )

    options = Options(**common, backend=backend, driver=driver)
    if options.min_size > options.max_size:
        raise ConfigurationError(
            f"option min_size={options.min_size} is larger than max_size={options.max_size}"
        )
    return options


def keyword_parameters(function: Callable[..., Any]) -> frozenset[str]:
    """The keyword arguments a driver's ``connect()`` accepts."""
    parameters = inspect.signature(function).parameters.values()
    return frozenset(
        p.name
        for p in parameters
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "loop"
    )


def _unknown_option(
    name: str,
    source: str,
    parsers: Mapping[str, Parser],
    candidates: set[str],
    managed: frozenset[str],
    backend: str,
) -> str:
    if name in managed:
        return (
            f"{source} option {name!r} is managed by dbaccess on {backend} and cannot be set; "
            "put the host, user, password and database in the URL"
        )
    known = ", ".join(sorted(parsers))
    hint = "" if source == "URL" else " or a keyword argument of the driver's connect()"
    nearest = _FOREIGN_NAMES.get(name.lower())
    if nearest is None or nearest not in candidates:
        close = difflib.get_close_matches(name.lower(), sorted(candidates), n=1, cutoff=0.6)
        nearest = close[0] if close else None
    guess = f"; did you mean {nearest!r}?" if nearest else ""
    return f"unknown {source} option {name!r} for {backend}{guess} (expected one of: {known}{hint})"
