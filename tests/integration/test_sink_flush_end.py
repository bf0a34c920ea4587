"""The end of a sink flush (``sql/store/flush_end.sql``: the rollup counts, the chain's head and
the checkpoint in one statement) on a real PostgreSQL: records, counts, head and checkpoint
commit in ONE transaction; the checkpoint never moves back; a second writer waits on the head
lock and chains after the first (the chain never forks)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from cdc.config import Settings
from cdc.lsn import format_lsn
from cdc.pipeline.batching import Flush
from cdc.pipeline.sink import Sink
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import setup_and_settings
from tests.integration.test_store import (
    _fresh_lsns,  # noqa: F401  (the autouse fixture of made-up LSNs)
    checkpoint_of,
    db_now,
    synthetic,
)

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, balance numeric);"
TABLES = [{"name": "public.accounts", "entity_type": "account", "category": "account"}]


@pytest.fixture
def store(pg: PgDatabase) -> Settings:
    return setup_and_settings(pg, DDL, TABLES)


def _sink(pg: PgDatabase, slot: str) -> Sink:
    sink = Sink(pg.dsn, schema="activity", table="records", slot=slot)
    sink.open()
    return sink


def _state(pg: PgDatabase) -> dict[str, Any]:
    """What another session sees: records, both rollups' totals, the head, the checkpoint."""
    (records,) = pg.execute("SELECT count(*) FROM activity.records")[0]
    (minutes,) = pg.execute("SELECT coalesce(sum(n), 0) FROM activity.activity_per_minute")[0]
    (hours,) = pg.execute("SELECT coalesce(sum(n), 0) FROM activity.activity_per_hour")[0]
    head = pg.execute("SELECT position, hash FROM activity.records_chain_head")[0]
    checkpoints = pg.execute("SELECT slot_name, end_lsn::text FROM activity.checkpoints")
    return {
        "records": records,
        "per_minute": minutes,
        "per_hour": hours,
        "head_position": head[0],
        "head_hash": bytes(head[1]),
        "checkpoints": checkpoints,
    }


def test_chunks_and_a_checkpoint_alone_commit_records_counts_head_and_checkpoint_at_once(
    pg: PgDatabase, store: Settings
) -> None:
    now = db_now(pg)
    first, second = synthetic(now, 3), synthetic(now, 2)
    before = _state(pg)
    sink = _sink(pg, pg.slot)
    try:
        sink.write(Flush(first, None))
        sink.write(Flush(second, None))
        assert _state(pg) == before  # nothing of the open sink transaction is visible
        checkpoint = checkpoint_of(second)
        sink.write(Flush([], checkpoint))  # the checkpoint alone ends the transaction
    finally:
        sink.close()
    after = _state(pg)
    (last_hash,) = pg.execute(
        "SELECT hash FROM activity.records ORDER BY chain_position DESC LIMIT 1"
    )[0]
    assert after == {
        "records": 5,
        "per_minute": 5,
        "per_hour": 5,
        "head_position": 5,
        "head_hash": bytes(last_hash),
        "checkpoints": [(pg.slot, format_lsn(checkpoint.end_lsn))],
    }


def test_a_checkpoint_never_moves_back_but_the_records_of_its_flush_are_written(
    pg: PgDatabase, store: Settings
) -> None:
    now = db_now(pg)
    early, late = synthetic(now, 1), synthetic(now, 1)
    sink = _sink(pg, pg.slot)
    try:
        sink.write(Flush(late, checkpoint_of(late)))
        sink.write(Flush(early, checkpoint_of(early)))
    finally:
        sink.close()
    state = _state(pg)
    assert state["records"] == 2 and state["per_minute"] == 2 and state["head_position"] == 2
    (stored,) = pg.execute("SELECT commit_lsn::text FROM activity.checkpoints")[0]
    assert stored == late[0].commit_lsn


def test_a_second_writer_waits_on_the_head_lock_then_chains_after_the_first(
    pg: PgDatabase, store: Settings
) -> None:
    now = db_now(pg)
    ours, theirs = synthetic(now, 3), synthetic(now, 2)
    first, second = _sink(pg, pg.slot), _sink(pg, pg.slot + "_other")
    assert second._conn is not None
    other_pid = second._conn.info.backend_pid
    failures: list[BaseException] = []

    def write_theirs() -> None:
        try:
            second.write(Flush(theirs, checkpoint_of(theirs)))
        except BaseException as exc:  # reported by the test, below
            failures.append(exc)

    try:
        first.write(Flush(ours, None))  # locks the head, holds it until its commit
        writer = threading.Thread(target=write_theirs)
        writer.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            waiting = None
            while waiting is None and writer.is_alive():
                row = conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity "
                    "WHERE pid = %s AND wait_event_type = 'Lock'",
                    (other_pid,),
                ).fetchone()
                waiting = row[0] if row else None
                time.sleep(0.01)
        assert waiting == "Lock"  # the second writer waits on the head's row lock
        first.write(Flush([], checkpoint_of(ours)))
        writer.join()
    finally:
        first.close()
        second.close()
    assert failures == []
    positions = pg.execute(
        "SELECT chain_position, commit_lsn::text FROM activity.records ORDER BY chain_position"
    )
    assert [p for p, _ in positions] == [1, 2, 3, 4, 5]
    assert [lsn for _, lsn in positions] == [ours[0].commit_lsn] * 3 + [theirs[0].commit_lsn] * 2
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        report = verify_chain(conn, "activity", "records")
    assert report.problem is None, report.problem
    assert report.checked == 5


def test_the_head_is_locked_by_the_statement_that_opens_the_sink_transaction(
    pg: PgDatabase, store: Settings
) -> None:
    """``BEGIN`` and the head's ``SELECT ... FOR UPDATE`` go as one simple query: the row comes
    back typed as psycopg reads it, the transaction is open and holds the lock until psycopg
    ends it; on a connection already in a transaction only the lock is taken."""
    sink = _sink(pg, pg.slot)
    other = psycopg.connect(pg.dsn, autocommit=True)
    try:
        conn = sink._conn
        assert conn is not None
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = sink._sql.lock_head_row(conn)
        stored = other.execute("SELECT hash, position FROM activity.records_chain_head").fetchone()
        assert row == stored and isinstance(row[0], bytes) and isinstance(row[1], int)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("SELECT 1 FROM activity.records_chain_head FOR UPDATE NOWAIT")
        assert sink._sql.lock_head_row(conn) == row  # in the open transaction: the lock alone
        conn.rollback()
        other.execute("SELECT 1 FROM activity.records_chain_head FOR UPDATE NOWAIT")
    finally:
        other.close()
        sink.close()


def test_a_refused_head_lock_raises_psycopgs_error_and_the_connection_rolls_back(
    pg: PgDatabase, store: Settings
) -> None:
    sink = _sink(pg, pg.slot)
    try:
        conn = sink._conn
        assert conn is not None
        pg.execute("ALTER TABLE activity.records_chain_head RENAME TO chain_head_away")
        try:
            with pytest.raises(psycopg.errors.UndefinedTable) as refused:
                sink._sql.lock_head_row(conn)
            assert "records_chain_head" in str(refused.value)
            assert refused.value.diag.sqlstate == "42P01"
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            conn.rollback()
        finally:
            pg.execute("ALTER TABLE activity.chain_head_away RENAME TO records_chain_head")
        assert sink._sql.lock_head_row(conn) is not None  # usable again
        conn.rollback()
    finally:
        sink.close()
