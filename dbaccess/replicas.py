"""Read replicas: which node runs a call, and which replicas are fit to.

``Database(primary_url, replicas=[url, ...])`` keeps one inner :class:`Database` per
replica (its own backend and pools) whose observer shares the primary's hooks, so that
hooks, logs and tracers see replica statements too, each naming its own server. The
primary's Database asks :class:`Replicas` where a call goes, at a few points only
(its constructor, connect/disconnect, the read and write methods, and the end of a
block through ``Engine.block_ended``):

- a read (a Core SELECT without FOR UPDATE/SHARE, raw SQL that is a plain SELECT,
  VALUES or WITH..SELECT: see :func:`is_read`) made outside any transaction,
  ``connection()`` block or force_rollback connection goes to a healthy replica, in
  turn (round robin);
- everything else runs where it ran before (the primary), and marks the calling
  context as having written: its reads stay on the primary for
  ``replica_sticky_seconds`` (read-your-writes, through a ContextVar);
- ``with db.route("primary" | "replica"):`` forces the target of the reads in a block.

A replica that fails (OperationalError) is taken out of rotation and the read runs on
the primary; a probe in the background puts it back when a ``SELECT`` on it (and, with
``max_replica_lag``, its lag) says it is fit, trying again every
``replica_check_interval`` seconds. With ``max_replica_lag``, each replica's lag is
measured at most once per interval, in the background of the reads that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy.engine import URL as SQLAlchemyURL
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import GenerativeSelect, TextualSelect

from .backends import backend_class
from .errors import ConfigurationError, DBAccessError, InterfaceError, OperationalError
from .observe import Observer
from .options import parse_seconds
from .pool import PoolStats
from .statement import _CHANGES_SESSION
from .url import DatabaseURL, parse_hosts

if TYPE_CHECKING:
    from .compiler import Query
    from .connection import Connection
    from .database import Database
    from .record import Record

__all__ = ["ReplicaConfig", "ReplicaNode", "Replicas", "Target", "is_read", "split_options"]

logger = logging.getLogger("dbaccess")

Target = Literal["primary", "replica"]
_TARGETS: tuple[Target, ...] = ("primary", "replica")

#: Options of the primary's URL or keywords that configure the replicas (the backend
#: never sees them).
STICKY_SECONDS = "replica_sticky_seconds"
MAX_LAG = "max_replica_lag"
CHECK_INTERVAL = "replica_check_interval"
_URL_REPLICAS = "replicas"

DEFAULT_STICKY_SECONDS = 2.0
DEFAULT_CHECK_INTERVAL = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaConfig:
    urls: tuple[DatabaseURL, ...]
    sticky_seconds: float
    max_lag: float | None
    check_interval: float


def split_options(
    url: DatabaseURL, options: dict[str, Any]
) -> tuple[DatabaseURL, dict[str, Any], ReplicaConfig | None]:
    """Take the replica options out of the primary's URL and keywords: the URL and the
    keywords left for the backend, and the replicas' configuration (None without any).

    In the URL, ``replicas=host[:port],...`` names replicas that share everything else
    with the primary's URL (user, password, database, options); the keyword takes full
    URLs. Keywords win over the URL's options, as for every other option.
    """
    url_options = url.options
    given: dict[str, Any] = {
        name: url_options[name]
        for name in (_URL_REPLICAS, STICKY_SECONDS, MAX_LAG, CHECK_INTERVAL)
        if name in url_options
    }
    replicas = options.pop(_URL_REPLICAS, None)
    keywords = {
        name: options.pop(name)
        for name in (STICKY_SECONDS, MAX_LAG, CHECK_INTERVAL)
        if name in options
    }
    if given:
        rest = {name: value for name, value in url_options.items() if name not in given}
        url = url.replace(options=rest)
    urls: list[DatabaseURL] = []
    hosts = given.pop(_URL_REPLICAS, None)
    if hosts is not None:
        if replicas is not None:
            raise ConfigurationError(
                "replicas are given twice, in the URL (replicas=) and as the replicas= "
                "keyword; give them in one place"
            )
        if url.dialect == "sqlite":
            raise ConfigurationError(
                "option replicas= in a SQLite URL: SQLite replicas are files, give them as "
                "Database(url, replicas=[url, ...])"
            )
        if not hosts.strip():
            raise ConfigurationError(
                "option replicas= in the URL is empty; give replicas=host[:port],host[:port]"
            )
        try:
            pairs = parse_hosts(hosts.strip())
        except ValueError as exc:
            raise ConfigurationError(f"option replicas={hosts!r}: {exc}") from None
        # target_session_attrs picks the primary among the primary URL's hosts: a standby
        # would refuse read-write, so its replicas go without it.
        shared = {k: v for k, v in url.options.items() if k != "target_session_attrs"}
        urls = [url.replace(hosts=[pair], options=shared) for pair in pairs]
    elif replicas is not None:
        if isinstance(replicas, (str, bytes, DatabaseURL, SQLAlchemyURL)) or not isinstance(
            replicas, Sequence
        ):
            raise ConfigurationError(
                f"replicas= takes a list of database URLs, not {type(replicas).__name__}"
            )
        urls = [DatabaseURL(each) for each in replicas]
    given.update(keywords)
    sticky = _parse_sticky(given.get(STICKY_SECONDS, DEFAULT_STICKY_SECONDS))
    max_lag = parse_seconds(MAX_LAG, given.get(MAX_LAG))
    interval = parse_seconds(CHECK_INTERVAL, given.get(CHECK_INTERVAL, DEFAULT_CHECK_INTERVAL))
    if interval is None:
        raise ConfigurationError(
            f"option {CHECK_INTERVAL}=none: replicas must be checked again some time; "
            "give a number of seconds"
        )
    if not urls:
        return url, options, None
    kind = backend_class(url)
    for each in urls:
        if backend_class(each) is not kind:
            raise ConfigurationError(
                f"replica {each.obscure_password!r} is of another kind than the primary "
                f"{url.obscure_password!r} ({each.scheme} against {url.scheme}): a replica "
                "must use the primary's backend"
            )
        if each.dialect == "sqlite" and each.database in ("", ":memory:"):
            raise ConfigurationError(
                f"replica {each.obscure_password!r} is an in-memory SQLite database, a new "
                "empty one for each connection: a replica must be a file"
            )
    return url, options, ReplicaConfig(tuple(urls), sticky, max_lag, interval)


def _parse_sticky(value: Any) -> float:
    """Seconds; 0 turns read-your-writes off (reads go to replicas right after a write)."""
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError, ValueError):
            if float(value) == 0:
                return 0.0
    seconds = parse_seconds(STICKY_SECONDS, value)
    if seconds is None:
        raise ConfigurationError(
            f"option {STICKY_SECONDS}=none: give a number of seconds (0 for no window)"
        )
    return seconds


# -- which statements only read -------------------------------------------------------

_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S)
_FIRST_WORD = re.compile(r"[\s(]*(\w+)")
#: Words and functions of a statement that writes, locks or reads session state: such a
#: statement runs on the primary. Conservative: a false match costs a read on the primary.
_NOT_A_READ = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|UPSERT|INTO|LOCK|CALL)\b"
    r"|\bFOR\s+(?:NO\s+KEY\s+UPDATE|KEY\s+SHARE|SHARE)\b"
    r"|\b(?:nextval|setval|currval|lastval|txid_current|pg_current_xact_id|pg_notify"
    r"|pg_advisory_\w+|pg_try_advisory_\w+|lo_\w+|pg_terminate_backend|pg_cancel_backend"
    r"|pg_reload_conf|pg_switch_wal|pg_create_\w+|pg_drop_\w+|dblink\w*"
    r"|last_insert_id|found_rows|row_count|release_lock|release_all_locks|is_used_lock"
    r"|last_insert_rowid|changes|total_changes|load_extension)\s*\("
    r"|\$\w*\$|;\s*\S|:=",
    re.IGNORECASE,
)
_READ_WORDS = frozenset({"select", "values", "with", "table"})

#: Raw SQL text -> whether it only reads, for the texts seen (bounded).
_raw_reads: dict[str, bool] = {}
_RAW_CACHE_SIZE = 1024


def is_read(query: Any) -> bool:
    """Whether a query only reads, so that a replica may run it: a Core SELECT (or
    UNION...) without FOR UPDATE/SHARE, or raw SQL that is a plain SELECT, VALUES, TABLE
    or WITH..SELECT calling none of the functions that write, lock or read the session.
    When unsure: False (the primary)."""
    if isinstance(query, str):
        text = query
    elif isinstance(query, GenerativeSelect):
        return query._for_update_arg is None
    elif isinstance(query, TextClause):
        text = query.text
    elif isinstance(query, TextualSelect) and isinstance(query.element, TextClause):
        text = query.element.text
    else:
        return False
    known = _raw_reads.get(text)
    if known is None:
        known = _raw_is_read(text)
        if len(_raw_reads) >= _RAW_CACHE_SIZE:
            _raw_reads.clear()
        _raw_reads[text] = known
    return known


def _raw_is_read(sql: str) -> bool:
    bare = _STRINGS.sub(" ", sql)
    first = _FIRST_WORD.match(bare)
    if first is None or first.group(1).lower() not in _READ_WORDS:
        return False
    return not (_NOT_A_READ.search(bare) or _CHANGES_SESSION.search(sql))


# -- the nodes --------------------------------------------------------------------------


class _NodeObserver(Observer):
    """A replica's observer: its own URL and backend name (events name the replica's
    server), the primary's hooks and settings (hooks added to the primary see it)."""

    def __init__(self, node: Database, primary: Observer) -> None:
        self._primary = primary
        super().__init__(
            node,
            log_parameters=primary._log_parameters,
            slow_statement_threshold=primary._slow,
        )
        url = node.url
        where = url.database if url.dialect == "sqlite" else f"{url.hostname}:{url.port or ''}"
        self.node = f" (replica {where.rstrip(':')})"

    @property
    def _hooks(self) -> Any:
        return self._primary._hooks

    @_hooks.setter
    def _hooks(self, value: Any) -> None:
        pass  # the primary's hooks are the replica's

    @property
    def _always(self) -> bool:
        return self._primary._always

    @_always.setter
    def _always(self, value: bool) -> None:
        pass


@dataclass(frozen=True)
class ReplicaNode:
    """What a replica looks like from this process: ``db.replicas`` lists them."""

    #: "replica1", "replica2"... in the order given: the key in ``db.pool_stats_by_node``.
    name: str
    #: Its URL (whose repr hides the password).
    url: DatabaseURL
    #: Whether reads may go to it now.
    healthy: bool
    #: Seconds behind the primary at the last measure (None: not measured).
    lag: float | None
    #: Why it is out of rotation (None when healthy), without any password.
    reason: str | None


class _Node:
    def __init__(self, name: str, database: Database) -> None:
        self.name = name
        self.database = database
        self.healthy = False
        self.reason: str | None = "not connected yet"
        self.lag: float | None = None
        #: time.monotonic() after which a probe (or a lag check) may run again.
        self.next_check = 0.0
        self.checking = False

    def view(self) -> ReplicaNode:
        return ReplicaNode(self.name, self.database.url, self.healthy, self.lag, self.reason)


class Replicas:
    """The replicas of one primary Database, and where each of its calls runs."""

    def __init__(self, primary: Database, config: ReplicaConfig) -> None:
        from .database import Database

        self._primary = primary
        self.config = config
        self._nodes: list[_Node] = []
        for number, url in enumerate(config.urls, 1):
            try:
                database = Database(url, **primary.options)
            except ConfigurationError as exc:
                raise ConfigurationError(f"replica {url.obscure_password!r}: {exc}") from exc
            database._engine.observer = _NodeObserver(database, primary._engine.observer)
            self._nodes.append(_Node(f"replica{number}", database))
        self._turn = 0
        #: Until when (time.monotonic()) the current context reads from the primary.
        self._sticky: ContextVar[float] = ContextVar(f"dbaccess.sticky.{id(self)}", default=0.0)
        self._forced: ContextVar[Target | None] = ContextVar(
            f"dbaccess.route.{id(self)}", default=None
        )
        self._checks: set[asyncio.Task[None]] = set()
        self._max_lag = config.max_lag
        self._window = config.sticky_seconds
        self._healthy: tuple[_Node, ...] = ()
        self._due = math.inf

    def describe(self) -> str:
        return repr([node.database.url.obscure_password for node in self._nodes])

    @property
    def nodes(self) -> tuple[ReplicaNode, ...]:
        return tuple(node.view() for node in self._nodes)

    def pool_stats(self) -> dict[str, PoolStats]:
        stats: dict[str, PoolStats] = {}
        for node in self._nodes:
            database = node.database
            if database.is_connected:
                stats[node.name] = database.pool_stats
            else:
                max_size = database._engine.backend.options.max_size
                stats[node.name] = PoolStats(0, 0, 0, 0, max_size)
        return stats

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect every replica; one that cannot be reached (or lags) starts out of
        rotation, and the primary's connect() succeeds anyway."""
        await asyncio.gather(*(self._check(node) for node in self._nodes))

    async def disconnect(self, timeout: float | None) -> None:
        checks, self._checks = self._checks, set()
        loop = asyncio.get_running_loop()
        ours = []
        for task in checks:
            if task.get_loop() is loop:
                task.cancel()
                ours.append(task)
            else:  # another loop's check: cancelled in its loop, if that still runs
                with contextlib.suppress(RuntimeError):
                    task.get_loop().call_soon_threadsafe(task.cancel)
        await asyncio.gather(*ours, return_exceptions=True)
        for node in self._nodes:
            node.healthy, node.reason, node.checking = False, "disconnected", False
            node.next_check = 0.0
        self._refresh()
        await asyncio.gather(
            *(node.database.disconnect(timeout) for node in self._nodes), return_exceptions=True
        )

    # -- health ------------------------------------------------------------------------

    async def _check(self, node: _Node) -> None:
        """Connect (if need be) and measure the replica: in rotation when it answers
        within ``max_replica_lag``, else out until the next check."""
        node.checking = True
        try:
            await node.database.connect()
            lag = await measure_lag(node.database) if self._max_lag is not None else None
            if lag is None:
                await node.database.fetch_val("SELECT 1")
        except (DBAccessError, OSError) as exc:
            self._take_out(node, f"{type(exc).__name__}: {exc}")
        else:
            node.lag = lag
            if lag is not None and self._max_lag is not None and lag > self._max_lag:
                self._take_out(node, f"lags {lag:.3f} s behind (max_replica_lag={self._max_lag:g})")
            else:
                if not node.healthy and node.reason != "not connected yet":
                    logger.info(
                        "replica %s is back in rotation", node.database.url.obscure_password
                    )
                node.healthy, node.reason = True, None
                node.next_check = time.monotonic() + self.config.check_interval
        finally:
            node.checking = False
            self._refresh()

    def _take_out(self, node: _Node, reason: str) -> None:
        if node.healthy or node.reason != reason:
            logger.warning(
                "replica %s is out of rotation for %g s: %s",
                node.database.url.obscure_password,
                self.config.check_interval,
                reason,
            )
        node.healthy, node.reason = False, reason
        node.next_check = time.monotonic() + self.config.check_interval
        self._refresh()

    def _refresh(self) -> None:
        """Recompute what the per-call path reads: the healthy nodes, and when the next
        check is due (so that a call with nothing due looks at no node)."""
        self._healthy = tuple(node for node in self._nodes if node.healthy)
        lags = self._max_lag is not None
        self._due = min(
            (
                node.next_check
                for node in self._nodes
                if not node.checking and (lags or not node.healthy)
            ),
            default=math.inf,
        )

    def _check_later(self, node: _Node) -> None:
        """Run a check in the background (one per node at a time)."""
        node.checking = True
        task = asyncio.get_running_loop().create_task(self._check(node))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _pick(self, now: float) -> _Node | None:
        """The next healthy replica in turn (round robin), starting the checks due."""
        if now >= self._due:
            lags = self._max_lag is not None
            for node in self._nodes:
                if now >= node.next_check and not node.checking and (lags or not node.healthy):
                    self._check_later(node)
            self._refresh()
        healthy = self._healthy
        if not healthy:
            return None
        self._turn = turn = self._turn + 1
        return healthy[turn % len(healthy)]

    def _falls_back(self, node: _Node, exc: DBAccessError) -> bool:
        """Whether a read that failed on a replica runs again on the primary, taking
        the replica out of rotation when it is the replica that failed."""
        if _refused_as_read_only(exc):
            return True  # the statement writes after all (a function in a SELECT)
        if not isinstance(exc, OperationalError) or str(exc).startswith("timed out after"):
            return False  # the statement's own error, or the caller's time is spent
        self._take_out(node, f"{type(exc).__name__}: {exc}")
        node.next_check = 0.0  # a probe at the next read: the server may be fine
        self._refresh()
        return True

    # -- routing -----------------------------------------------------------------------

    def wrote(self) -> None:
        """The current context wrote on the primary: its reads stay there a while."""
        if self._window:
            self._sticky.set(time.monotonic() + self._window)

    def _choose(self, query: Query) -> tuple[Connection, _Node | None, bool]:
        """The primary's connection for the call, the replica to try first (or None),
        and whether the call counts as a write."""
        primary = self._primary
        connection = primary._route()
        if connection is not primary._per_call:
            return connection, None, False  # a block, a transaction, force_rollback
        forced = self._forced.get()
        now = time.monotonic()
        if forced is None:
            if not is_read(query):
                return connection, None, True
            if now < self._sticky.get():
                return connection, None, False
        elif forced == "primary":
            return connection, None, False
        return connection, self._pick(now), False

    async def read(self, query: Query, call: Callable[[Connection], Awaitable[T]]) -> T:
        """Run a fetch_*() call where it belongs (see the module's docstring)."""
        connection, node, writes = self._choose(query)
        if node is not None:
            try:
                return await call(node.database._per_call)
            except DBAccessError as exc:
                if not self._falls_back(node, exc):
                    raise
                writes = _refused_as_read_only(exc)
        if not writes:
            return await call(connection)
        try:
            return await call(connection)
        finally:
            self.wrote()

    async def stream(
        self, query: Query, open_stream: Callable[[Connection], AsyncGenerator[T, None]]
    ) -> AsyncGenerator[T, None]:
        """iterate() and batched_iterate(): on a replica unless it fails before the
        first rows arrived (then on the primary; after, the error is the caller's)."""
        connection, node, writes = self._choose(query)
        if node is not None:
            rows = open_stream(node.database._per_call)
            started = False
            try:
                async for item in rows:
                    started = True
                    yield item
                return
            except DBAccessError as exc:
                if started or not self._falls_back(node, exc):
                    raise
                writes = _refused_as_read_only(exc)
            finally:
                await rows.aclose()
        rows = open_stream(connection)
        try:
            async for item in rows:
                yield item
        finally:
            await rows.aclose()
            if writes:
                self.wrote()

    @contextlib.contextmanager
    def route(self, target: Target) -> Iterator[None]:
        token = self._forced.set(target)
        try:
            yield
        finally:
            self._forced.reset(token)


def check_target(target: Any) -> Target:
    if target not in _TARGETS:
        raise InterfaceError(f"route() takes 'primary' or 'replica', not {target!r}")
    checked: Target = target
    return checked


def _refused_as_read_only(exc: DBAccessError) -> bool:
    """A replica refused a statement that writes (PostgreSQL's 25006 on a hot standby,
    MySQL's read_only errors 1290 and 1792)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "25006":
        return True
    args: Any = getattr(orig, "args", None) or (None,)
    return args[0] in (1290, 1792, 1836)


# -- lag ----------------------------------------------------------------------------------

#: PostgreSQL: 0 on a primary, or a standby that replayed all it received; else the age
#: of the last transaction it replayed (the standard measure of replay lag).
_POSTGRES_LAG = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


async def measure_lag(database: Database) -> float:
    """Seconds a replica is behind its primary (0 for a server that is no replica; SQLite
    never lags; a MySQL replica whose replication stopped: infinity)."""
    dialect = database.url.dialect
    if dialect == "sqlite":
        await database.fetch_val("SELECT 1")
        return 0.0
    if dialect.startswith("postgres"):
        return float(await database.fetch_val(_POSTGRES_LAG) or 0)
    row: Record | None
    try:
        row = await database.fetch_one("SHOW REPLICA STATUS")
    except DBAccessError:  # before MySQL 8.0.22 / MariaDB 10.5.1
        row = await database.fetch_one("SHOW SLAVE STATUS")
    if row is None:
        return 0.0
    fields: Mapping[str, Any] = row._mapping
    seconds = fields.get("Seconds_Behind_Source", fields.get("Seconds_Behind_Master"))
    return math.inf if seconds is None else float(seconds)
