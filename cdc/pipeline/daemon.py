"""The daemon loop: wires stream → decoder → changes → mapping → batching → sink → ack.

One thread runs this loop (reading, decoding, mapping); one background thread writes batches
(:class:`~cdc.pipeline.sink.SinkWriter`). The loop waits on the replication socket, the writer's
wake-up
pipe and a stop pipe, so it uses no CPU while idle and reacts at once to a durable batch or a
signal.

Acknowledgement rule: the stream's ``flushed_lsn`` is only ever set from
:attr:`Batcher.flushed_lsn`, which moves only when the sink has committed the records (and
checkpoint) of every transaction up to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cdc.config import Settings, TableRules
from cdc.connect import connect
from cdc.control.setup import check_wal_level, table_oids
from cdc.cutover.triggers import audited_tables
from cdc.errors import PrerequisiteError, PublicationNotFound, SlotNotFound
from cdc.lsn import Lsn, format_lsn
from cdc.metrics import Metrics
from cdc.pipeline.activity import ActivityMapper
from cdc.pipeline.batching import Batcher, Checkpoint, Flush
from cdc.pipeline.catalog import Catalog
from cdc.pipeline.changes import ChangeAssembler, TransactionEnd, TransactionMessage
from cdc.pipeline.pgoutput import Decoder, Relation
from cdc.pipeline.sink import SinkWriter
from cdc.pipeline.sinks import open_sink
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.stream import Keepalive, ReplicationStream, XLogData
from cdc.pipeline.values import TypeRegistry

log = logging.getLogger("cdc.daemon")  # log lines keep the name they had


def _rules_by_id(settings: Settings, previous: ActivityMapper) -> dict[int, TableRules]:
    """The new rules for the relations the previous mapper knew by OID (renames included)."""
    by_name = {(r.schema_name, r.table_name): r for r in settings.tables}
    result = {}
    for relation_id, rules in previous.rules_by_relation_id.items():
        new = by_name.get((rules.schema_name, rules.table_name))
        if new is not None:
            result[relation_id] = new
    return result


def protocol_version_for(server_version_num: int) -> int:
    """The highest pgoutput protocol version the server speaks (streaming needs 2+)."""
    if server_version_num >= 160000:
        return 4
    if server_version_num >= 150000:
        return 3
    if server_version_num >= 140000:
        return 2
    raise PrerequisiteError(
        f"PostgreSQL {server_version_num // 10000} is too old: activity-cdc needs PostgreSQL 14 "
        "or later (logical messages and streamed transactions in pgoutput)"
    )


@dataclass
class Source:
    """What the preflight learned about the source."""

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


class Daemon:
    """``run()`` streams until :meth:`request_stop` (or, with ``drain``, until everything
    committed before it started is durable and acknowledged)."""

    def __init__(
        self, settings: Settings, *, drain: bool = False, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.drain = drain
        self.metrics = metrics
        self._reloaded: Settings | None = None
        self.stats = RunStats()
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_r, False)
        os.set_blocking(self._stop_w, False)
        self._stopping = threading.Event()
        self._spill = SpillStore()  # streamed transactions still open; files removed on close

    def reload(self, settings: Settings) -> list[str]:
        """Take new mapping, redaction and batch settings at the next transaction boundary
        (SIGHUP). Source and sink settings need a restart: they are kept, and said so."""
        ignored = [
            name
            for name in ("source", "sink")
            if getattr(settings, name) != getattr(self.settings, name)
        ]
        keep = {name: getattr(self.settings, name) for name in ignored}
        self._reloaded = settings.model_copy(update=keep)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._stop_w, b"r")  # wake the loop: the reload applies at once
        return ignored

    def request_stop(self) -> None:
        """Finish the batch in hand, acknowledge it, and return from run(). Signal-safe."""
        self._stopping.set()
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._stop_w, b"x")

    def _preflight(self) -> Source:
        source = self.settings.source
        with connect(source.dsn) as conn:
            check_wal_level(conn)
            proto = protocol_version_for(conn.info.server_version)
            if not conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (source.slot,)
            ).fetchone():
                raise SlotNotFound(
                    f'replication slot "{source.slot}" does not exist; run "cdc setup"'
                )
            if not conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (source.publication,)
            ).fetchone():
                raise PublicationNotFound(
                    f'publication "{source.publication}" does not exist; run "cdc setup"'
                )
            oids = table_oids(conn, self.settings)
            rules = {
                oids[(r.schema_name, r.table_name)][0]: r
                for r in self.settings.tables
                if (r.schema_name, r.table_name) in oids
            }
            # Tables setup has not seen (added to the config since): the triggers as they are.
            modes = {table: "shadow" for table in audited_tables(conn, self.settings)}
            target = None
            if self.drain:
                row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                assert row is not None
                target = Lsn.parse(row[0])
            identity = conn.execute(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()), "
                "current_database()"
            ).fetchone()
            assert identity is not None
        return Source(proto, rules, target, modes, identity[0], identity[1])

    def run(self) -> RunStats:
        started = time.monotonic()
        settings = self.settings
        source = self._preflight()
        self.stats.drain_target_lsn = source.drain_target
        catalog = Catalog(settings.source.dsn)
        sink = open_sink(settings, system_id=source.system_id, database=source.database)
        sink.open()
        writer: SinkWriter | None = None
        stream = ReplicationStream(
            settings.source.dsn,
            slot=settings.source.slot,
            publication=settings.source.publication,
            decoding_work_mem=settings.source.decoding_work_mem,
        )
        try:
            checkpoint = sink.read_checkpoint()
            source.modes.update(sink.read_modes())  # what cutover markers decided wins
            start_lsn = checkpoint.end_lsn if checkpoint else 0
            skip_through = checkpoint.commit_lsn if checkpoint else 0
            self.stats.start_lsn = start_lsn
            log.info(
                "checkpoint for slot %s: commit %s, end %s",
                settings.source.slot,
                format_lsn(skip_through),
                format_lsn(start_lsn),
            )
            writer = SinkWriter(sink, metrics=self.metrics)
            writer.start()
            stream.open(start_lsn, proto_version=source.proto_version)
            if self.metrics is not None:
                self.metrics.set_streaming(True)
            self._loop(stream, writer, catalog, source, start_lsn, skip_through)
        finally:
            if self.metrics is not None:
                self.metrics.set_streaming(False, "stopped")
            if writer is not None:
                writer.stop()
            stream.close()
            sink.close()
            catalog.close()
            self._spill.close()
            self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    def _loop(
        self,
        stream: ReplicationStream,
        writer: SinkWriter,
        catalog: Catalog,
        source: Source,
        start_lsn: int,
        skip_through: int,
    ) -> None:
        settings = self.settings
        stats = self.stats
        drain_target = source.drain_target
        decoder = Decoder()
        assembler = ChangeAssembler(
            lambda relation_id, _schema, _table: catalog.primary_key(relation_id),
            skip_through_lsn=skip_through,
            spill=self._spill,
        )
        types = TypeRegistry()
        mapper = ActivityMapper(
            settings, types=types, rules_by_relation_id=source.rules_by_relation_id
        )
        mapper.modes = dict(source.modes)
        batcher = Batcher(
            max_rows=settings.batch.max_rows,
            max_delay_ms=settings.batch.max_delay_ms,
            flushed_lsn=start_lsn,
            idle_interval_ms=settings.batch.idle_flush_interval_ms,
        )
        idle_flush = settings.batch.flush_when_idle
        status_interval_s = settings.source.status_interval_ms / 1000
        wake_fds = [writer.wake_fd, self._stop_r]
        metrics = self.metrics
        unacked: deque[tuple[int, datetime]] = deque()  # (end LSN, commit time) not yet acked
        last_frame_at = time.monotonic()
        last_probe_at = 0.0

        def keep_alive() -> None:
            # The sink is behind and submit() waits: the walsender must still hear from us.
            if time.monotonic() - stream.last_status_at >= status_interval_s / 2:
                stream.send_status()

        def submit(flush: Flush) -> None:
            writer.submit(flush, keep_alive)

        def send(flush: Flush | None) -> None:
            if flush is not None:
                stats.flushes += 1
                stats.records += len(flush.records)
                submit(flush)

        while True:
            now = time.monotonic()
            timeout = status_interval_s - (now - stream.last_status_at)
            deadline = batcher.deadline_ms()
            if deadline is not None:
                timeout = min(timeout, deadline / 1000 - now)
            if idle_flush:
                deadline = batcher.idle_deadline_ms()
                if deadline is not None:
                    timeout = min(timeout, deadline / 1000 - now)
            if drain_target is not None:
                timeout = min(timeout, 0.1)
            frames = stream.poll(max(timeout, 0.0), wake_fds)
            if not self._stopping.is_set():
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._stop_r, 64)  # a reload's wake-up byte
            now = time.monotonic()
            now_ms = now * 1000
            reply = False
            if frames:
                last_frame_at = now
            for frame in frames:
                if type(frame) is XLogData:
                    payload = frame.payload
                    message = decoder.decode(payload)
                    if type(message) is Relation:
                        catalog.resolve_types(types, [c.type_oid for c in message.columns])
                    changes = assembler.feed(message, payload)
                    if types.server_rendered:  # a column's values only the source can render
                        changes = catalog.rendered(types, changes)
                    for processed, change in enumerate(changes, 1):
                        if type(change) is TransactionEnd:
                            txn = change.transaction
                            stats.transactions += 1
                            unacked.append((change.end_lsn, txn.commit_time))
                            send(
                                batcher.commit(
                                    Checkpoint(txn.commit_lsn, change.end_lsn, txn.commit_time),
                                    now_ms,
                                )
                            )
                        else:
                            stats.changes += 1
                            record = mapper.map(change)
                            if record is not None:
                                flush = batcher.add(record, now_ms)
                                if flush is not None:
                                    send(flush)
                                if type(change) is TransactionMessage and not change.transaction:
                                    # Non-transactional (activity.log_now): its own unit,
                                    # acknowledged just past its LSN (a restart resends
                                    # messages at or after the confirmed position).
                                    send(
                                        batcher.commit(
                                            Checkpoint(
                                                change.lsn, change.lsn + 1, datetime.now(UTC)
                                            ),
                                            now_ms,
                                        )
                                    )
                        if processed & 0xFFF == 0:
                            # A streamed transaction replays here in one go; keep the
                            # walsender from timing us out while it does.
                            now = time.monotonic()
                            now_ms = now * 1000
                            if now - stream.last_status_at >= status_interval_s / 2:
                                stream.send_status()
                else:
                    assert isinstance(frame, Keepalive)
                    if not assembler.in_transaction:
                        before = batcher.flushed_lsn
                        batcher.keepalive(frame.wal_end)
                        if batcher.flushed_lsn != before:
                            log.debug(
                                "idle: keepalive at %s advances the acknowledgement",
                                format_lsn(frame.wal_end),
                            )
                    reply = reply or frame.reply_requested
            for end_lsn in writer.completed():
                batcher.durable(end_lsn, time.monotonic() * 1000)
            if idle_flush and batcher.idle_flush_due(now_ms) and not stream.has_data():
                # Nothing more to read and the sink is free: write what is committed now
                # rather than after max_delay_ms. Under load the socket is rarely empty, or
                # the sink is busy with the previous flush, and batches keep growing.
                send(batcher.idle(now_ms))
            send(batcher.tick(now_ms))
            stats.skipped_transactions = assembler.skipped_transactions
            stats.streamed_transactions = assembler.streamed_transactions
            if batcher.flushed_lsn > stream.flushed_lsn:
                stream.flushed_lsn = batcher.flushed_lsn
                stats.flushed_lsn = batcher.flushed_lsn
                log.debug("acknowledged %s", format_lsn(batcher.flushed_lsn))
                reply = True
            if reply or now - stream.last_status_at >= status_interval_s:
                stream.send_status()
                if metrics is not None:
                    flushed = batcher.flushed_lsn
                    while unacked and unacked[0][0] <= flushed:
                        unacked.popleft()
                    oldest = unacked[0][1] if unacked else None
                    metrics.positions(
                        received_lsn=stream.received_lsn,
                        flushed_lsn=flushed,
                        lag_bytes=max(stream.received_lsn - flushed, 0),
                        lag_seconds=(datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0,
                    )
                    metrics.toast_unavailable(mapper.toast_unavailable)
                    mapper.toast_unavailable = 0
                    heartbeat = getattr(metrics, "heartbeat", None)
                    for latency in mapper.heartbeat_latencies:
                        if heartbeat is not None:
                            heartbeat(latency)
                mapper.heartbeat_latencies.clear()
                if metrics is None and len(unacked) > 10_000:
                    unacked.clear()  # only the metric needs it
            if self._reloaded is not None and not assembler.in_transaction:
                settings, self._reloaded = self._reloaded, None
                self.settings = settings
                modes = mapper.modes
                mapper = ActivityMapper(
                    settings, types=types, rules_by_relation_id=_rules_by_id(settings, mapper)
                )
                mapper.modes = modes
                batcher.max_rows = settings.batch.max_rows
                batcher.max_delay_ms = settings.batch.max_delay_ms
                batcher.idle_interval_ms = settings.batch.idle_flush_interval_ms
                idle_flush = settings.batch.flush_when_idle
                log.info("configuration reloaded at %s", format_lsn(batcher.flushed_lsn))

            if drain_target is not None:
                if batcher.flushed_lsn >= drain_target:
                    log.info("drained through %s", format_lsn(batcher.flushed_lsn))
                    return
                quiet = now - last_frame_at > 0.05
                if quiet and not assembler.in_transaction and now - last_probe_at > 0.2:
                    # Nothing arrives: flush what is pending, and ask the server for a
                    # keepalive carrying its WAL end, so an idle tail can be acknowledged.
                    send(batcher.drain())
                    stream.send_status(reply_requested=True)
                    last_probe_at = now
            if self._stopping.is_set():
                self._shutdown(stream, writer, batcher, send)
                return

    def _shutdown(
        self, stream: ReplicationStream, writer: SinkWriter, batcher: Batcher, send: Any
    ) -> None:
        """Write the batch in hand, wait for the writer, acknowledge, return."""
        send(batcher.drain())
        deadline = time.monotonic() + 60
        while batcher.in_flight and time.monotonic() < deadline:
            select.select([writer.wake_fd], [], [], 0.5)
            for end_lsn in writer.completed():
                batcher.durable(end_lsn)
        if batcher.flushed_lsn > stream.flushed_lsn:
            stream.flushed_lsn = batcher.flushed_lsn
            self.stats.flushed_lsn = batcher.flushed_lsn
        stream.send_status()
        log.info("stopped; acknowledged through %s", format_lsn(batcher.flushed_lsn))
        if batcher.pending_rows:
            # A source transaction was still open: its chunks roll back with the sink
            # transaction and the slot sends it again on the next start.
            log.info(
                "%d records of an unfinished transaction will be replayed", batcher.pending_rows
            )

    def close(self) -> None:
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
