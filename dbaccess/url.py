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
    """

    __slots__ = ("_components", "_options", "_url")

    _url: str

    def __init__(self, url: str | DatabaseURL | SQLAlchemyURL) -> None:
        url = _url_text(url)
        self._url = url
        try:
            self._components = urlsplit(url)
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
        return (
            self._components.hostname or self.options.get("host") or self.options.get("unix_sock")
        )

    @property
    def port(self) -> int | None:
        return self._components.port

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
        ``hostname``, ``port``, ``database`` and ``options`` (a mapping).
        """
        parts: dict[str, Any] = {
            "scheme": self.scheme,
            "username": self._components.username,
            "password": self._components.password,
            "hostname": self._components.hostname,
            "port": self._components.port,
            "path": self._components.path,
            "query": self._components.query,
        }
        unknown = set(kwargs) - {*parts, "dialect", "driver", "database", "options"}
        if unknown:
            raise TypeError(f"replace() got unexpected parts: {', '.join(sorted(unknown))}")
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

        netloc = str(parts["hostname"] or "")
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if parts["port"] is not None:
            netloc += f":{parts['port']}"
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
