"""Replication slots and WAL positions, seen from a normal (non-replication) connection.

Every consumer in a comparison drains the *same* backlog: each gets its own copy of the slot
(``pg_copy_logical_replication_slot``) taken before the backlog was written, so they all start
at the same position and see the same changes up to the same end.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench.server import drop_slot


def insert_lsn(conn: psycopg.Connection[Any]) -> str:
    """Where WAL ends now; ``pg_current_wal_lsn()`` can lag behind the last commit."""
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def lsn_bytes(conn: psycopg.Connection[Any], later: str, earlier: str) -> int:
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (later, earlier)
    ).fetchone()
    assert row is not None
    return int(row[0])


def confirmed_flush(conn: psycopg.Connection[Any], slot: str) -> str:
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"replication slot {slot} does not exist")
    return str(row[0])


def copy_slot(conn: psycopg.Connection[Any], source: str, copy: str) -> None:
    """A permanent copy of ``source`` at the same position (replacing an older ``copy``)."""
    drop_slot(conn, copy)
    conn.execute("SELECT pg_copy_logical_replication_slot(%s, %s, false)", (source, copy))


def _wait_until(
    conn: psycopg.Connection[Any],
    query: str,
    params: tuple[str, ...],
    *,
    timeout_s: float,
    interval_s: float,
    failure: str,
) -> float:
    """Seconds until ``query`` (one boolean) holds; raises ``failure`` after ``timeout_s``."""
    started = time.monotonic()
    while True:
        row = conn.execute(query, params).fetchone()
        if row and row[0]:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(failure)
        time.sleep(interval_s)


def wait_confirmed(
    conn: psycopg.Connection[Any], slot: str, target_lsn: str, *, timeout_s: float = 600.0
) -> float:
    """Seconds until the slot's consumer has confirmed ``target_lsn``; raises on timeout."""
    return _wait_until(
        conn,
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (target_lsn, slot),
        timeout_s=timeout_s,
        interval_s=0.02,
        failure=f"slot {slot} did not reach {target_lsn} within {timeout_s}s",
    )


def commit_marker(conn: psycopg.Connection[Any]) -> str:
    """Commit one change the daemon records (an organization's metadata) and return an LSN
    that its record's ``commit_lsn`` will be at or after.

    Waiting for the slot to confirm the current WAL position is not a good test of "caught
    up": the WAL ends with the daemon's own writes, which it acknowledges only on a later
    keepalive. A record that can only exist once everything committed before it was recorded
    (the sink writes in commit order) is.
    """
    with conn.transaction():
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        conn.execute(
            "UPDATE public.organizations "
            "SET metadata = metadata || jsonb_build_object('bench_marker', clock_timestamp()) "
            "WHERE id = 1"
        )
    assert row is not None
    return str(row[0])


def wait_recorded(
    conn: psycopg.Connection[Any], marker_lsn: str, *, timeout_s: float = 900.0
) -> float:
    """Seconds until the store holds a record committed at or after ``marker_lsn``."""
    return _wait_until(
        conn,
        "SELECT coalesce(max(commit_lsn) >= %s::pg_lsn, false) FROM activity.records",
        (marker_lsn,),
        timeout_s=timeout_s,
        interval_s=0.01,
        failure=f"no record at or after {marker_lsn} within {timeout_s}s",
    )


def wait_sent(
    conn: psycopg.Connection[Any], slot: str, target_lsn: str, *, timeout_s: float = 300.0
) -> float:
    """Seconds until the walsender streaming ``slot`` has decoded and sent WAL up to
    ``target_lsn`` (a consumer that acknowledges late, like ``pg_recvlogical``, is judged by
    what it was sent); waits for the walsender to start first."""
    return _wait_until(
        conn,
        "SELECT coalesce(bool_or(r.sent_lsn >= %s::pg_lsn), false) "
        "FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid "
        "WHERE s.slot_name = %s",
        (target_lsn, slot),
        timeout_s=timeout_s,
        interval_s=0.01,
        failure=f"slot {slot} was not sent {target_lsn} within {timeout_s}s",
    )


def sink_transactions(store: psycopg.Connection[Any]) -> tuple[int, int]:
    """Records in a store and the sink transactions that wrote them (``recorded_at`` is the
    sink transaction's ``now()``: one value per transaction)."""
    row = store.execute(
        "SELECT count(*), count(DISTINCT recorded_at) FROM activity.records"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
