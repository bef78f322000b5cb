"""DatabaseURL: parsing, rebuilding and hiding the password. No database needed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dbaccess import ConfigurationError, DatabaseURL

FULL = "postgresql+asyncpg://us%40er:p%40ss%3Aw%2Frd@db.example.com:5433/my_db?min_size=2&ssl=true"
SECRET = "s3cr3t-PASSWORD-url"


# -- parts ---------------------------------------------------------------------------


def test_parts_of_a_full_url() -> None:
    url = DatabaseURL(FULL)
    assert url.scheme == "postgresql+asyncpg"
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.username == "us@er"  # percent-encoded characters decode
    assert url.password == "p@ss:w/rd"
    assert url.hostname == "db.example.com"
    assert url.port == 5433
    assert url.database == "my_db"
    assert url.options == {"min_size": "2", "ssl": "true"}


def test_parts_that_are_absent() -> None:
    url = DatabaseURL("postgresql://localhost/app")
    assert url.driver == ""
    assert url.username is None
    assert url.password is None
    assert url.port is None
    assert url.options == {}


def test_username_without_password() -> None:
    url = DatabaseURL("mysql://root@127.0.0.1/app")
    assert url.username == "root"
    assert url.password is None
    assert repr(url) == "DatabaseURL('mysql://root@127.0.0.1/app')"


def test_percent_encoded_database_name_decodes() -> None:
    assert DatabaseURL("postgresql://h/my%20db%3F").database == "my db?"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("postgresql://u:pw@[::1]:5432/d", "::1", 5432),
        ("postgresql://u:pw@[2001:db8::1]/d", "2001:db8::1", None),
    ],
)
def test_ipv6_host(text: str, host: str, port: int | None) -> None:
    url = DatabaseURL(text)
    assert url.hostname == host
    assert url.port == port
    assert url.database == "d"
    # Replacing another part keeps the brackets, so the URL still parses.
    again = url.replace(database="other")
    assert again.hostname == host
    assert again.port == port
    assert again.database == "other"


def test_ipv6_host_given_to_replace_gets_brackets() -> None:
    url = DatabaseURL("postgresql://u@h:5432/d").replace(hostname="::1")
    assert str(url) == "postgresql://u@[::1]:5432/d"
    assert url.hostname == "::1"


@pytest.mark.parametrize(
    ("text", "database"),
    [
        ("sqlite:///rel.db", "rel.db"),
        ("sqlite:////abs/x.db", "/abs/x.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ""),
        ("sqlite+aiosqlite:///rel.db", "rel.db"),
    ],
)
def test_sqlite_urls(text: str, database: str) -> None:
    url = DatabaseURL(text)
    assert url.dialect == "sqlite"
    assert url.database == database
    assert url.hostname is None
    assert url.port is None
    assert url.username is None
    assert str(url) == text


def test_options_with_a_blank_value_are_kept() -> None:
    assert DatabaseURL("postgresql://h/d?application_name=").options == {"application_name": ""}


def test_options_that_are_not_name_value_pairs_are_refused() -> None:
    url = DatabaseURL(f"postgresql://u:{SECRET}@h/d?min_size")
    with pytest.raises(ConfigurationError, match="name=value") as info:
        url.options  # noqa: B018 - parsed on first use
    assert SECRET not in str(info.value)


# -- str, repr, equality -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        "postgresql://U:P@HOST.Example.COM:5432/DB",  # case kept as given
        "postgresql://h/d?b=2&a=1",  # option order kept
        "mysql://root@127.0.0.1:3306/x",
        "sqlite:///:memory:",
    ],
)
def test_str_keeps_the_url_as_given(text: str) -> None:
    url = DatabaseURL(text)
    assert str(url) == text
    assert DatabaseURL(url) == url  # a DatabaseURL is accepted too
    assert str(DatabaseURL(url)) == text


def test_hostname_is_lower_case_as_in_urllib() -> None:
    # Host names are case-insensitive; str() still keeps the URL as given.
    url = DatabaseURL("postgresql://HOST.Example.COM/d")
    assert url.hostname == "host.example.com"
    assert str(url) == "postgresql://HOST.Example.COM/d"


def test_equality_with_str_and_url() -> None:
    url = DatabaseURL("postgresql://u:pw@h:1/d?a=1")
    assert url == "postgresql://u:pw@h:1/d?a=1"
    assert url == DatabaseURL("postgresql://u:pw@h:1/d?a=1")
    assert url != "postgresql://u:pw@h:1/d?a=2"
    assert url != DatabaseURL("postgresql://u:pw@h:2/d?a=1")
    assert url != 42
    assert hash(url) == hash(DatabaseURL("postgresql://u:pw@h:1/d?a=1"))
    assert len({url, DatabaseURL(str(url))}) == 1


def test_repr_and_obscure_password_hide_the_password() -> None:
    url = DatabaseURL(f"postgresql://user:{SECRET}@localhost:5432/app?ssl=true")
    assert url.password == SECRET
    assert repr(url) == "DatabaseURL('postgresql://user:********@localhost:5432/app?ssl=true')"
    assert url.obscure_password == "postgresql://user:********@localhost:5432/app?ssl=true"
    assert str(url) == f"postgresql://user:{SECRET}@localhost:5432/app?ssl=true"


def test_obscure_password_of_an_encoded_password() -> None:
    url = DatabaseURL(FULL)
    assert "p%40ss" not in repr(url)
    assert "p@ss" not in repr(url)
    assert url.obscure_password == (
        "postgresql+asyncpg://us%40er:********@db.example.com:5433/my_db?min_size=2&ssl=true"
    )


def test_obscure_password_without_password_is_the_url() -> None:
    assert DatabaseURL("postgresql://u@h/d").obscure_password == "postgresql://u@h/d"


# -- replace -------------------------------------------------------------------------

BASE = DatabaseURL("postgresql://u:pw@h:1/d?a=1")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"scheme": "mysql+asyncmy"}, "mysql+asyncmy://u:pw@h:1/d?a=1"),
        ({"dialect": "mysql"}, "mysql://u:pw@h:1/d?a=1"),
        ({"driver": "asyncpg"}, "postgresql+asyncpg://u:pw@h:1/d?a=1"),
        ({"username": "other"}, "postgresql://other:pw@h:1/d?a=1"),
        ({"username": "x y@z"}, "postgresql://x%20y%40z:pw@h:1/d?a=1"),
        ({"password": "p@ss/w:rd"}, "postgresql://u:p%40ss%2Fw%3Ard@h:1/d?a=1"),
        ({"hostname": "db.example.com"}, "postgresql://u:pw@db.example.com:1/d?a=1"),
        ({"port": 5433}, "postgresql://u:pw@h:5433/d?a=1"),
        ({"port": None}, "postgresql://u:pw@h/d?a=1"),
        ({"database": "other"}, "postgresql://u:pw@h:1/other?a=1"),
        ({"database": "my db"}, "postgresql://u:pw@h:1/my%20db?a=1"),
        ({"options": {"b": "2", "c": "x y"}}, "postgresql://u:pw@h:1/d?b=2&c=x+y"),
        ({"options": {}}, "postgresql://u:pw@h:1/d"),
    ],
)
def test_replace_each_part(changes: dict[str, Any], expected: str) -> None:
    replaced = BASE.replace(**changes)
    assert isinstance(replaced, DatabaseURL)
    assert str(replaced) == expected
    assert str(BASE) == "postgresql://u:pw@h:1/d?a=1"  # the original is unchanged


def test_replace_round_trips_the_decoded_parts() -> None:
    url = BASE.replace(username="x y@z", password="p@ss/w:rd", database="my db")
    assert url.username == "x y@z"
    assert url.password == "p@ss/w:rd"
    assert url.database == "my db"


def test_replace_driver_on_a_url_with_a_driver() -> None:
    url = DatabaseURL("mysql+aiomysql://h/d")
    assert url.replace(driver="asyncmy").scheme == "mysql+asyncmy"
    assert url.replace(driver="").scheme == "mysql"
    assert url.replace(dialect="mariadb").scheme == "mariadb+aiomysql"


def test_replace_unknown_part_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        BASE.replace(colour="blue")


# -- malformed URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"user:{SECRET}@localhost/db",  # no scheme
        f"//user:{SECRET}@localhost/db",  # no scheme either
        f"postgresql:/u:{SECRET}@h/db",  # not scheme://
        "",
        f"postgresql://u:{SECRET}@host:abc/db",  # bad port
        f"postgresql://u:{SECRET}@host:99999/db",  # port out of range
        f"postgresql://u:{SECRET}@[::1/db",  # unclosed IPv6 bracket
        f"postgresql://u:{SECRET}@h/d\x00b",  # NUL byte
    ],
)
def test_malformed_url_is_a_configuration_error_without_password(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseURL(text)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    for chained in (info.value.__cause__, info.value.__context__):
        assert chained is None or SECRET not in str(chained)


def test_bad_port_message_names_the_port() -> None:
    with pytest.raises(ConfigurationError, match="abc"):
        DatabaseURL("postgresql://h:abc/d")


@pytest.mark.parametrize("value", [None, 42, b"postgresql://h/d", ["postgresql://h/d"]])
def test_url_that_is_not_a_str_is_a_type_error(value: Any) -> None:
    # TypeError as in encode/databases (tests/test_url_argument_types.py has the rest).
    with pytest.raises(TypeError, match=type(value).__name__):
        DatabaseURL(value)


# -- properties ----------------------------------------------------------------------

_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?\Z")
# Host names as urllib returns them: lower case (host names are case-insensitive).
HOSTS = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
PORTS = st.one_of(st.none(), st.integers(min_value=0, max_value=65535))
NAMES = st.text(min_size=1, max_size=30)
DATABASES = st.text(max_size=30)
PASSWORDS = st.text(min_size=6, max_size=40)


@given(username=NAMES, password=PASSWORDS, host=HOSTS, port=PORTS, database=DATABASES)
def test_replace_then_parse_gives_back_the_parts(
    username: str, password: str, host: str, port: int | None, database: str
) -> None:
    url = DatabaseURL("postgresql://h/d").replace(
        username=username, password=password, hostname=host, port=port, database=database
    )
    assert url.scheme == "postgresql"
    assert url.username == username
    assert url.password == password
    assert url.hostname == host
    assert url.port == port
    assert url.database == database
    assert url.options == {}
    # And once more through its own text, as when it is read from configuration.
    again = DatabaseURL(str(url))
    assert again == url
    assert (again.username, again.password, again.hostname, again.port, again.database) == (
        username,
        password,
        host,
        port,
        database,
    )


@given(username=NAMES, password=PASSWORDS, host=HOSTS, port=PORTS, database=DATABASES)
def test_repr_never_contains_the_password(
    username: str, password: str, host: str, port: int | None, database: str
) -> None:
    without = DatabaseURL("postgresql://h/d").replace(
        username=username, hostname=host, port=port, database=database
    )
    # A password that also spells another part (or the mask) would be found there.
    visible = repr(without) + "********"
    assume(password not in visible and quote(password, safe="") not in visible)
    url = without.replace(password=password)
    assert url.password == password
    for shown in (repr(url), url.obscure_password):
        assert password not in shown
        assert quote(password, safe="") not in shown
    assert ":********@" in url.obscure_password
    # Hiding the password changes nothing else.
    hidden = DatabaseURL(url.obscure_password)
    assert (hidden.username, hidden.hostname, hidden.port, hidden.database) == (
        username,
        host,
        port,
        database,
    )


# -- several hosts (libpq's multi-host URLs) -----------------------------------------

MULTI = f"postgresql://u:{SECRET}@db1.example.com:5432,DB2.example.com:5433/app"


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        (MULTI, (("db1.example.com", 5432), ("db2.example.com", 5433))),
        ("postgresql://h1,h2,h3/app", (("h1", None), ("h2", None), ("h3", None))),
        ("postgresql://h1:6000,h2/app", (("h1", 6000), ("h2", None))),
        (
            "postgresql://[::1]:5433,[fe80::2],h3:1/app",
            (("::1", 5433), ("fe80::2", None), ("h3", 1)),
        ),
        ("postgresql://h:5432/app", (("h", 5432),)),
        ("sqlite:///:memory:", ()),
    ],
)
def test_hosts_lists_each_host_and_port(text: str, hosts: tuple[tuple[str, int | None]]) -> None:
    url = DatabaseURL(text)
    assert url.hosts == hosts
    assert (url.hostname, url.port) == (hosts[0] if hosts else (None, None))
    assert url.database == ("app" if hosts else ":memory:")


def test_several_hosts_keep_the_password_out_of_repr_and_obscure_password() -> None:
    url = DatabaseURL(MULTI + "?target_session_attrs=read-write")
    assert SECRET not in repr(url)
    assert SECRET not in url.obscure_password
    assert url.obscure_password == (
        "postgresql://u:********@db1.example.com:5432,db2.example.com:5433/app"
        "?target_session_attrs=read-write"
    )
    assert str(url) == MULTI + "?target_session_attrs=read-write"  # as given, like one host
    assert url.password == SECRET


def test_replace_keeps_the_hosts_and_replaces_them_with_hosts() -> None:
    url = DatabaseURL(MULTI)
    assert url.replace(database="other").hosts == url.hosts
    assert (
        str(url.replace(hosts=[("a", 1), ("::1", None)]))
        == f"postgresql://u:{SECRET}@a:1,[::1]/app"
    )
    assert str(url.replace(hosts=[("a", 1)])) == f"postgresql://u:{SECRET}@a:1/app"
    with pytest.raises(TypeError, match="several hosts"):
        url.replace(port=6432)


@pytest.mark.parametrize(
    ("hostlist", "problem"),
    [
        ("h1:5432,,h2", "host 2 .* is empty"),
        ("h1:5432,", "host 2 .* is empty"),
        ("h1:abc,h2", "port of host 1 .*'h1:abc'.* not from 1 to 65535"),
        ("h1,h2:70000", "port of host 2 .* not from 1 to 65535"),
        ("h1,::1", "host 2 .* IPv6 address in brackets"),
        ("h1,[::1]x", r"host 2 .* '\[IPv6 address\]:port'"),
    ],
)
def test_malformed_host_list_says_which_host(hostlist: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as info:
        DatabaseURL(f"postgresql://u:{SECRET}@{hostlist}/app")
    assert SECRET not in str(info.value)
    assert "********" in str(info.value)
