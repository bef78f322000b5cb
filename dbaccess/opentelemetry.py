"""OpenTelemetry for dbaccess: ``DBAccessInstrumentor().instrument()``.

Needs the ``opentelemetry`` extra (``pip install 'dbaccess[opentelemetry]'``). Once
instrumented, every Database of the process reports, following OpenTelemetry's database
semantic conventions:

- a CLIENT span per statement (``iterate()``: per stream), child of the caller's span,
  with ``db.system.name``, ``db.namespace``, ``db.operation.name``, ``db.query.text``
  (the SQL with its placeholders, never the values), ``server.address``,
  ``server.port``, ``db.operation.batch.size`` (``execute_many()``) and ``error.type``;
- a span per connection opened (``connect``) and per transaction or savepoint, which
  is the current span inside the transaction (its statements are its children);
- the metrics ``db.client.operation.duration``, ``db.client.connection.count`` (by
  ``db.client.connection.state``: idle, used), ``db.client.connection.max``,
  ``db.client.connection.pending_requests``, ``db.client.connection.wait_time`` and
  ``db.client.connection.create_time``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import __version__
from .errors import DBAccessError
from .observe import QueryEvent, add_tracer, live_databases, remove_tracer
from .url import DatabaseURL

__all__ = ["DBAccessInstrumentor"]

logger = logging.getLogger("dbaccess")

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
# The first keyword of a statement, after opening parentheses and comments.
_OPERATION = re.compile(r"^(?:\s|\(|--[^\n]*\n|/\*.*?\*/)*([A-Za-z]+)", re.S)
# The semantic conventions' advice for database durations, in seconds.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class DBAccessInstrumentor:
    """Trace dbaccess statements, connects and transactions, and report pool metrics.

    Like the ``opentelemetry-instrumentation-*`` packages: ``instrument()`` and
    ``uninstrument()`` act on the whole process (every instance shares one state), and
    calling either twice does nothing the second time.
    """

    _active: ClassVar[_Reporter | None] = None

    def instrument(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_query_text: bool = True,
    ) -> None:
        """Start reporting (the global providers unless given); ``capture_query_text``:
        put the SQL, with its placeholders, in ``db.query.text``."""
        if DBAccessInstrumentor._active is not None:
            logger.warning("dbaccess is already instrumented; instrument() did nothing")
            return
        reporter = _Reporter(tracer_provider, meter_provider, capture_query_text)
        DBAccessInstrumentor._active = reporter
        add_tracer(reporter)

    def uninstrument(self) -> None:
        """Stop reporting spans and metrics."""
        reporter, DBAccessInstrumentor._active = DBAccessInstrumentor._active, None
        if reporter is not None:
            remove_tracer(reporter)
            reporter.stopped = True  # its observable instruments report nothing more

    @property
    def is_instrumented(self) -> bool:
        """Whether dbaccess reports to OpenTelemetry now."""
        return DBAccessInstrumentor._active is not None


class _Reporter:
    """The tracer dbaccess.observe reports to: spans and metrics from its events."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        capture_query_text: bool,
    ) -> None:
        self.stopped = False
        self._capture_query_text = capture_query_text
        self._tracer = trace.get_tracer("dbaccess", __version__, tracer_provider)
        meter = metrics.get_meter("dbaccess", __version__, meter_provider)
        self._operation_duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool "
            "(loans that found no idle connection).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._create_time = meter.create_histogram(
            "db.client.connection.create_time",
            unit="s",
            description="The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._observe_counts],
            unit="{connection}",
            description="The number of connections that are currently in the state "
            "described by the state attribute.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._observe_max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._observe_pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )
        #: Attributes per URL (and system: MariaDB is told from MySQL at first connect).
        self._attributes: dict[tuple[int, str], dict[str, Any]] = {}

    # -- attributes ------------------------------------------------------------------

    def _common(self, url: DatabaseURL, backend: str) -> dict[str, Any]:
        key = (id(url), backend)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {"db.system.name": backend}
            namespace = _namespace(url)
            if namespace:
                attributes["db.namespace"] = namespace
            if backend != "sqlite":
                attributes["server.address"] = url.hostname or "localhost"
                attributes["server.port"] = url.port or _DEFAULT_PORTS.get(backend, 0)
            self._attributes[key] = attributes
        return attributes

    # -- statements ------------------------------------------------------------------

    def query_started(self, event: QueryEvent) -> Any:
        common = self._common(event.url, event.backend)
        attributes = dict(common)
        match = _OPERATION.match(event.sql)
        operation = match.group(1).upper() if match else None
        if operation:
            attributes["db.operation.name"] = operation
        if self._capture_query_text:
            attributes["db.query.text"] = event.sql
        if event.many and len(event.parameters) > 1:
            attributes["db.operation.batch.size"] = len(event.parameters)
        target = common.get("db.namespace")
        name = " ".join(part for part in (operation, target) if part) or event.backend
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return span, attributes, operation

    def query_ended(self, token: Any, event: QueryEvent) -> None:
        span, _, operation = token
        metric = dict(self._common(event.url, event.backend))
        if operation:
            metric["db.operation.name"] = operation
        if event.error is not None:
            error_type = _error_type(event.error)
            metric["error.type"] = error_type
            _fail(span, event.error, error_type)
        self._operation_duration.record(event.duration or 0.0, metric)
        span.end()

    # -- connections and transactions ---------------------------------------------------

    def connect_started(self, url: DatabaseURL, backend: str) -> Any:
        attributes = self._common(url, backend)
        span = self._tracer.start_span("connect", kind=SpanKind.CLIENT, attributes=attributes)
        return span, url, time.perf_counter()

    def connect_ended(self, token: Any, backend: str, error: BaseException | None) -> None:
        span, url, started = token
        span.set_attribute("db.system.name", backend)  # MariaDB is known from now on
        self._create_time.record(
            time.perf_counter() - started, {"db.client.connection.pool.name": _pool_name(url)}
        )
        if error is not None:
            _fail(span, error, _error_type(error))
        span.end()

    def transaction_started(self, url: DatabaseURL, backend: str, nested: bool) -> Any:
        name = "savepoint" if nested else "transaction"
        span = self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=self._common(url, backend)
        )
        # The transaction's statements are its children: it is the current span until
        # it ends (in the task that began it).
        return span, context.attach(trace.set_span_in_context(span))

    def transaction_ended(self, token: Any, committed: bool, error: BaseException | None) -> None:
        span, attached = token
        span.set_attribute("dbaccess.transaction.outcome", "commit" if committed else "rollback")
        if error is not None:
            _fail(span, error, _error_type(error))
        if trace.get_current_span() is span:
            # (Ended by another task, the span is not current here: nothing to detach.)
            context.detach(attached)
        span.end()

    def acquire_waited(self, url: DatabaseURL, seconds: float) -> None:
        self._wait_time.record(seconds, {"db.client.connection.pool.name": _pool_name(url)})

    # -- pool metrics ------------------------------------------------------------------

    def _pools(self) -> dict[str, list[int]]:
        """idle, used, max and waiting per pool name (summed over Databases of one name)."""
        pools: dict[str, list[int]] = {}
        if self.stopped:
            return pools
        for database in live_databases():
            if database.is_connected:
                stats = database.pool_stats
                totals = pools.setdefault(_pool_name(database.url), [0, 0, 0, 0])
                totals[0] += stats.idle
                totals[1] += stats.in_use
                totals[2] += stats.max_size
                totals[3] += stats.waiting
        return pools

    def _observe_counts(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, (idle, used, _, _) in self._pools().items():
            pool = {"db.client.connection.pool.name": name}
            yield Observation(idle, {**pool, "db.client.connection.state": "idle"})
            yield Observation(used, {**pool, "db.client.connection.state": "used"})

    def _observe_max(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, totals in self._pools().items():
            yield Observation(totals[2], {"db.client.connection.pool.name": name})

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, totals in self._pools().items():
            yield Observation(totals[3], {"db.client.connection.pool.name": name})


def _namespace(url: DatabaseURL) -> str:
    database = url.database
    return "" if database in ("", ":memory:") else database


def _pool_name(url: DatabaseURL) -> str:
    """host:port/database, as the conventions suggest for pools without a name."""
    if url.dialect == "sqlite":
        return f"sqlite:{url.database}"
    return f"{url.hostname or 'localhost'}:{url.port or ''}/{url.database}"


def _error_type(error: BaseException) -> str:
    """The error's class: dbaccess's public one for dbaccess errors (they are also of
    the driver's class)."""
    if isinstance(error, DBAccessError):
        for cls in type(error).__mro__:
            if cls.__module__ == "dbaccess.errors":
                return f"dbaccess.{cls.__name__}"
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def _fail(span: trace.Span, error: BaseException, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
