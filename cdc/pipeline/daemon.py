"""The daemon's I/O driver: polls the stream, submits the core's flushes to the sink, marks
them durable, acknowledges, sends status updates, and stops or reloads on request.

The decisions are the pure core's (:class:`~cdc.pipeline.loop.Pipeline`); this module only
waits and moves bytes. One thread runs the driver (reading, and the core's decoding and
mapping); one background thread writes batches (:class:`~cdc.pipeline.sink.SinkWriter`). The
driver waits on the replication socket, the writer's wake-up pipe and a stop pipe, so it uses
no CPU while idle and reacts at once to a durable batch or a signal.

Acknowledgement rule: the stream's ``flushed_lsn`` is only ever set from
:attr:`Pipeline.flushed_lsn`, which moves only when the sink has committed the records (and
checkpoint) of every transaction up to it, and only as far as
:class:`~cdc.pipeline.publication_guard.PublicationGuard` allows: what was received before a
check found the publication as it was at start-up (PostgreSQL 18 skips changes silently when
it is gone).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cdc.config import Settings
from cdc.lsn import format_lsn
from cdc.metrics import MappingCounts, Metrics
from cdc.pipeline.batching import Flush
from cdc.pipeline.catalog import Catalog
from cdc.pipeline.loop import Pipeline, RunStats, Source
from cdc.pipeline.publication_guard import PublicationGuard
from cdc.pipeline.sink_writer import SinkWriter
from cdc.pipeline.sinks import open_sink
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.stream import Frame, Keepalive, ReplicationStream

log = logging.getLogger("cdc.daemon")  # log lines keep the name they had

# What the driver needs to know of the source before it streams: settings, drain -> Source
# (cdc.control.preflight checks wal_level, the slot, the publication and the triggers).
Preflight = Callable[[Settings, bool], Source]


def _clock_ms() -> float:
    return time.monotonic() * 1000


class Driver:
    """``run()`` streams until :meth:`request_stop` (or, with ``drain``, until everything
    committed before it started is durable and acknowledged)."""

    def __init__(
        self,
        settings: Settings,
        *,
        preflight: Preflight,
        drain: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._preflight = preflight
        self.drain = drain
        self.metrics = metrics
        self._reloaded: Settings | None = None
        self.stats = RunStats()
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_r, False)
        os.set_blocking(self._stop_w, False)
        self._stopping = threading.Event()
        self._spill = SpillStore()  # streamed transactions still open; files removed on close
        self._guard = PublicationGuard(settings.source.dsn, settings.source.publication)
        # The publication's OID as this daemon's first run found it: the supervisor passes it
        # on to its next attempt, so a publication created again during a reconnect is seen.
        self.publication_oid: int | None = None
        # The mapping's running totals, kept by its stage across reloads; read by the metrics
        # at each scrape, not pulled by the loop.
        self.mapping_counts = MappingCounts()
        if metrics is not None:
            metrics.read_mapping(self.mapping_counts)

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

    def run(self) -> RunStats:
        started = time.monotonic()
        settings = self.settings
        source = self._preflight(settings, self.drain)
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
            self._guard.start(self.publication_oid)  # before anything is decoded
            self.publication_oid = self._guard.oid
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
            self._guard.close()
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
        core = Pipeline(
            self.settings,
            source,
            catalog,
            start_lsn=start_lsn,
            skip_through=skip_through,
            spill=self._spill,
            stats=self.stats,
            clock_ms=_clock_ms,
            track_lag=self.metrics is not None,
            counts=self.mapping_counts,
        )
        status_interval_s = self.settings.source.status_interval_ms / 1000
        wake_fds = [writer.wake_fd, self._stop_r]
        last_frame_at = time.monotonic()
        last_probe_at = 0.0
        hold_until = 0.0  # caught up: the socket is next read from then (read_interval_ms)

        def keep_alive() -> None:
            # The sink is behind and submit() waits: the walsender must still hear from us.
            if time.monotonic() - stream.last_status_at >= status_interval_s / 2:
                stream.send_status()

        def send(flush: Flush | None) -> None:
            if flush is not None:
                writer.submit(flush, keep_alive)

        while True:
            timeout = _timeout(core, stream, status_interval_s)
            if core.flushed_lsn > stream.flushed_lsn:  # held back until the next check
                timeout = min(timeout, self._guard.due_in_s())
            if hold_until:
                timeout = _hold(hold_until, timeout, wake_fds)
                hold_until = 0.0
            frames = stream.poll(timeout, wake_fds)
            if not self._stopping.is_set():
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._stop_r, 64)  # a reload's wake-up byte
            now = time.monotonic()
            if frames:
                last_frame_at = now
            now, reply = _take(frames, core, stream, send, now, status_interval_s)
            now_ms = now * 1000
            for end_lsn in writer.completed():
                core.durable(end_lsn, time.monotonic() * 1000)
            hold_until = self._flush_due(core, stream, send, now_ms, bool(frames))
            reply = self._acknowledge(core, stream) or reply
            if reply or now - stream.last_status_at >= status_interval_s:
                stream.send_status()
                self._publish(core, stream)
            if self._reloaded is not None and not core.in_transaction:
                self.settings, self._reloaded = self._reloaded, None
                core.reload(self.settings)
            if core.drain_target is not None:
                if core.flushed_lsn >= core.drain_target:
                    self._acknowledge(core, stream, force=True)
                    stream.send_status()
                    log.info("drained through %s", format_lsn(stream.flushed_lsn))
                    return
                quiet = now - last_frame_at > 0.05
                if quiet and not core.in_transaction and now - last_probe_at > 0.2:
                    # Nothing arrives: flush what is pending, and ask the server for a
                    # keepalive carrying its WAL end, so an idle tail can be acknowledged.
                    send(core.drain())
                    stream.send_status(reply_requested=True)
                    last_probe_at = now
            if self._stopping.is_set():
                self._shutdown(stream, writer, core, send)
                return

    def _flush_due(
        self,
        core: Pipeline,
        stream: ReplicationStream,
        send: Callable[[Flush | None], None],
        now_ms: float,
        read: bool,
    ) -> float:
        """Submit the flushes due after a turn of the loop; returns until when the socket is
        left unread (0: read it at the next turn)."""
        empty: bool | None = None
        if core.idle_flush_due(now_ms):
            # Nothing more to read and the sink is free: write what is committed now rather
            # than after max_delay_ms. Under load the socket is rarely empty, or the sink is
            # busy with the previous flush, and batches keep growing.
            empty = not stream.has_data()
            if empty:
                send(core.idle(now_ms))
        send(core.tick(now_ms))
        interval_ms = core.read_interval_ms()
        if not read or not interval_ms or core.drain_target is not None:
            return 0.0
        if empty is None:
            empty = not stream.has_data()
        # Caught up with the stream: leave the socket alone for the read interval, so that the
        # next few source commits are read, mapped and written as one.
        return now_ms / 1000 + interval_ms / 1000 if empty else 0.0

    def _acknowledge(
        self, core: Pipeline, stream: ReplicationStream, *, force: bool = False
    ) -> bool:
        """Move the stream's flushed LSN to what is durable and verified (``force``: check
        the publication now rather than when due); True when it moved."""
        if core.flushed_lsn <= stream.flushed_lsn:
            return False
        allowed = self._guard.allowed(core.flushed_lsn, stream.received_lsn, force=force)
        if allowed <= stream.flushed_lsn:
            return False
        stream.flushed_lsn = allowed
        self.stats.flushed_lsn = allowed
        log.debug("acknowledged %s", format_lsn(allowed))
        return True

    def _publish(self, core: Pipeline, stream: ReplicationStream) -> None:
        """At each status update: positions and lags as metrics (the mapping's counters are
        read at each scrape)."""
        metrics = self.metrics
        if metrics is not None:
            flushed = stream.flushed_lsn  # acknowledged: the slot's confirmed position
            metrics.positions(
                received_lsn=stream.received_lsn,
                flushed_lsn=flushed,
                lag_bytes=max(stream.received_lsn - flushed, 0),
                lag_seconds=core.lag_seconds(datetime.now(UTC)),
            )

    def _shutdown(
        self,
        stream: ReplicationStream,
        writer: SinkWriter,
        core: Pipeline,
        send: Callable[[Flush | None], None],
    ) -> None:
        """Write the batch in hand, wait for the writer, acknowledge, return."""
        send(core.drain())
        deadline = time.monotonic() + 60
        while core.batcher.in_flight and time.monotonic() < deadline:
            select.select([writer.wake_fd], [], [], 0.5)
            for end_lsn in writer.completed():
                core.durable(end_lsn)
        self._acknowledge(core, stream, force=True)
        stream.send_status()
        log.info("stopped; acknowledged through %s", format_lsn(stream.flushed_lsn))
        if core.batcher.pending_rows:
            # A source transaction was still open: its chunks roll back with the sink
            # transaction and the slot sends it again on the next start.
            log.info(
                "%d records of an unfinished transaction will be replayed",
                core.batcher.pending_rows,
            )

    def close(self) -> None:
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _hold(until: float, timeout: float, wake_fds: list[int]) -> float:
    """Wait until ``until`` (at most ``timeout``) without reading the socket, so that what the
    walsender sends meanwhile is read and written together; a durable batch, a stop or a
    reload (``wake_fds``) ends the wait. Returns what is left of ``timeout``."""
    started = time.monotonic()
    wait = min(until - started, timeout)
    if wait > 0:
        select.select(wake_fds, [], [], wait)
    return max(timeout - (time.monotonic() - started), 0.0)


def _timeout(core: Pipeline, stream: ReplicationStream, status_interval_s: float) -> float:
    """How long the next poll may wait: until a status update or a flush is due."""
    now = time.monotonic()
    timeout = status_interval_s - (now - stream.last_status_at)
    deadline = core.deadline_ms()
    if deadline is not None:
        timeout = min(timeout, deadline / 1000 - now)
    if core.drain_target is not None:
        timeout = min(timeout, 0.1)
    return max(timeout, 0.0)


def _take(
    frames: list[Frame],
    core: Pipeline,
    stream: ReplicationStream,
    send: Callable[[Flush | None], None],
    now: float,
    status_interval_s: float,
) -> tuple[float, bool]:
    """The frames of one poll through the core; returns the time (read again during a long
    replay) and whether the server asked for a reply."""
    reply = False
    now_ms = now * 1000
    index, count = 0, len(frames)
    while index < count:
        # The payloads that complete nothing (row changes, Begins), all taken in one call.
        index, message = core.feed_quiet_run(frames, index)
        if index == count:
            break
        frame = frames[index]
        index += 1
        if type(frame) is bytes:  # an XLogData's payload, decoded into message
            assert message is not None
            for flush in core.feed_message(message, frame, now_ms):
                if flush is not None:
                    send(flush)
                else:  # a long replay: keep the walsender from timing us out
                    now = time.monotonic()
                    now_ms = now * 1000
                    if now - stream.last_status_at >= status_interval_s / 2:
                        stream.send_status()
        else:
            assert isinstance(frame, Keepalive)
            core.keepalive(frame.wal_end)
            reply = reply or frame.reply_requested
    return now, reply
