"""DatabaseURL: parse and rebuild the URLs that name a database."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from sqlalchemy.engine import URL as SQLAlchemyURL

from .errors import ConfigurationError

__all__ = ["DatabaseURL"]

_OBSCURED = "********"


class DatabaseURL:
    """A database URL such as ``postgresql://user:secret@localhost:5432/app?min_size=2``.

    ``str(url)`` is the URL as given (password included, so it can be handed to other
    tools such as Alembic); ``repr(url)`` and :attr:`obscure_password` hide the password.
    A SQLAlchemy ``URL`` (``sqlalchemy.engine.make_url(...)``) is accepted too.

    PostgreSQL URLs may name several hosts in libpq's style,
    ``postgresql://h1:5432,h2:5433,[::1]/app``: :attr:`hosts` lists them, and
    :attr:`hostname` and :attr:`port` are the first one's.
    """

    __slots__ = ("_components", "_hosts", "_options", "_url")

    _url: str

    def __init__(self, url: str | DatabaseURL | SQLAlchemyURL) -> None:
        url = _url_text(url)
        self._url = url
        try:
            self._components = urlsplit(url)
            self._hosts = _host_list(self._components.netloc)
            if self._hosts is None:
                self._components.port  # noqa: B018 - urlsplit checks the port lazily
        except ValueError as exc:
            raise ConfigurationError(f"malformed database URL {_obscure(url)!r}: {exc}") from None
        if not self._components.scheme or "://" not in url:
            raise ConfigurationError(
                f"malformed database URL {_obscure(url)!r}: expected "
                "'scheme://[user[:password]@]host[:port]/database[?options]'"
            )
        if "\x00" in url:
            raise ConfigurationError("malformed database URL: it contains a NUL byte")
        self._options: dict[str, str] | None = None

    @property
    def components(self) -> SplitResult:
        return self._components

    @property
    def scheme(self) -> str:
        return self._components.scheme

    @property
    def dialect(self) -> str:
        return self.scheme.split("+", 1)[0]

    @property
    def driver(self) -> str:
        return self.scheme.split("+", 1)[1] if "+" in self.scheme else ""

    @property
    def userinfo(self) -> bytes | None:
        username = self._components.username
        if not username:
            return None
        info = username
        if self._components.password:
            info += ":" + self._components.password
        return info.encode("utf-8")

    @property
    def username(self) -> str | None:
        username = self._components.username
        return None if username is None else unquote(username)

    @property
    def password(self) -> str | None:
        password = self._components.password
        return None if password is None else unquote(password)

    @property
    def hostname(self) -> str | None:
        if self._hosts is not None:
            return self._hosts[0][0]
        return (
            self._components.hostname or self.options.get("host") or self.options.get("unix_sock")
        )

    @property
    def port(self) -> int | None:
        return self._components.port if self._hosts is None else self._hosts[0][1]

    @property
    def hosts(self) -> tuple[tuple[str, int | None], ...]:
        """The ``(host, port)`` pairs of the URL's host part, in order (port None when
        not given); empty when it names no host."""
        if self._hosts is not None:
            return self._hosts
        hostname = self._components.hostname
        return () if not hostname else ((hostname, self._components.port),)

    @property
    def netloc(self) -> str:
        return self._components.netloc

    @property
    def database(self) -> str:
        path = self._components.path
        return unquote(path[1:] if path.startswith("/") else path)

    @property
    def options(self) -> dict[str, str]:
        if self._options is None:
            query = self._components.query
            try:
                pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
            except ValueError:
                raise ConfigurationError(
                    f"malformed options in database URL {self.obscure_password!r}: "
                    "expected 'name=value' pairs joined by '&'"
                ) from None
            self._options = dict(pairs)
        return self._options

    def replace(self, **kwargs: Any) -> DatabaseURL:
        """Return a copy with some parts replaced.

        Accepts ``scheme``, ``dialect``, ``driver``, ``username``, ``password``,
        ``hostname``, ``port``, ``hosts`` (``(host, port)`` pairs), ``database`` and
        ``options`` (a mapping).
        """
        several = self._hosts is not None
        parts: dict[str, Any] = {
            "scheme": self.scheme,
            "username": self._components.username,
            "password": self._components.password,
            "hostname": None if several else self._components.hostname,
            "port": None if several else self._components.port,
            "path": self._components.path,
            "query": self._components.query,
        }
        unknown = set(kwargs) - {*parts, "dialect", "driver", "database", "options", "hosts"}
        if unknown:
            raise TypeError(f"replace() got unexpected parts: {', '.join(sorted(unknown))}")
        hosts = self._hosts
        if "hosts" in kwargs:
            if "hostname" in kwargs or "port" in kwargs:
                raise TypeError("replace() takes hosts= or hostname= and port=, not both")
            hosts = tuple((str(host), port) for host, port in kwargs.pop("hosts"))
            if len(hosts) < 2:
                hosts, (parts["hostname"], parts["port"]) = None, (hosts or ((None, None),))[0]
        elif several and ("hostname" in kwargs or "port" in kwargs):
            raise TypeError(
                "replace(): this URL names several hosts; give them all as "
                "hosts=[(host, port), ...]"
            )
        if "dialect" in kwargs or "driver" in kwargs:
            dialect = kwargs.pop("dialect", self.dialect)
            driver = kwargs.pop("driver", self.driver)
            kwargs["scheme"] = f"{dialect}+{driver}" if driver else dialect
        for name in ("username", "password"):
            if kwargs.get(name) is not None:
                kwargs[name] = quote(str(kwargs[name]), safe="")
        if "database" in kwargs:
            kwargs["path"] = "/" + quote(kwargs.pop("database"), safe="/:")
        if "options" in kwargs:
            kwargs["query"] = urlencode(kwargs.pop("options"))
        parts.update(kwargs)

        if hosts is None:
            netloc = _host_text(parts["hostname"], parts["port"])
        else:
            netloc = ",".join(_host_text(host, port) for host, port in hosts)
        if parts["username"] is not None:
            userinfo = str(parts["username"])
            if parts["password"] is not None:
                userinfo += f":{parts['password']}"
            netloc = f"{userinfo}@{netloc}"
        url = f"{parts['scheme']}://{netloc}{parts['path']}"
        if parts["query"]:
            url += f"?{parts['query']}"
        return self.__class__(url)

    @property
    def obscure_password(self) -> str:
        """The URL with its password replaced by asterisks."""
        if self._components.password is not None:
            return self.replace(password=_OBSCURED)._url.replace(
                quote(_OBSCURED, safe=""), _OBSCURED
            )
        return self._url

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.obscure_password!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, DatabaseURL)):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)


def _url_text(url: object) -> str:
    """The text of a URL given as a str, a DatabaseURL or a SQLAlchemy URL; TypeError for
    anything else."""
    if type(url) is str:
        return url
    if isinstance(url, DatabaseURL):
        return url._url
    if isinstance(url, str):  # a str subclass: keep the text, not the subclass
        return str.__str__(url)
    if isinstance(url, SQLAlchemyURL):
        return _from_sqlalchemy(url)
    # A TypeError, as encode/databases raised: the argument is of the wrong type, not a
    # URL with a mistake in it (that is a ConfigurationError). Only the type is named:
    # the value could be an object whose repr shows a password.
    raise TypeError(
        "a database URL must be a str, a DatabaseURL or a SQLAlchemy URL, "
        f"not {type(url).__qualname__}"
    )


def _from_sqlalchemy(url: SQLAlchemyURL) -> str:
    """The text of a SQLAlchemy URL, password included, as dbaccess writes URLs."""
    # Not url.render_as_string(hide_password=False): it percent-encodes ':' in the
    # database ('sqlite:///%3Amemory%3A'), and str() would mask the password.
    parts: dict[str, Any] = {
        "username": url.username,
        "password": url.password,
        "hostname": url.host,
        "port": url.port,
        "query": urlencode(list(url.query.items()), doseq=True),
    }
    if url.database is not None:
        parts["database"] = url.database
    return str(DatabaseURL(f"{url.drivername}://").replace(**parts))


def _host_text(host: str | None, port: int | None) -> str:
    text = str(host or "")
    if ":" in text:  # an IPv6 address
        text = f"[{text}]"
    return text if port is None else f"{text}:{port}"


def _host_list(netloc: str) -> tuple[tuple[str, int | None], ...] | None:
    """The hosts of a netloc naming several (``h1:5432,[::1]:5433``), None for one;
    ValueError for a malformed list."""
    hostlist = netloc.rpartition("@")[2]
    if "," not in hostlist:
        return None
    return parse_hosts(hostlist)


def parse_hosts(hostlist: str) -> tuple[tuple[str, int | None], ...]:
    """``(host, port)`` pairs of ``h1:5432,[::1]:5433,h3`` (one host or several; no port:
    None); ValueError naming the host that is malformed."""
    hosts: list[tuple[str, int | None]] = []
    for number, item in enumerate(hostlist.split(","), start=1):
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"host {number} ({item!r}) is not '[IPv6 address]:port'")
            port = rest[1:]
        else:
            host, _, port = item.partition(":")
            if ":" in port:
                raise ValueError(f"host {number} ({item!r}): write an IPv6 address in brackets")
        if not host:
            raise ValueError(f"host {number} of {hostlist!r} is empty")
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"the port of host {number} ({item!r}) is not from 1 to 65535")
        hosts.append((unquote(host).lower(), int(port) if port else None))
    return tuple(hosts)


def _obscure(url: str) -> str:
    """Hide the password of a URL that may not even parse."""
    if "@" not in url:
        return url
    head, _, after = url.rpartition("@")
    # Whatever follows the first ':' of the user part may be a password; without a
    # '://' the scheme cannot be told apart from the user, so mask from its ':' on.
    start = head.find("://") + 3 if "://" in head else 0
    colon = head.find(":", start)
    if colon < 0:
        return url
    return f"{head[: colon + 1]}{_OBSCURED}@{after}"
