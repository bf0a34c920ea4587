"""The pipeline's pure core: WAL payloads in; flushes to write and the LSN that may be
acknowledged out.

:class:`Pipeline` wires decoder → changes → mapping → batching. It opens no connection, reads
no socket and waits for nothing: the driver (:mod:`cdc.pipeline.daemon`) polls the stream,
hands each payload to :meth:`Pipeline.feed`, submits the flushes it yields to the sink, reports
back what became durable (:meth:`Pipeline.durable`) and acknowledges
:attr:`Pipeline.flushed_lsn`. The only questions the core asks the source are the catalog
lookups, all in one place: :class:`Lookups` (a table's primary key, a column type's
definition).

Acknowledgement rule: :attr:`Pipeline.flushed_lsn` is :attr:`Batcher.flushed_lsn`, which moves
only when the sink has committed the records (and checkpoint) of every transaction up to it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cdc.config import Settings, TableRules
from cdc.lsn import format_lsn
from cdc.metrics import MappingCounts
from cdc.pipeline.activity import ActivityMapper
from cdc.pipeline.batching import Batcher, Checkpoint, Flush, paced_ms
from cdc.pipeline.changes import Change, ChangeAssembler, TransactionEnd, TransactionMessage
from cdc.pipeline.core import compiled
from cdc.pipeline.pgoutput import Decoder, PgOutputMessage, Relation
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.values import TypeRegistry

log = logging.getLogger("cdc.daemon")  # log lines keep the name they had

# How many changes of one payload (a streamed transaction replays at its Stream Commit) the
# core processes before it yields to the driver, which keeps the walsender informed.
PROGRESS_EVERY = 0x1000


@dataclass
class Source:
    """What the preflight (:mod:`cdc.control.preflight`) learned about the source."""

    proto_version: int
    rules_by_relation_id: dict[int, TableRules]
    drain_target: int | None
    # (schema, table) -> 'shadow' for tables their legacy audit triggers still record
    modes: dict[tuple[str, str], str] = field(default_factory=dict)
    system_id: str = ""  # the cluster's database system identifier (pg_control)
    database: str = ""


@dataclass
class RunStats:
    changes: int = 0  # row changes, truncates and messages decoded
    records: int = 0  # activity records produced
    transactions: int = 0  # source transactions committed and processed
    streamed_transactions: int = 0  # of which arrived streamed (protocol 2+)
    skipped_transactions: int = 0  # already recorded before a restart
    flushes: int = 0
    start_lsn: int = 0
    flushed_lsn: int = 0
    drain_target_lsn: int | None = None
    elapsed_s: float = field(default=0.0)


class Lookups(Protocol):
    """The catalog lookups of the core, in one place (:class:`cdc.pipeline.catalog.Catalog`
    asks the source; tests answer from a dict)."""

    def primary_key(self, relation_id: int) -> tuple[str, ...] | None: ...

    def resolve_types(self, registry: TypeRegistry, type_oids: list[int]) -> None: ...

    def rendered(self, registry: TypeRegistry, changes: Iterable[Change]) -> Iterator[Change]: ...


def _py_quiet_run(
    decode: Callable[[bytes], PgOutputMessage],
    feed_quiet: Callable[[PgOutputMessage, bytes], bool],
    frames: list[Any],
    start: int,
) -> tuple[int, PgOutputMessage | None]:
    """From ``frames[start]`` on, each payload (bytes) decoded and given to ``feed_quiet``
    while it takes them; returns the first frame not taken, with its message when it is a
    payload (None: not a payload, or none left). The reference of _assembly.pxi's
    ``quiet_run``."""
    for index in range(start, len(frames)):
        frame = frames[index]
        if type(frame) is not bytes:
            return index, None
        message = decode(frame)
        if not feed_quiet(message, frame):
            return index, message
    return max(start, len(frames)), None


_QuietRun = Callable[
    [Callable[[bytes], PgOutputMessage], Callable[[PgOutputMessage, bytes], bool], list[Any], int],
    tuple[int, PgOutputMessage | None],
]
_quiet_run: _QuietRun = compiled.quiet_run if compiled is not None else _py_quiet_run


def rules_by_id(settings: Settings, previous: ActivityMapper) -> dict[int, TableRules]:
    """The new rules for the relations the previous mapper knew by OID (renames included)."""
    by_name = {(r.schema_name, r.table_name): r for r in settings.tables}
    result = {}
    for relation_id, rules in previous.rules_by_relation_id.items():
        new = by_name.get((rules.schema_name, rules.table_name))
        if new is not None:
            result[relation_id] = new
    return result


class Pipeline:
    """Decoder, change assembly, mapping and batching, fed one payload at a time."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        lookups: Lookups,
        *,
        start_lsn: int,
        skip_through: int,
        spill: SpillStore,
        stats: RunStats,
        clock_ms: Callable[[], float],
        track_lag: bool,
        counts: MappingCounts | None = None,
    ) -> None:
        self.stats = stats
        self.drain_target = source.drain_target
        self._lookups = lookups
        self._clock_ms = clock_ms  # read only between the changes of one long payload
        self._decoder = Decoder()
        self.assembler = ChangeAssembler(
            lambda relation_id, _schema, _table: lookups.primary_key(relation_id),
            skip_through_lsn=skip_through,
            spill=spill,
        )
        self.types = TypeRegistry()
        self.mapper = ActivityMapper(
            settings,
            types=self.types,
            rules_by_relation_id=source.rules_by_relation_id,
            counts=counts,
        )
        self.mapper.modes = dict(source.modes)
        self.batcher = Batcher(
            max_rows=settings.batch.max_rows,
            max_delay_ms=settings.batch.max_delay_ms,
            flushed_lsn=start_lsn,
            idle_interval_ms=settings.batch.idle_flush_interval_ms,
            busy_idle_interval_ms=settings.batch.busy_idle_flush_interval_ms,
            busy_rate=settings.batch.busy_rate,
        )
        self.idle_flush = settings.batch.flush_when_idle
        self._read_interval_ms = (
            settings.batch.read_interval_ms,
            settings.batch.busy_read_interval_ms,
        )
        # (end LSN, commit time) of transactions not yet acknowledged: the lag in seconds.
        self._track_lag = track_lag
        self._unacked: deque[tuple[int, datetime]] = deque()

    @property
    def flushed_lsn(self) -> int:
        """What may be acknowledged: every record up to it is durably written."""
        return self.batcher.flushed_lsn

    @property
    def in_transaction(self) -> bool:
        return self.assembler.in_transaction

    def deadline_ms(self) -> float | None:
        """When :meth:`tick` or :meth:`idle` has a flush due, if nothing arrives before."""
        deadline = self.batcher.deadline_ms()
        if self.idle_flush:
            idle = self.batcher.idle_deadline_ms()
            if idle is not None:
                deadline = idle if deadline is None else min(deadline, idle)
        return deadline

    def feed(self, payload: bytes, now_ms: float) -> Iterable[Flush | None]:
        """One pgoutput payload: yields each flush to write, in order, and ``None`` after
        every :data:`PROGRESS_EVERY` changes (a streamed transaction replays in one payload):
        the driver's chance to send a status update. Lazy, so memory stays bounded by the
        batch size: the next flush is built only after the driver took the last one.

        Most payloads are a row change of an open transaction or the Begin of one, which
        complete nothing: those join (or open) the transaction here and give an empty tuple,
        not a generator (~1 µs a message less)."""
        message = self._decoder.decode(payload)
        if self.assembler.feed_quiet(message, payload):
            return ()
        return self.feed_message(message, payload, now_ms)

    def feed_quiet_run(self, frames: list[Any], start: int) -> tuple[int, PgOutputMessage | None]:
        """The payloads (``bytes``) of ``frames`` from ``start`` on that complete nothing, as
        :meth:`feed` takes them, in one call (compiled: no Python bytecode per payload): the
        driver's way through one poll's frames. Returns ``(index, message)``: the first
        frame not taken and, when it is a payload, its message, for :meth:`feed_message`
        (None: not a payload, or none left)."""
        return _quiet_run(self._decoder.decode, self.assembler.feed_quiet, frames, start)

    def feed_message(
        self, message: PgOutputMessage, payload: bytes, now_ms: float
    ) -> Iterator[Flush | None]:
        """:meth:`feed` of a payload already decoded into ``message``."""
        if type(message) is Relation:
            self._lookups.resolve_types(self.types, [c.type_oid for c in message.columns])
        batcher = self.batcher
        mapper = self.mapper
        stats = self.stats
        changes: Iterable[Change] = self.assembler.feed(message, payload)
        if self.types.server_rendered:  # a column's values only the source can render
            changes = self._lookups.rendered(self.types, changes)
        for processed, change in enumerate(changes, 1):
            if type(change) is TransactionEnd:
                txn = change.transaction
                stats.transactions += 1
                if self._track_lag:
                    self._unacked.append((change.end_lsn, txn.commit_time))
                checkpoint = Checkpoint(txn.commit_lsn, change.end_lsn, txn.commit_time)
                flush = batcher.commit(checkpoint, now_ms)
                if flush is not None:
                    yield self._counted(flush)
            else:
                stats.changes += 1
                record = mapper.map(change)
                if record is not None:
                    flush = batcher.add(record, now_ms)
                    if flush is not None:
                        yield self._counted(flush)
                    if type(change) is TransactionMessage and not change.transaction:
                        # Non-transactional (activity.log_now): its own unit, acknowledged
                        # just past its LSN (a restart resends messages at or after the
                        # confirmed position).
                        checkpoint = Checkpoint(change.lsn, change.lsn + 1, datetime.now(UTC))
                        flush = batcher.commit(checkpoint, now_ms)
                        if flush is not None:
                            yield self._counted(flush)
            if processed % PROGRESS_EVERY == 0:
                now_ms = self._clock_ms()
                yield None
        stats.skipped_transactions = self.assembler.skipped_transactions
        stats.streamed_transactions = self.assembler.streamed_transactions

    def keepalive(self, wal_end: int) -> None:
        """A keepalive's WAL end: with nothing in flight, acknowledging it is safe."""
        if self.assembler.in_transaction:
            return
        before = self.batcher.flushed_lsn
        self.batcher.keepalive(wal_end)
        if self.batcher.flushed_lsn != before:
            log.debug("idle: keepalive at %s advances the acknowledgement", format_lsn(wal_end))

    def durable(self, end_lsn: int, now_ms: float | None = None) -> None:
        """The sink committed the flush that ends at ``end_lsn``."""
        self.batcher.durable(end_lsn, now_ms)

    def read_interval_ms(self) -> float:
        """How long a daemon that keeps up leaves the socket unread: ``read_interval_ms``
        under a quiet stream, up to ``busy_read_interval_ms`` as the records' rate nears
        ``busy_rate`` (the batcher's :meth:`~Batcher.busyness`)."""
        quiet, busy = self._read_interval_ms
        return paced_ms(quiet, busy, self.batcher.busyness())  # 0: each frame as it arrives

    def idle_flush_due(self, now_ms: float) -> bool:
        return self.idle_flush and self.batcher.idle_flush_due(now_ms)

    def idle(self, now_ms: float) -> Flush | None:
        """What is committed, now rather than after max_delay_ms (nothing more to read)."""
        return self._counted(self.batcher.idle(now_ms))

    def tick(self, now_ms: float) -> Flush | None:
        return self._counted(self.batcher.tick(now_ms))

    def drain(self) -> Flush | None:
        """Everything committed and not yet written, whatever the batch size."""
        return self._counted(self.batcher.drain())

    def lag_seconds(self, now: datetime) -> float:
        """Since the commit of the oldest transaction not yet acknowledged (0: none)."""
        unacked = self._unacked
        flushed = self.batcher.flushed_lsn
        while unacked and unacked[0][0] <= flushed:
            unacked.popleft()
        return (now - unacked[0][1]).total_seconds() if unacked else 0.0

    def reload(self, settings: Settings) -> None:
        """New mapping, redaction and batch settings; call it between transactions."""
        modes = self.mapper.modes
        self.mapper = ActivityMapper(
            settings,
            types=self.types,
            rules_by_relation_id=rules_by_id(settings, self.mapper),
            counts=self.mapper.counts,  # the metrics' totals go on
        )
        self.mapper.modes = modes
        self.batcher.max_rows = settings.batch.max_rows
        self.batcher.max_delay_ms = settings.batch.max_delay_ms
        self.batcher.idle_interval_ms = settings.batch.idle_flush_interval_ms
        self.batcher.busy_idle_interval_ms = settings.batch.busy_idle_flush_interval_ms
        self.batcher.busy_rate = settings.batch.busy_rate
        self.idle_flush = settings.batch.flush_when_idle
        self._read_interval_ms = (
            settings.batch.read_interval_ms,
            settings.batch.busy_read_interval_ms,
        )
        log.info("configuration reloaded at %s", format_lsn(self.batcher.flushed_lsn))

    def _counted(self, flush: Flush | None) -> Flush | None:
        if flush is not None:
            self.stats.flushes += 1
            self.stats.records += len(flush.records)
        return flush
