"""Batching: which records go to the sink together, and which LSN may be acknowledged.

Pure state, no I/O, driven by the daemon loop and tested as a hypothesis state machine
(tests/unit/test_batching_state.py). The rules:

* Records accumulate until the batch holds ``max_rows`` or ``max_delay_ms`` has passed since it
  started, or until the stream has nothing more to read (:meth:`Batcher.idle`) while the sink
  has no flush in flight; it is flushed only at a transaction boundary, and the flush carries
  the checkpoint of the last source commit it covers. One batch may cover many source
  transactions. The idle rule keeps the latency of a quiet stream near one sink write, and
  lets batches grow under load: while the sink writes one flush, the next one accumulates, and
  idle flushes keep the sink busy at most ``IDLE_SINK_SHARE`` of the time (a sink transaction
  has a fixed cost; a flush per source commit would pay it thousands of times a second, on a
  server the application shares). Past that, ``max_delay_ms`` and ``max_rows`` decide.
* A transaction larger than ``max_rows`` is sent to the sink in chunks (``Flush.checkpoint is
  None``) inside one open sink transaction, so memory stays bounded; the sink commits only
  with the chunk that carries the checkpoint.
* ``flushed_lsn`` (what we acknowledge to the server) moves only when the sink reports a
  checkpointed flush durable, and only forward. With nothing pending, in flight or open, a
  transaction that made no records, or a keepalive's WAL end, moves it directly: there is
  nothing to make durable first.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from cdc.pipeline.activity import ActivityRecord

# The share of the time idle flushes may keep the sink busy: after a write that took W ms, the
# next idle flush waits until W / IDLE_SINK_SHARE ms after that write began.
IDLE_SINK_SHARE = 0.5
# How fast the records' rate follows the stream: the weight of each flush's own rate.
RATE_WEIGHT = 0.3


def busyness(rate: float, busy_rate: float) -> float:
    """How busy a stream of ``rate`` records per second is, from 0 (a quarter of
    ``busy_rate`` or less: the quiet pacing) to 1 (``busy_rate`` or more: the busy pacing),
    linearly in between."""
    if busy_rate <= 0:
        return 0.0
    quiet = busy_rate / 4
    return min(max((rate - quiet) / (busy_rate - quiet), 0.0), 1.0)


def paced_ms(quiet_ms: float, busy_ms: float | None, busyness: float) -> float:
    """An interval of the pacing: ``quiet_ms`` for a quiet stream, ``busy_ms`` at
    ``busyness`` 1, in proportion between. Without a longer busy interval, or with the quiet
    one at 0 (no spacing asked for), the quiet one whatever the rate."""
    if busy_ms is None or busy_ms <= quiet_ms or quiet_ms <= 0:
        return quiet_ms
    return quiet_ms + busyness * (busy_ms - quiet_ms)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last source commit that a sink transaction covers."""

    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(slots=True)
class Flush:
    """A unit of work for the sink: write ``records``; commit with ``checkpoint`` if given."""

    records: list[ActivityRecord]
    checkpoint: Checkpoint | None
    # Commit-less flushes of the same sink transaction that came before this one.
    chunk_index: int = 0
    rows_before: int = field(default=0)


class Batcher:
    def __init__(
        self,
        *,
        max_rows: int,
        max_delay_ms: int,
        flushed_lsn: int = 0,
        idle_interval_ms: float = 0.0,
        busy_idle_interval_ms: float | None = None,
        busy_rate: float = 0.0,
    ) -> None:
        self.max_rows = max_rows
        self.max_delay_ms = max_delay_ms
        # Idle flushes at least this many ms apart (beyond what the sink's share allows): under
        # a quiet stream idle_interval_ms, growing with the records' rate up to
        # busy_idle_interval_ms at busy_rate records per second (None: always the quiet one).
        # Under load a sink transaction then carries more records, each paying less of its
        # fixed cost, and the daemon's threads wake less often, for latency a busy stream's
        # targets allow (docs/benchmarks.md: pacing).
        self.idle_interval_ms = idle_interval_ms
        self.busy_idle_interval_ms = busy_idle_interval_ms
        self.busy_rate = busy_rate
        self.rate = 0.0  # records per second, over the last checkpointed flushes
        self._rows_since_sent = 0
        self.flushed_lsn = flushed_lsn
        self._last_sent_ms = float("-inf")  # when the last checkpointed flush was taken
        self._last_write_ms = 0.0  # how long the sink took for the last one it confirmed
        self._records: list[ActivityRecord] = []
        self._rows_in_open_sink_txn = 0
        self._chunks_in_open_sink_txn = 0
        self._started_ms: float | None = None
        self._last_commit: Checkpoint | None = None
        self._in_transaction = False
        # (end LSN, when it was taken or None) of the checkpointed flushes sent
        self._in_flight: deque[tuple[int, float | None]] = deque()

    # -- what the daemon tells us -------------------------------------------------------
    def add(self, record: ActivityRecord, now_ms: float) -> Flush | None:
        """Add a record of the open transaction; returns a chunk when the batch is full."""
        self._in_transaction = True
        if self._started_ms is None:
            self._started_ms = now_ms
        self._records.append(record)
        self._rows_since_sent += 1
        if len(self._records) >= self.max_rows:
            return self._take(None, now_ms)
        return None

    def commit(self, checkpoint: Checkpoint, now_ms: float) -> Flush | None:
        """The open transaction committed; returns the flush when the batch is due."""
        self._in_transaction = False
        if self._is_idle() and not self._in_flight:
            # The transaction made no records and nothing is waiting: nothing to write.
            self.flushed_lsn = max(self.flushed_lsn, checkpoint.end_lsn)
            return None
        if self._started_ms is None:
            self._started_ms = now_ms
        self._last_commit = checkpoint
        return self.tick(now_ms)

    def tick(self, now_ms: float) -> Flush | None:
        """Time passed; returns the flush when the batch is due and at a boundary."""
        if self._in_transaction or self._last_commit is None:
            return None
        rows = len(self._records) + self._rows_in_open_sink_txn
        assert self._started_ms is not None
        if rows >= self.max_rows or now_ms - self._started_ms >= self.max_delay_ms:
            return self._take(self._last_commit, now_ms)
        return None

    def keepalive(self, wal_end: int) -> None:
        """The server's WAL end; when nothing is in flight it can be acknowledged as is."""
        if self._is_idle() and not self._in_flight:
            self.flushed_lsn = max(self.flushed_lsn, wal_end)

    def durable(self, end_lsn: int, now_ms: float | None = None) -> None:
        """The sink committed the flush whose checkpoint ends at ``end_lsn`` (at ``now_ms``)."""
        expected, sent_ms = self._in_flight.popleft()
        if expected != end_lsn:
            raise AssertionError(f"sink confirmed {end_lsn:X}, expected {expected:X}")
        self.flushed_lsn = max(self.flushed_lsn, end_lsn)
        if now_ms is not None and sent_ms is not None:
            self._last_write_ms = max(now_ms - sent_ms, 0.0)

    # -- what the daemon asks -------------------------------------------------------------
    def deadline_ms(self) -> float | None:
        """When :meth:`tick` may next return a flush (None: nothing waiting on time)."""
        if self._in_transaction or self._last_commit is None or self._started_ms is None:
            return None
        return self._started_ms + self.max_delay_ms

    def drain(self) -> Flush | None:
        """Everything committed so far, regardless of size or age (shutdown, --drain)."""
        if self._in_transaction or self._last_commit is None:
            return None
        return self._take(self._last_commit)

    def idle(self, now_ms: float) -> Flush | None:
        """The stream has nothing more to read right now: everything committed so far, unless
        a transaction is open, the sink still has a checkpointed flush in flight (then the
        batch keeps growing until that one is durable, or until max_rows/max_delay_ms), or it
        is too early for the sink's share (:meth:`idle_deadline_ms`)."""
        if not self.idle_flush_due(now_ms):
            return None
        assert self._last_commit is not None
        return self._take(self._last_commit, now_ms)

    def idle_flush_due(self, now_ms: float) -> bool:
        """Whether :meth:`idle` would return a flush now (so the daemon asks the socket)."""
        deadline = self.idle_deadline_ms()
        return deadline is not None and now_ms >= deadline

    def idle_deadline_ms(self) -> float | None:
        """From when :meth:`idle` may return a flush (None: not before something changes):
        :meth:`idle_spacing_ms`, and the last write's time / ``IDLE_SINK_SHARE``, after the
        last checkpointed flush was taken."""
        if self._in_transaction or self._last_commit is None or self._in_flight:
            return None
        spacing = max(self.idle_spacing_ms(), self._last_write_ms / IDLE_SINK_SHARE)
        return self._last_sent_ms + spacing

    def busyness(self) -> float:
        """0 (quiet) to 1 (busy): where the records' rate is between the two pacings."""
        return busyness(self.rate, self.busy_rate)

    def idle_spacing_ms(self) -> float:
        """How far apart idle flushes are at the records' current rate."""
        return paced_ms(self.idle_interval_ms, self.busy_idle_interval_ms, self.busyness())

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def pending_rows(self) -> int:
        return len(self._records) + self._rows_in_open_sink_txn

    def _is_idle(self) -> bool:
        return not self._records and self._rows_in_open_sink_txn == 0 and self._last_commit is None

    def _take(self, checkpoint: Checkpoint | None, now_ms: float | None = None) -> Flush:
        flush = Flush(
            self._records, checkpoint, self._chunks_in_open_sink_txn, self._rows_in_open_sink_txn
        )
        self._records = []
        if checkpoint is None:
            self._rows_in_open_sink_txn += len(flush.records)
            self._chunks_in_open_sink_txn += 1
        else:
            self._rows_in_open_sink_txn = 0
            self._chunks_in_open_sink_txn = 0
            self._last_commit = None
            self._started_ms = None
            self._in_flight.append((checkpoint.end_lsn, now_ms))
            if now_ms is not None:
                if math.isfinite(self._last_sent_ms) and now_ms > self._last_sent_ms:
                    sample = self._rows_since_sent * 1000 / (now_ms - self._last_sent_ms)
                    self.rate += RATE_WEIGHT * (sample - self.rate)
                self._rows_since_sent = 0
                self._last_sent_ms = now_ms
        return flush
