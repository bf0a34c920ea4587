"""The sink's background threads: one encodes the next flush while the other writes the one
before and waits for its commit (:class:`SinkWriter`)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable

from cdc.errors import CdcError, SinkError
from cdc.metrics import Metrics, tally
from cdc.pipeline.batching import Flush
from cdc.pipeline.copy_lines import PreparedFlush
from cdc.pipeline.sink import Sink
from cdc.pipeline.sinks import RecordSink


class SinkWriter:
    """Runs a :class:`~cdc.pipeline.sinks.RecordSink` in two background threads, a pipeline: for the
    PostgreSQL sink the encoder prepares the next flush (COPY data, chain hashes, rollup
    counts: :meth:`Sink.prepare`) while the writer sends the previous one and waits for its
    commit (psycopg releases the GIL while it waits); other sinks get their flushes as they are.

    The daemon submits flushes in order; for each flush with a checkpoint the writer reports
    the checkpoint's ``end_lsn`` once it is durable, through :meth:`completed`, and writes a
    byte to ``wake_fd`` so the daemon's ``select`` wakes up. The queues are bounded: when the
    sink is slower than the stream, ``submit`` blocks, which is the back-pressure. At most
    ``max_queued`` flushes wait, one is being encoded, one waits encoded and one is written.
    """

    def __init__(
        self, sink: RecordSink, *, max_queued: int = 1, metrics: Metrics | None = None
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._queue: queue.Queue[Flush | None] = queue.Queue(maxsize=max_queued)
        self._prepared: queue.Queue[PreparedFlush | None] = queue.Queue(maxsize=1)
        self._done: queue.Queue[int | CdcError] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._encoder = threading.Thread(
            target=self._encode, name="activity-cdc-sink-encoder", daemon=True
        )
        self._thread = threading.Thread(target=self._run, name="activity-cdc-sink", daemon=True)
        self._failed = threading.Event()

    @property
    def wake_fd(self) -> int:
        return self._wake_r

    def start(self) -> None:
        self._encoder.start()
        self._thread.start()

    def submit(self, flush: Flush, on_wait: Callable[[], None] | None = None) -> None:
        """Queue a flush; while the sink is behind this blocks (back-pressure), calling
        ``on_wait`` every half second so the caller can keep its replication link alive."""
        while True:
            if self._failed.is_set():
                return  # the error is waiting in completed()
            try:
                self._queue.put(flush, timeout=0.5)
                return
            except queue.Full:
                if on_wait is not None:
                    on_wait()

    def completed(self) -> list[int]:
        """End LSNs made durable since the last call; raises the writer's error if it failed."""
        if self._done.empty():
            # The common case on every loop turn: nothing to report, no syscall, no exception.
            # (The writer queues before it writes the wake-up byte, so a byte left unread here
            # only wakes the loop once more.)
            return []
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        done: list[int] = []
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return done
            if isinstance(item, CdcError):
                raise item
            done.append(item)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what was submitted, then end the thread."""
        if self._thread.is_alive():
            while not self._failed.is_set():
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout_s)
        if self._encoder.is_alive():
            self._encoder.join(timeout_s)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _fail(self, error: CdcError) -> None:
        self._done.put(error)
        self._failed.set()
        os.write(self._wake_w, b"!")

    def _encode(self) -> None:
        """The encoder thread: prepares each flush, in order, for the writer; passes the end
        (None) on, and ends when the writer failed."""
        while True:
            try:
                flush = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._failed.is_set():
                    return
                continue
            prepared: PreparedFlush | None = None
            if flush is not None:
                try:
                    if isinstance(self._sink, Sink):
                        prepared = self._sink.prepare(flush)
                    else:
                        prepared = PreparedFlush(flush, None, None, None, None)
                except Exception as exc:  # a bug must still stop the daemon, not hang it
                    self._fail(SinkError(f"unexpected sink failure: {exc!r}"))
            while True:
                try:
                    self._prepared.put(prepared, timeout=0.5)
                    break
                except queue.Full:
                    if self._failed.is_set():
                        return
            if prepared is None:
                return  # the end, or this thread failed: the writer stops after its flush

    def _run(self) -> None:
        while True:
            flush = self._prepared.get()
            if flush is None:
                return
            started = time.monotonic()
            try:
                sink = self._sink
                parked = sink.write(flush) if isinstance(sink, Sink) else sink.write(flush.flush)
            except CdcError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # a bug must still stop the daemon, not hang it
                self._fail(SinkError(f"unexpected sink failure: {exc!r}"))
                return
            if self._metrics is not None and parked:
                for _ in range(parked):
                    self._metrics.error("dead_letter")
            records = flush.flush.records
            if self._metrics is not None:  # here, so the read loop never pays for it
                self._metrics.batch_written(
                    rows=len(records),
                    seconds=time.monotonic() - started,
                    by_table_op=tally(records),
                )
            checkpoint = flush.flush.checkpoint
            if checkpoint is not None:
                self._done.put(checkpoint.end_lsn)
                os.write(self._wake_w, b".")
