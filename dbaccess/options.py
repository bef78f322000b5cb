"""Connection options: parse the URL's query string and keyword options once, strictly.

Every option is either understood by dbaccess (the table in README.md), understood by
the backend, or a keyword accepted by the driver's ``connect()``; anything else is a
:class:`~dbaccess.ConfigurationError` naming it, never silently ignored.
"""

from __future__ import annotations

import inspect
import math
import ssl as ssl_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "Options",
    "keyword_parameters",
    "parse_bool",
    "parse_int",
    "parse_options",
    "parse_seconds",
    "parse_ssl",
    "ssl_context",
]

Parser = Callable[[str, Any], Any]

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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
) -> Options:
    """Merge URL options and keywords (keywords win) into checked :class:`Options`.

    ``managed`` names driver arguments dbaccess sets itself (host, autocommit...): a
    keyword that would override one of them is refused, since it would break dbaccess.
    """
    parsers = {**COMMON_PARSERS, **backend_parsers}
    common: dict[str, Any] = {}
    backend: dict[str, Any] = {}
    driver: dict[str, Any] = {}

    sources: tuple[tuple[str, Mapping[str, Any]], ...] = (
        ("URL", url_options),
        ("keyword", keywords),
    )
    for source, given in sources:
        for name, value in given.items():
            parser = parsers.get(name)
            if parser is not None:
                target = common if name in COMMON_PARSERS else backend
                target[name] = parser(name, value)
            elif source == "keyword" and name not in managed and name in driver_keywords:
                driver[name] = value
            else:
                raise ConfigurationError(
                    _unknown_option(name, source, parsers, managed, backend_name)
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
    name: str, source: str, parsers: Mapping[str, Parser], managed: frozenset[str], backend: str
) -> str:
    if name in managed:
        return (
            f"{source} option {name!r} is managed by dbaccess on {backend} and cannot be set; "
            "put the host, user, password and database in the URL"
        )
    known = ", ".join(sorted(parsers))
    hint = "" if source == "URL" else " or a keyword argument of the driver's connect()"
    return f"unknown {source} option {name!r} for {backend}; expected one of: {known}{hint}"
