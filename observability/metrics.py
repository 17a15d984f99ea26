"""The Prometheus families of Tailor and their exposition.

Counters and histograms live in ``prometheus_client``'s default registry; with
``PROMETHEUS_MULTIPROC_DIR`` set before start (``tailor serve --workers N``) every worker writes
them to that directory and a scrape of any worker sums them all (``exposition``). What already
exists as state in code (cache statistics, breaker states, queue depth, model versions, segment
sizes) is not duplicated: a collector reads it at scrape time (``RuntimeCollector`` in
``gateway/telemetry.py``) and reports the scraped worker's view.

Label values are bounded: routes are the app's route paths, operations are persisted operation
names (at most ``MAX_OPERATIONS`` distinct, then ``other``) or ``anonymous``, codes come from the
error table, sources and strategies from the recommender's fixed sets.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

# The ``*_created`` series double every family for no use on a dashboard.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_OPERATIONS = 200
ANONYMOUS = "anonymous"
OTHER = "other"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "tailor_http_requests",
    "HTTP requests answered, by route, GraphQL operation and status",
    ["route", "operation", "status"],
)
HTTP_DURATION = Histogram(
    "tailor_http_request_duration_seconds",
    "Time to answer an HTTP request, by route, GraphQL operation and status",
    ["route", "operation", "status"],
    buckets=_LATENCY,
)
GRAPHQL_ERRORS = Counter(
    "tailor_graphql_errors", "GraphQL errors answered, by error code", ["code"]
)
EDGE_CACHE = Counter(
    "tailor_edge_cache_requests",
    "Edge response-cache decisions (the X-Cache header), by layer, scope and result",
    ["layer", "scope", "result"],
)
PERSISTED_REGISTRATIONS = Counter(
    "tailor_persisted_query_registrations", "Persisted queries registered through APQ"
)
PERSISTED_MISSES = Counter(
    "tailor_persisted_query_misses", "Persisted-query hashes asked for but unknown"
)
UPSTREAM_CALLS = Counter(
    "tailor_upstream_calls",
    "Calls of an upstream (one per batch), by outcome",
    ["upstream", "outcome"],
)
UPSTREAM_DURATION = Histogram(
    "tailor_upstream_call_duration_seconds",
    "Time of an upstream call, retries included",
    ["upstream"],
    buckets=_LATENCY,
)
INGEST_EVENTS = Counter(
    "tailor_ingest_events",
    "Events ingested, by outcome (accepted, duplicate, rejected, ...)",
    ["outcome"],
)
RECOMMEND_DURATION = Histogram(
    "tailor_recommend_duration_seconds",
    "Time to compute one recommendation list, by strategy",
    ["strategy"],
    buckets=_LATENCY,
)
SOURCE_DURATION = Histogram(
    "tailor_recommend_source_duration_seconds",
    "Time of one candidate source for one recommendation list",
    ["source"],
    buckets=_LATENCY,
)

_operations: set[str] = set()
_operations_lock = threading.Lock()
# Children resolved once per label tuple: ``labels()`` validates its arguments on every call.
_children: dict[tuple[Any, ...], Any] = {}


def child(family: Any, *labels: str) -> Any:
    """``family.labels(*labels)``, memoized (label values must come from bounded sets)."""
    key = (id(family), *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = family.labels(*labels)
    return found


def operation_label(name: str | None) -> str:
    """The ``operation`` label of a persisted operation: its name, while fewer than
    ``MAX_OPERATIONS`` distinct names were seen by this process; ``other`` after that."""
    if not name:
        return ANONYMOUS
    if name in _operations:
        return name
    with _operations_lock:
        if len(_operations) >= MAX_OPERATIONS:
            return OTHER
        _operations.add(name)
    return name


def count_ingest(statuses: Iterable[str]) -> None:
    """Count the outcomes of one ingested batch."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    for status, n in counts.items():
        child(INGEST_EVENTS, status).inc(n)


def multiprocess_dir() -> str | None:
    """The ``PROMETHEUS_MULTIPROC_DIR`` of this process, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Exposition:
    """What a scrape reads: this process's families (in multiprocess mode every worker's,
    merged from ``PROMETHEUS_MULTIPROC_DIR``) and ``collectors`` read at scrape time. Usable as
    the ``registry`` of ``prometheus_client.generate_latest`` and ``start_http_server``."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Any]:
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        for c in self.collectors:
            yield from c.collect()


def exposition(*collectors: Collector) -> bytes:
    """The text exposition of ``Exposition(*collectors)``."""
    return generate_latest(Exposition(*collectors))
