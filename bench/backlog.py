"""Backlogs: committed changes waiting in a replication slot, made with the write workload.

The platform's pgbench scripts run until the slot holds at least the asked-for number of row
changes (or bytes of WAL). Backlog writers commit with ``synchronous_commit = off`` (a database
setting, reset afterwards): it makes the backlog faster to build and changes nothing in what
it contains. The consumers' own sessions are unaffected (the daemon's sink forces it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.context import BenchContext, log, platform_change_counts
from bench.slots import confirmed_flush, insert_lsn, lsn_bytes
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

GENERATOR_CLIENTS = 8
FIRST_GUESS_CHANGES_PER_TXN = 2.0  # refined from what the first chunk produced


@dataclass(frozen=True)
class Backlog:
    end_lsn: str  # insert position after the last backlog transaction
    row_changes: int  # as the table statistics count them (the consumers count exactly)
    transactions: int
    wal_bytes: int  # between the slot's position and end_lsn: what the slot retains
    seconds_to_build: float


def build_backlog(
    ctx: BenchContext,
    conn: psycopg.Connection[Any],
    dbname: str,
    dsn: str,
    slot: str,
    *,
    min_changes: int = 0,
    min_wal_bytes: int = 0,
) -> Backlog:
    """Run the platform workload until the slot holds ``min_changes`` and ``min_wal_bytes``."""
    database = sql.Identifier(dbname)
    conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(database))
    start_lsn = confirmed_flush(conn, slot)
    changes_before = platform_change_counts(conn)
    changes = transactions = 0
    wal_bytes = 0
    seconds = 0.0
    per_txn = FIRST_GUESS_CHANGES_PER_TXN
    bytes_per_change = 1000.0
    try:
        while changes < min_changes or wal_bytes < min_wal_bytes:
            wanted = max(
                (min_changes - changes) / per_txn,
                (min_wal_bytes - wal_bytes) / bytes_per_change / per_txn,
                GENERATOR_CLIENTS * 50,
            )
            # Aim a little short of the remainder: the loop tops up, and overshooting by a
            # whole chunk would make the backlog (and the run) needlessly long.
            per_client = max(50, int(wanted * 0.9 / GENERATOR_CLIENTS) + 1)
            result = run_pgbench(
                ctx.server.bindir,
                dsn,
                PLATFORM_MIX,
                ctx.pgbench_variables(),
                PgbenchOptions(clients=GENERATOR_CLIENTS, transactions_per_client=per_client),
            )
            transactions += result.transactions
            seconds += result.duration_s
            changes = platform_change_counts(conn) - changes_before
            wal_bytes = lsn_bytes(conn, insert_lsn(conn), start_lsn)
            per_txn = max(changes / max(transactions, 1), 0.5)
            bytes_per_change = max(wal_bytes / max(changes, 1), 100.0)
            log.info(
                "backlog: %d row changes, %d transactions, %.1f MB of WAL",
                changes,
                transactions,
                wal_bytes / 2**20,
            )
    finally:
        conn.execute(sql.SQL("ALTER DATABASE {} RESET synchronous_commit").format(database))
    ctx.server.checkpoint()
    end_lsn = insert_lsn(conn)
    return Backlog(
        end_lsn=end_lsn,
        row_changes=changes,
        transactions=transactions,
        wal_bytes=lsn_bytes(conn, end_lsn, start_lsn),
        seconds_to_build=round(seconds, 1),
    )
