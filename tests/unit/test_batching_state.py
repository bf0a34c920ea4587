"""Batching and acknowledgement (cdc.pipeline.batching): a hypothesis state machine plus examples.

The machine drives a Batcher the way cdc.pipeline.daemon does: records are added inside an open
source
transaction, commits carry strictly increasing LSNs, time only moves forward, keepalives come
only between transactions and carry a WAL end at or past everything seen, and the sink
confirms checkpointed flushes oldest first. A model keeps what the sink was given: records of
every Flush are written into the open sink transaction, and they become durable when the
flush with the checkpoint that closes that sink transaction is confirmed with durable().
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import IDLE_SINK_SHARE, Batcher, Checkpoint, Flush, busyness
from tests.unit.messages import T0, record


def checkpoint(commit_lsn: int, end_lsn: int | None = None) -> Checkpoint:
    end = commit_lsn + 0x28 if end_lsn is None else end_lsn
    return Checkpoint(commit_lsn, end, T0 + timedelta(microseconds=commit_lsn))


class BatchingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.batcher = Batcher(max_rows=1, max_delay_ms=0)
        self.max_rows = 1
        self.max_delay_ms = 0
        self.now_ms = 1_000.0
        self.highest_lsn = 0  # the highest LSN the batcher has been told about
        self.acked = 0  # flushed_lsn after the previous step
        self.next_number = 0
        self.xid = 1
        self.open_txn: list[ActivityRecord] | None = None  # None: between transactions
        self.added_at: dict[int, float] = {}  # record number -> now_ms when it was added
        self.commits: list[tuple[Checkpoint, list[ActivityRecord]]] = []
        self.unflushed: list[ActivityRecord] = []  # added, not yet in any Flush
        self.open_sink: list[ActivityRecord] = []  # written by chunks, sink txn not committed
        # (end LSN, records, when taken or None) of the checkpointed flushes given to the sink
        self.in_flight: deque[tuple[int, list[ActivityRecord], float | None]] = deque()
        self.sink_committed: set[int] = set()  # record numbers in a committed sink txn
        self.durable: set[int] = set()  # record numbers the sink confirmed
        self.last_checkpoint_end = -1
        self.idle_interval_ms = 0
        self.busy_idle_interval_ms = 0
        self.last_sent_ms = float("-inf")  # when the last checkpointed flush was taken
        self.last_write_ms = 0.0  # how long the sink took for the last one confirmed with a time

    # -- setup ------------------------------------------------------------------------
    @initialize(
        max_rows=st.integers(1, 5),
        max_delay_ms=st.sampled_from([0, 1, 20, 100]),
        start_lsn=st.integers(0, 2**40),
        idle_interval_ms=st.sampled_from([0, 25, 100]),
        busy_idle_interval_ms=st.sampled_from([None, 100, 400]),
        busy_rate=st.sampled_from([0, 8, 4000]),
    )
    def start(
        self,
        max_rows: int,
        max_delay_ms: int,
        start_lsn: int,
        idle_interval_ms: int,
        busy_idle_interval_ms: int | None,
        busy_rate: int,
    ) -> None:
        self.batcher = Batcher(
            max_rows=max_rows,
            max_delay_ms=max_delay_ms,
            flushed_lsn=start_lsn,
            idle_interval_ms=idle_interval_ms,
            busy_idle_interval_ms=busy_idle_interval_ms,
            busy_rate=busy_rate,
        )
        self.max_rows = max_rows
        self.max_delay_ms = max_delay_ms
        self.idle_interval_ms = idle_interval_ms
        self.busy_idle_interval_ms = busy_idle_interval_ms or 0
        self.highest_lsn = self.acked = start_lsn

    # -- what the daemon does ------------------------------------------------------------
    @rule()
    def add(self) -> None:
        if self.open_txn is None:
            self.open_txn = []
            self.xid += 1
        self.next_number += 1
        rec = record(self.next_number, xid=self.xid)
        self.open_txn.append(rec)
        self.unflushed.append(rec)
        self.added_at[self.next_number] = self.now_ms
        flush = self.batcher.add(rec, self.now_ms)
        if flush is not None:
            assert flush.checkpoint is None, "add() must never close a sink transaction"
        self.receive(flush, self.now_ms)

    @rule(gap=st.integers(1, 2**20), length=st.integers(1, 200))
    def commit(self, gap: int, length: int) -> None:
        cp = checkpoint(self.highest_lsn + gap, self.highest_lsn + gap + length)
        self.highest_lsn = cp.end_lsn
        something_pending = bool(self.unflushed or self.open_sink)
        all_acknowledged = all(c.end_lsn <= self.batcher.flushed_lsn for c, _ in self.commits)
        nothing_at_all = not something_pending and not self.in_flight and all_acknowledged
        records = self.open_txn or []
        self.open_txn = None
        self.commits.append((cp, records))
        flush = self.batcher.commit(cp, self.now_ms)
        if self.max_delay_ms == 0 and something_pending:
            assert flush is not None, "with max_delay_ms=0 a commit with records must flush"
            assert flush.checkpoint == cp
        if nothing_at_all:
            assert flush is None
            assert self.batcher.flushed_lsn == cp.end_lsn, (
                "an empty transaction with nothing pending or in flight is acknowledged at once"
            )
        self.receive(flush, self.now_ms)

    @rule(elapsed_ms=st.integers(0, 150))
    def tick(self, elapsed_ms: int) -> None:
        self.now_ms += elapsed_ms
        flush = self.batcher.tick(self.now_ms)
        waiting = self.unflushed + self.open_sink
        if self.open_txn is None and waiting:
            oldest = min(self.added_at[r.seq] for r in waiting)
            if self.now_ms - oldest >= self.max_delay_ms:
                assert flush is not None, "a batch older than max_delay_ms must flush on tick"
        if self.open_txn is not None:
            assert flush is None or flush.checkpoint is None
        self.receive(flush, self.now_ms)

    @precondition(lambda self: self.open_txn is None)
    @rule(ahead=st.integers(0, 2**20))
    def keepalive(self, ahead: int) -> None:
        wal_end = self.highest_lsn + ahead
        self.highest_lsn = wal_end
        quiet = not self.unflushed and not self.open_sink and not self.in_flight
        quiet = quiet and all(cp.end_lsn <= self.batcher.flushed_lsn for cp, _ in self.commits)
        self.batcher.keepalive(wal_end)
        if quiet:
            assert self.batcher.flushed_lsn == wal_end, "an idle keepalive is acknowledged"

    @precondition(lambda self: bool(self.in_flight))
    @rule(timed=st.booleans())
    def sink_confirms_oldest(self, timed: bool) -> None:
        self.confirm_oldest(timed)

    def confirm_oldest(self, timed: bool) -> None:
        end_lsn, records, taken_ms = self.in_flight.popleft()
        self.batcher.durable(end_lsn, self.now_ms if timed else None)
        self.durable.update(r.seq for r in records)
        if timed and taken_ms is not None:
            self.last_write_ms = self.now_ms - taken_ms

    @rule()
    def stream_is_idle(self) -> None:
        """The socket has nothing more to read: what is committed goes to the sink at once,
        unless the sink is still writing a checkpointed flush (the batch keeps growing), or
        the last flush began less than max(idle_interval_ms, its write time / share) ago."""
        due = self.batcher.idle_flush_due(self.now_ms)
        deadline = self.batcher.idle_deadline_ms()
        waiting = self.unflushed + self.open_sink
        flush = self.batcher.idle(self.now_ms)
        assert (flush is not None) == due, "idle_flush_due says what idle() does"
        assert due == (deadline is not None and self.now_ms >= deadline)
        if self.open_txn is not None:
            assert flush is None, "an idle flush never cuts into an open transaction"
        if self.in_flight:
            assert flush is None, "while a flush is in flight, the next batch keeps growing"
        pace = self.batcher.idle_spacing_ms()  # grows with the records' rate, within bounds
        assert (
            self.idle_interval_ms <= pace <= max(self.idle_interval_ms, self.busy_idle_interval_ms)
        )
        spacing = max(pace, self.last_write_ms / IDLE_SINK_SHARE)
        earliest = self.last_sent_ms + spacing
        if deadline is not None:
            assert deadline == earliest, "the sink's share and the interval set the deadline"
        if flush is not None:
            assert self.now_ms >= earliest, "idle flushes keep the sink busy within its share"
        if self.open_txn is None and not self.in_flight and waiting:
            assert deadline is not None, "an idle flush that waits has a time to wake up at"
            if self.now_ms >= earliest:
                assert flush is not None, "committed records wait for nothing once it is time"
        if flush is not None:
            assert flush.checkpoint is not None
            assert flush.checkpoint == self.commits[-1][0], "it covers every commit so far"
        self.receive(flush, self.now_ms)
        if flush is not None:
            assert not self.unflushed and not self.open_sink

    @rule()
    def drain(self) -> None:
        flush = self.batcher.drain()
        if self.open_txn is not None:
            assert flush is None or flush.checkpoint is None
        self.receive(flush)
        if self.open_txn is None:
            assert not self.unflushed and not self.open_sink, "drain writes everything committed"

    @precondition(lambda self: self.open_txn is None)
    @rule()
    def drain_and_confirm_everything(self) -> None:
        self.receive(self.batcher.drain())
        while self.in_flight:
            self.confirm_oldest(timed=False)
        if self.commits:
            assert self.batcher.flushed_lsn >= self.commits[-1][0].end_lsn, (
                "with everything durable, the last commit must be acknowledged"
            )
        assert self.batcher.in_flight == 0

    # -- what the sink is given -----------------------------------------------------------
    def receive(self, flush: Flush | None, taken_ms: float | None = None) -> None:
        """What the sink is given; ``taken_ms``: the time the batcher was told (drain: none)."""
        if flush is None:
            return
        count = len(flush.records)
        assert flush.records == self.unflushed[:count], (
            "every record is flushed exactly once, in the order it was added"
        )
        del self.unflushed[:count]
        assert flush.rows_before == len(self.open_sink)
        assert flush.chunk_index == len(self.open_sink) // self.max_rows
        if flush.checkpoint is None:
            assert self.open_txn is not None, "a chunk is only cut inside a transaction"
            assert count == self.max_rows, "a chunk is only cut when max_rows is reached"
            self.open_sink.extend(flush.records)
            return
        cp = flush.checkpoint
        committed = [c for c, _ in self.commits]
        assert cp in committed, "a checkpoint names a source commit the batcher was given"
        assert cp.end_lsn > self.last_checkpoint_end, "checkpoints move forward"
        self.last_checkpoint_end = cp.end_lsn
        numbers = {r.seq for r in flush.records}
        uncommitted = {r.seq for r in self.open_txn or []}
        assert not numbers & uncommitted, (
            "a flush with a checkpoint never holds records of an uncommitted transaction"
        )
        covered = {r.seq for c, records in self.commits if c.end_lsn <= cp.end_lsn for r in records}
        written = self.sink_committed | {r.seq for r in self.open_sink} | numbers
        assert covered <= written, (
            "a stored checkpoint must not cover a commit whose records are not written: "
            "after a restart they would be skipped and lost"
        )
        sink_txn = [*self.open_sink, *flush.records]
        self.open_sink = []
        self.sink_committed.update(r.seq for r in sink_txn)
        self.in_flight.append((cp.end_lsn, sink_txn, taken_ms))
        if taken_ms is not None:
            self.last_sent_ms = taken_ms

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def acknowledged_lsn_never_goes_backwards(self) -> None:
        assert self.batcher.flushed_lsn >= self.acked
        self.acked = self.batcher.flushed_lsn

    @invariant()
    def acknowledged_lsn_never_passes_what_is_durable(self) -> None:
        flushed = self.batcher.flushed_lsn
        assert flushed <= self.highest_lsn
        for cp, records in self.commits:
            if cp.end_lsn <= flushed:
                missing = [r.seq for r in records if r.seq not in self.durable]
                assert not missing, f"acknowledged {flushed:X} but records {missing} not durable"

    @invariant()
    def records_held_in_memory_stay_within_max_rows(self) -> None:
        assert len(self.unflushed) <= self.max_rows

    @invariant()
    def batcher_reports_the_same_in_flight_and_transaction_state(self) -> None:
        assert self.batcher.in_flight == len(self.in_flight)
        assert self.batcher.in_transaction == (self.open_txn is not None)

    @invariant()
    def a_waiting_committed_batch_has_a_deadline(self) -> None:
        waiting = self.unflushed + self.open_sink
        if self.open_txn is None and waiting:
            deadline = self.batcher.deadline_ms()
            assert deadline is not None, "records wait but the daemon is given no deadline"
            oldest = min(self.added_at[r.seq] for r in waiting)
            assert deadline <= oldest + self.max_delay_ms


BatchingMachine.TestCase.settings = settings(
    max_examples=250, stateful_step_count=40, deadline=None
)
test_batcher_never_acknowledges_past_what_is_durable = BatchingMachine.TestCase


# -- examples of the same rules ------------------------------------------------------------


def test_empty_transaction_with_nothing_in_flight_is_acknowledged_at_once() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=500, flushed_lsn=0x100)
    assert batcher.commit(checkpoint(0x200, 0x228), now_ms=0) is None
    assert batcher.flushed_lsn == 0x228


def test_empty_transaction_with_a_flush_in_flight_waits_for_the_sink() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=0)
    batcher.add(record(1), now_ms=0)
    first = batcher.commit(checkpoint(0x200, 0x228), now_ms=0)
    assert first is not None and first.checkpoint is not None
    empty = batcher.commit(checkpoint(0x300, 0x328), now_ms=0)
    assert batcher.flushed_lsn == 0
    assert empty is not None and empty.records == [], "the empty commit queues behind it"
    batcher.durable(0x228)
    assert batcher.flushed_lsn == 0x228
    batcher.durable(0x328)
    assert batcher.flushed_lsn == 0x328


def test_empty_transaction_after_a_pending_batch_does_not_acknowledge_past_it() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=1_000)
    batcher.add(record(1), now_ms=0)
    assert batcher.commit(checkpoint(0x200), now_ms=0) is None  # batch not due yet
    assert batcher.commit(checkpoint(0x300), now_ms=1) is None
    assert batcher.flushed_lsn == 0


def test_commit_below_max_rows_waits_for_max_delay_then_tick_flushes() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=500)
    batcher.add(record(1), now_ms=1_000)
    batcher.add(record(2), now_ms=1_100)
    assert batcher.commit(checkpoint(0x200), now_ms=1_200) is None
    assert batcher.deadline_ms() == 1_500
    assert batcher.tick(1_499) is None
    flush = batcher.tick(1_500)
    assert flush is not None
    assert flush.records == [record(1), record(2)]
    assert flush.checkpoint == checkpoint(0x200)


def test_many_transactions_share_one_flush_with_the_last_checkpoint() -> None:
    batcher = Batcher(max_rows=3, max_delay_ms=10_000)
    batcher.add(record(1), now_ms=0)
    assert batcher.commit(checkpoint(0x100), now_ms=0) is None
    batcher.add(record(2), now_ms=0)
    assert batcher.commit(checkpoint(0x200), now_ms=0) is None
    batcher.add(record(3), now_ms=0)  # the batch is full, but inside a transaction: a chunk
    flush = batcher.commit(checkpoint(0x300), now_ms=0)
    assert flush is not None
    assert flush.checkpoint == checkpoint(0x300)
    assert flush.rows_before == 3


def test_transaction_larger_than_max_rows_is_sent_in_chunks_then_committed() -> None:
    batcher = Batcher(max_rows=2, max_delay_ms=10_000)
    flushes = [batcher.add(record(n), now_ms=0) for n in range(1, 6)]
    chunks = [f for f in flushes if f is not None]
    assert [c.records for c in chunks] == [[record(1), record(2)], [record(3), record(4)]]
    assert [(c.checkpoint, c.chunk_index, c.rows_before) for c in chunks] == [
        (None, 0, 0),
        (None, 1, 2),
    ]
    final = batcher.commit(checkpoint(0x500), now_ms=0)
    assert final is not None
    assert final.records == [record(5)]
    assert (final.checkpoint, final.chunk_index, final.rows_before) == (checkpoint(0x500), 2, 4)
    assert batcher.flushed_lsn == 0, "nothing is acknowledged before the sink confirms"


def test_keepalive_is_acknowledged_only_when_nothing_is_pending_or_in_flight() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=1_000)
    batcher.keepalive(0x50)
    assert batcher.flushed_lsn == 0x50
    batcher.add(record(1), now_ms=0)
    batcher.commit(checkpoint(0x100, 0x128), now_ms=0)
    batcher.keepalive(0x900)
    assert batcher.flushed_lsn == 0x50, "a pending batch holds the acknowledgement back"
    flush = batcher.drain()
    assert flush is not None
    batcher.keepalive(0x900)
    assert batcher.flushed_lsn == 0x50, "a flush in flight holds the acknowledgement back"
    batcher.durable(0x128)
    assert batcher.flushed_lsn == 0x128
    batcher.keepalive(0x900)
    assert batcher.flushed_lsn == 0x900


def test_keepalive_below_the_acknowledged_lsn_does_not_move_it_back() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=0, flushed_lsn=0x1000)
    batcher.keepalive(0x10)
    assert batcher.flushed_lsn == 0x1000


def test_sink_confirming_out_of_order_is_refused() -> None:
    batcher = Batcher(max_rows=1, max_delay_ms=0)
    batcher.add(record(1), now_ms=0)
    batcher.commit(checkpoint(0x100, 0x128), now_ms=0)
    batcher.add(record(2), now_ms=0)
    batcher.commit(checkpoint(0x200, 0x228), now_ms=0)
    with pytest.raises(AssertionError, match="expected 128"):
        batcher.durable(0x228)


def test_drain_inside_an_open_transaction_writes_no_checkpoint() -> None:
    batcher = Batcher(max_rows=10, max_delay_ms=0)
    batcher.add(record(1), now_ms=0)
    assert batcher.drain() is None
    assert batcher.tick(10_000) is None
    assert batcher.deadline_ms() is None


def test_an_idle_stream_flushes_committed_records_without_waiting_for_max_delay() -> None:
    batcher = Batcher(max_rows=100, max_delay_ms=10_000)
    batcher.add(record(1), now_ms=0)
    assert batcher.commit(checkpoint(0x100), now_ms=0) is None  # neither full nor old
    assert batcher.idle_flush_due(now_ms=0)
    flush = batcher.idle(now_ms=0)
    assert flush is not None and flush.records == [record(1)]
    assert flush.checkpoint == checkpoint(0x100)
    assert not batcher.idle_flush_due(now_ms=0) and batcher.idle(now_ms=0) is None


def test_an_idle_stream_never_flushes_an_open_transaction() -> None:
    batcher = Batcher(max_rows=100, max_delay_ms=10_000)
    batcher.add(record(1), now_ms=0)
    assert not batcher.idle_flush_due(now_ms=0)
    assert batcher.idle(now_ms=0) is None


def test_while_a_flush_is_in_flight_the_next_batch_grows_until_it_is_durable() -> None:
    batcher = Batcher(max_rows=100, max_delay_ms=10_000)
    batcher.add(record(1), now_ms=0)
    batcher.commit(checkpoint(0x100, 0x128), now_ms=0)
    assert batcher.idle(now_ms=0) is not None  # in flight now
    for n in (2, 3):
        batcher.add(record(n), now_ms=1)
        batcher.commit(checkpoint(0x100 * n, 0x100 * n + 0x28), now_ms=1)
        assert batcher.idle(now_ms=1) is None, "the sink is busy: keep batching"
    batcher.durable(0x128)
    flush = batcher.idle(now_ms=1)
    assert flush is not None and flush.records == [record(2), record(3)]
    assert flush.checkpoint == checkpoint(0x300, 0x328)
    assert batcher.flushed_lsn == 0x128, "acknowledged only what is durable"


def test_idle_flushes_keep_the_sink_busy_within_its_share() -> None:
    batcher = Batcher(max_rows=100, max_delay_ms=10_000)
    batcher.add(record(1), now_ms=0)
    batcher.commit(checkpoint(0x100, 0x128), now_ms=0)
    assert batcher.idle(now_ms=0) is not None
    batcher.durable(0x128, now_ms=10)  # the sink took 10 ms
    batcher.add(record(2), now_ms=11)
    batcher.commit(checkpoint(0x200, 0x228), now_ms=11)
    deadline = 10 / IDLE_SINK_SHARE  # the write began at 0
    assert deadline > 11 and batcher.idle_deadline_ms() == deadline
    assert batcher.idle(now_ms=deadline - 1) is None
    flush = batcher.idle(now_ms=deadline)
    assert flush is not None and flush.records == [record(2)]


def test_idle_flushes_are_spaced_by_the_interval_and_the_daemon_is_told_when_to_wake() -> None:
    batcher = Batcher(max_rows=100, max_delay_ms=10_000, idle_interval_ms=25)
    batcher.add(record(1), now_ms=0)
    batcher.commit(checkpoint(0x100, 0x128), now_ms=0)
    assert batcher.idle(now_ms=0) is not None, "the first one goes at once"
    batcher.durable(0x128)
    batcher.add(record(2), now_ms=5)
    batcher.commit(checkpoint(0x200, 0x228), now_ms=5)
    assert batcher.idle(now_ms=5) is None, "20 ms too early"
    assert batcher.idle_deadline_ms() == 25
    flush = batcher.idle(now_ms=25)
    assert flush is not None and flush.records == [record(2)]


def test_busyness_is_0_up_to_a_quarter_of_the_busy_rate_1_from_it_and_linear_between() -> None:
    assert busyness(0, 4000) == busyness(1000, 4000) == 0.0
    assert busyness(2500, 4000) == 0.5
    assert busyness(4000, 4000) == busyness(50_000, 4000) == 1.0
    assert busyness(50_000, 0) == 0.0  # busy_rate 0: always the quiet pacing


def _stream(batcher: Batcher, now: float, until: float, every_ms: float, rows: int) -> float:
    """Transactions of ``rows`` records every ``every_ms`` until ``until``, with idle flushes
    whenever they are due, each durable 2 ms after it was taken. Returns the clock."""
    lsn = int(now) * 0x1000 + 0x100
    while now < until:
        for _ in range(rows):
            batcher.add(record(lsn), now_ms=now)
        batcher.commit(checkpoint(lsn, lsn + 0x28), now_ms=now)
        if batcher.idle(now_ms=now) is not None:
            batcher.durable(lsn + 0x28, now_ms=now + 2)
        lsn += 0x100
        now += every_ms
    return now


def test_a_busy_stream_spaces_idle_flushes_up_to_the_busy_interval_and_a_quiet_one_comes_back() -> (
    None
):
    batcher = Batcher(
        max_rows=100_000, max_delay_ms=10_000, idle_interval_ms=25, busy_idle_interval_ms=100,
        busy_rate=4000,
    )  # fmt: skip
    assert batcher.idle_spacing_ms() == 25 and batcher.busyness() == 0.0
    now = _stream(batcher, 0.0, 2_000.0, every_ms=10, rows=60)  # 6,000 records a second
    assert 5_000 < batcher.rate < 7_000
    assert batcher.busyness() == 1.0 and batcher.idle_spacing_ms() == 100
    now = _stream(batcher, now, now + 3_000.0, every_ms=10, rows=25)  # 2,500 a second
    assert 2_000 < batcher.rate < 3_000 and 50 < batcher.idle_spacing_ms() < 75
    _stream(batcher, now, now + 5_000.0, every_ms=100, rows=5)  # 50 a second: quiet again
    assert batcher.rate < 1_000 and batcher.idle_spacing_ms() == 25


def test_without_a_busy_interval_the_pacing_is_fixed_whatever_the_rate() -> None:
    batcher = Batcher(max_rows=100_000, max_delay_ms=10_000, idle_interval_ms=25, busy_rate=4000)
    _stream(batcher, 0.0, 2_000.0, every_ms=10, rows=60)
    assert batcher.rate > 5_000 and batcher.idle_spacing_ms() == 25
    unspaced = Batcher(
        max_rows=100_000, max_delay_ms=10_000, idle_interval_ms=0, busy_idle_interval_ms=60,
        busy_rate=4000,
    )  # fmt: skip
    _stream(unspaced, 0.0, 2_000.0, every_ms=10, rows=60)
    assert unspaced.rate > 5_000 and unspaced.idle_spacing_ms() == 0  # 0 asks for none
