"""Prometheus metrics, ``/healthz`` and ``/readyz`` (served over HTTP by cdc/metrics_http.py).

The daemon owns one :class:`Metrics` and calls it once per event that is already rare: a
written batch, a status update, a reconnect, an error. Nothing is counted per change; the
per-table counts of a batch are tallied from the batch's records after it is written
(:func:`tally`, best called in the sink's writer thread). What the mapping stage counts (TOAST
values unavailable, heartbeats received) it keeps itself, in a :class:`MappingCounts` that
survives a reload; the metrics read it at each scrape (:meth:`Metrics.read_mapping`).
Everything lives in the instance's own registry, never the process-global one, so tests and
embedding applications stay apart.

Exposed (units in the names)::

    activity_cdc_records_total{table,operation}   records written
    activity_cdc_batch_rows                       histogram: records per written batch
    activity_cdc_batch_write_seconds              histogram: time to write (and commit) a batch
    activity_cdc_received_lsn                     highest WAL position received (an integer)
    activity_cdc_flushed_lsn                      position acknowledged as durable
    activity_cdc_lag_bytes                        WAL not yet acknowledged
    activity_cdc_lag_seconds                      age of the oldest unacknowledged commit
    activity_cdc_streaming                        1 while streaming, else 0
    activity_cdc_reconnects_total
    activity_cdc_errors_total{kind}               kind: an error class name, e.g. SinkError;
                                                  every kind of error_kinds() exists at 0
    activity_cdc_build_info{version,python}       1
    process_*                                     the standard process collector (memory,
                                                  CPU seconds, file descriptors, start time)
    activity_cdc_toast_unavailable_total          unchanged TOAST values that were not available
    activity_cdc_standby                          1 while waiting for a slot another process holds
    activity_cdc_heartbeat_latency_seconds        sent_at of the last cdc.heartbeat → received
    activity_cdc_heartbeats_received_total        heartbeat messages seen in the stream
    activity_cdc_heartbeats_sent_total            heartbeat messages emitted by this process
    activity_cdc_slot_retained_bytes              WAL the slot keeps (from restart_lsn)
    activity_cdc_slot_safe_wal_size_bytes         WAL left before invalidation; -1: unlimited
    activity_cdc_slot_retention_warning           0 ok, 1 warning, 2 critical, 3 lost
    activity_cdc_jetstream_up                     1 when the last JetStream sample answered
    activity_cdc_jetstream_stream_last_seq        last sequence of the stream ([sink] kind
                                                  = "jetstream"; cdc.control.jetstream_watch)
    activity_cdc_jetstream_pending_messages{consumer}      not yet delivered to the consumer
    activity_cdc_jetstream_ack_pending_messages{consumer}  delivered, not yet acknowledged
    activity_cdc_jetstream_ack_floor{consumer}    stream sequence written and acknowledged

Labels hold table names, operations, error class names and JetStream consumer names only:
never a DSN or a message.

``/healthz`` answers 200 while the process runs (GET and HEAD: HEAD answers every path as GET
would, without the body). ``/readyz`` answers 200 only when the daemon said it streams
(:meth:`Metrics.set_streaming`) and the last reported ``lag_seconds`` is at most
``ready_max_lag_seconds``; otherwise 503 with the reason as the body.
"""

from __future__ import annotations

import collections
import logging
import platform
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cdc import __version__
from cdc.errors import CdcError

log = logging.getLogger(__name__)

# No `*_created` series beside every counter and histogram: they double the series scraped and
# no dashboard reads them. prometheus_client only offers this process-wide.
disable_created_metrics()  # type: ignore[no-untyped-call]

BATCH_ROWS_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")


class _Record(Protocol):
    @property
    def schema_name(self) -> str | None: ...
    @property
    def table_name(self) -> str | None: ...
    @property
    def operation(self) -> str: ...


_RECORD_KEY = attrgetter("schema_name", "table_name", "operation")


def tally(records: Iterable[_Record]) -> collections.Counter[tuple[str, str]]:
    """Records per (``schema.table``, operation), for :meth:`Metrics.batch_written`."""
    raw: collections.Counter[tuple[str | None, str | None, str]] = collections.Counter(
        map(_RECORD_KEY, records)
    )
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for (schema, table, operation), n in raw.items():
        name = f"{schema}.{table}" if schema and table else (table or "")
        counts[(name, operation)] += n
    return counts


def error_kinds() -> tuple[str, ...]:
    """Every kind :meth:`Metrics.error` is called with by this code base, so that each counter
    exists at 0 from the start (an alert on ``increase(...) > 0`` then sees the first error):
    every class of the error hierarchy, psycopg's lost connection, a parked dead letter."""
    kinds: list[str] = []
    pending: list[type[CdcError]] = [CdcError]
    while pending:
        cls = pending.pop(0)
        kinds.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return (*sorted(set(kinds)), "OperationalError", "dead_letter", "other")


@dataclass(slots=True)
class MappingCounts:
    """The mapping stage's running totals (``ActivityMapper.counts``): the stage counts, a
    reload hands the same object to the new mapper, and :class:`Metrics` reads it at each
    scrape. Plain ints and a float: written by the daemon's thread, read by the HTTP one."""

    toast_unavailable: int = 0  # unchanged TOAST values that could not be recorded
    heartbeats_received: int = 0  # cdc.heartbeat messages seen in the stream
    heartbeat_latency_s: float = 0.0  # the last one's, from its sent_at to its arrival

    def heartbeat(self, latency_s: float) -> None:
        self.heartbeat_latency_s = latency_s
        self.heartbeats_received += 1


class _MappingCollector(Collector):
    """The mapping's counters, read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._mapping_families()


class Metrics:
    """The daemon's metrics and readiness; thread-safe. Call from the daemon, never per
    change."""

    def __init__(self, *, ready_max_lag_seconds: float = 60.0) -> None:
        self.ready_max_lag_seconds = ready_max_lag_seconds
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._define_stream(registry)
        self._define_watches(registry)
        self._define_jetstream(registry)
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds, start time...
        ProcessCollector(registry=registry)
        Info("activity_cdc_build", "The running version.", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        for kind in error_kinds():
            self._errors.labels(kind=kind)
        self._lock = threading.Lock()
        # What toast_unavailable() and heartbeat() were told and what earlier stages counted;
        # the current stage's counts are added at each scrape.
        self._counted = MappingCounts()
        self._stage: MappingCounts | None = None
        registry.register(_MappingCollector(self))
        self._is_streaming = False
        self._not_streaming_reason = "not streaming yet"
        self._last_lag_seconds: float | None = None

    def _define_stream(self, registry: CollectorRegistry) -> None:
        """What the daemon writes and where the stream is."""
        self._records = Counter(
            "activity_cdc_records",
            "Activity records written, by source table and operation.",
            ["table", "operation"],
            registry=registry,
        )
        # Each (table, operation)'s child of _records, looked up once: labels() takes a lock
        # and builds its key every time (3.4 µs, against 0.8 for the cached child's inc()).
        self._records_of: dict[tuple[str, str], Counter] = {}
        self._batch_rows = Histogram(
            "activity_cdc_batch_rows",
            "Records per written batch.",
            buckets=BATCH_ROWS_BUCKETS,
            registry=registry,
        )
        self._batch_seconds = Histogram(
            "activity_cdc_batch_write_seconds",
            "Seconds to write and commit one batch.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self._received_lsn = Gauge(
            "activity_cdc_received_lsn", "Highest WAL position received.", registry=registry
        )
        self._flushed_lsn = Gauge(
            "activity_cdc_flushed_lsn",
            "WAL position acknowledged to the server as durably recorded.",
            registry=registry,
        )
        self._lag_bytes = Gauge(
            "activity_cdc_lag_bytes", "WAL bytes not yet acknowledged.", registry=registry
        )
        self._lag_seconds = Gauge(
            "activity_cdc_lag_seconds",
            "Age of the oldest committed change not yet recorded (0 when caught up).",
            registry=registry,
        )
        self._streaming = Gauge(
            "activity_cdc_streaming", "1 while the daemon streams, else 0.", registry=registry
        )
        self._reconnects = Counter(
            "activity_cdc_reconnects", "Replication reconnects.", registry=registry
        )
        self._errors = Counter(
            "activity_cdc_errors", "Errors by kind (error class name).", ["kind"], registry=registry
        )
        self._standby = Gauge(
            "activity_cdc_standby",
            "1 while waiting for the slot another process streams from (hot standby), else 0.",
            registry=registry,
        )

    def _define_watches(self, registry: CollectorRegistry) -> None:
        """The heartbeat and the slot watch."""
        self._heartbeats_sent = Counter(
            "activity_cdc_heartbeats_sent",
            "cdc.heartbeat messages emitted by this process.",
            registry=registry,
        )
        self._slot_retained_bytes = Gauge(
            "activity_cdc_slot_retained_bytes",
            "WAL the replication slot keeps on the server (from its restart_lsn).",
            registry=registry,
        )
        self._slot_safe_wal_size = Gauge(
            "activity_cdc_slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is invalidated; -1: unlimited.",
            registry=registry,
        )
        self._slot_retention_warning = Gauge(
            "activity_cdc_slot_retention_warning",
            "Slot WAL retention: 0 ok, 1 warning, 2 critical (unreserved), 3 lost.",
            registry=registry,
        )

    def _define_jetstream(self, registry: CollectorRegistry) -> None:
        """The JetStream watch ([sink] kind = "jetstream")."""
        self._jetstream_up = Gauge(
            "activity_cdc_jetstream_up",
            "1 when the last sample of the JetStream stream answered, else 0.",
            registry=registry,
        )
        self._jetstream_last_seq = Gauge(
            "activity_cdc_jetstream_stream_last_seq",
            "Last sequence of the JetStream stream the records are published to.",
            registry=registry,
        )
        self._jetstream_pending = Gauge(
            "activity_cdc_jetstream_pending_messages",
            "Messages of the stream not yet delivered to the consumer (cdc ingest).",
            ["consumer"],
            registry=registry,
        )
        self._jetstream_ack_pending = Gauge(
            "activity_cdc_jetstream_ack_pending_messages",
            "Messages delivered to the consumer and not yet acknowledged.",
            ["consumer"],
            registry=registry,
        )
        self._jetstream_ack_floor = Gauge(
            "activity_cdc_jetstream_ack_floor",
            "Stream sequence at and below which every message is written and acknowledged.",
            ["consumer"],
            registry=registry,
        )

    # -- the daemon's calls ------------------------------------------------------------------

    def batch_written(
        self, *, rows: int, seconds: float, by_table_op: Mapping[tuple[str, str], int]
    ) -> None:
        """One batch is durable: ``rows`` records in ``seconds``; ``by_table_op`` maps
        (``schema.table``, operation) to its records (see :func:`tally`)."""
        self._batch_rows.observe(rows)
        self._batch_seconds.observe(seconds)
        for key, n in by_table_op.items():
            child = self._records_of.get(key)
            if child is None:
                child = self._records_of[key] = self._records.labels(table=key[0], operation=key[1])
            child.inc(n)

    def positions(
        self,
        *,
        received_lsn: int,
        flushed_lsn: int,
        lag_bytes: int | None = None,
        lag_seconds: float | None = None,
    ) -> None:
        """At each status update: LSNs as integers; lags when known."""
        self._received_lsn.set(received_lsn)
        self._flushed_lsn.set(flushed_lsn)
        if lag_bytes is not None:
            self._lag_bytes.set(lag_bytes)
        if lag_seconds is not None:
            self._lag_seconds.set(lag_seconds)
            with self._lock:
                self._last_lag_seconds = lag_seconds

    def reconnect(self) -> None:
        self._reconnects.inc()

    def error(self, kind: str) -> None:
        """``kind``: an error class name (``type(exc).__name__``). Anything else is counted as
        ``other``, so no message or DSN can become a label."""
        self._errors.labels(kind=kind if _KIND.match(kind) else "other").inc()

    def toast_unavailable(self, n: int = 1) -> None:
        with self._lock:
            self._counted.toast_unavailable += n

    def read_mapping(self, counts: MappingCounts) -> None:
        """Read the mapping stage's counts at each scrape from now on (its driver registers
        them once); what the stage registered before counted stays in the totals."""
        with self._lock:
            before, self._stage = self._stage, counts
            if before is not None:
                self._counted.toast_unavailable += before.toast_unavailable
                if before.heartbeats_received:
                    self._counted.heartbeats_received += before.heartbeats_received
                    self._counted.heartbeat_latency_s = before.heartbeat_latency_s

    def _mapping_families(self) -> Iterator[Metric]:
        with self._lock:
            counted, stage = self._counted, self._stage
            toast, received, latency = (
                counted.toast_unavailable,
                counted.heartbeats_received,
                counted.heartbeat_latency_s,
            )
        if stage is not None:
            toast += stage.toast_unavailable
            if stage.heartbeats_received:
                received += stage.heartbeats_received
                latency = stage.heartbeat_latency_s
        yield CounterMetricFamily(
            "activity_cdc_toast_unavailable",
            "Unchanged TOASTed values that could not be filled in.",
            value=toast,
        )
        yield GaugeMetricFamily(
            "activity_cdc_heartbeat_latency_seconds",
            "From a cdc.heartbeat message's sent_at to the daemon receiving it (end to end).",
            value=latency,
        )
        yield CounterMetricFamily(
            "activity_cdc_heartbeats_received",
            "cdc.heartbeat messages received in the replication stream.",
            value=received,
        )

    def set_streaming(self, streaming: bool, reason: str = "") -> None:
        """``reason``: why not (shown by /readyz), e.g. "reconnecting", "standby"."""
        self._streaming.set(1 if streaming else 0)
        if streaming:
            self._standby.set(0)
        with self._lock:
            self._is_streaming = streaming
            self._not_streaming_reason = reason or "not streaming"

    @property
    def streaming(self) -> bool:
        """What :meth:`set_streaming` said last."""
        with self._lock:
            return self._is_streaming

    def set_standby(self, standby: bool) -> None:
        """Waiting for a slot that another process streams from (cdc.service.supervisor)."""
        self._standby.set(1 if standby else 0)

    def heartbeat(self, latency_seconds: float) -> None:
        """A ``cdc.control.heartbeat`` message arrived ``latency_seconds`` after it was sent."""
        with self._lock:
            self._counted.heartbeat(latency_seconds)

    def heartbeat_sent(self) -> None:
        self._heartbeats_sent.inc()

    def slot_retention(
        self, *, level: int, retained_bytes: int | None, safe_wal_size: int | None
    ) -> None:
        """The slot watcher's last sample (cdc.control.slot_watch): ``level`` 0 ok, 1 warning,
        2 critical, 3 lost; ``safe_wal_size`` None: unlimited (shown as -1)."""
        self._slot_retention_warning.set(level)
        if retained_bytes is not None:
            self._slot_retained_bytes.set(retained_bytes)
        self._slot_safe_wal_size.set(-1 if safe_wal_size is None else safe_wal_size)

    def jetstream(
        self, *, up: bool, last_seq: int | None, consumers: Iterable[tuple[str, int, int, int]]
    ) -> None:
        """The JetStream watcher's sample (cdc.control.jetstream_watch): ``consumers`` as (name,
        pending, ack pending, ack floor)."""
        self._jetstream_up.set(1 if up else 0)
        if last_seq is not None:
            self._jetstream_last_seq.set(last_seq)
        for name, pending, ack_pending, ack_floor in consumers:
            label = name if _KIND.match(name) else "other"
            self._jetstream_pending.labels(consumer=label).set(pending)
            self._jetstream_ack_pending.labels(consumer=label).set(ack_pending)
            self._jetstream_ack_floor.labels(consumer=label).set(ack_floor)

    # -- what the HTTP endpoints show -------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            streaming, reason, lag = (
                self._is_streaming,
                self._not_streaming_reason,
                self._last_lag_seconds,
            )
        if not streaming:
            return False, reason
        if lag is None:
            return True, "streaming (lag not measured yet)"
        if lag > self.ready_max_lag_seconds:
            return False, f"lag {lag:.1f}s > {self.ready_max_lag_seconds:g}s"
        return True, f"streaming, lag {lag:.1f}s"

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
