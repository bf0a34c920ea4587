"""4. Memory: the daemon's peak resident set while it drains what could blow it up.

* one transaction of ``memory_txn_changes`` row changes (half inserts of notifications, half
  updates of those rows: REPLICA IDENTITY FULL sends the old row with each update);
* a backlog of at least ``memory_backlog_mb`` of WAL from the platform workload;
* for scale, the same daemon draining nothing (the interpreter, psycopg, pydantic: its floor).

Peak = ``VmHWM`` of /proc/<pid>/status of the ``cdc run --drain`` process, sampled every 20 ms
(the kernel keeps the high-water mark, so a late sample still sees an early peak).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from bench.backlog import build_backlog
from bench.cdc_process import SLOT, DaemonProcess, cdc_setup
from bench.context import BenchContext, log, target
from bench.platform_db import create_platform_db
from bench.slots import confirmed_flush, insert_lsn, lsn_bytes

PEAK_TARGET_MB = 200.0
DBNAME = "memory"

# One source transaction: inserts, then an update of every inserted row (realistic rows: the
# text and jsonb of a notification). Row changes = 2 * :rows.
_BIG_INSERT = """
INSERT INTO public.notifications (user_id, kind, title, body, status, metadata)
SELECT 1 + g %% %(users)s, 'distribution', 'Distribution of ' || (g %% 997) || '.00 USD paid',
       'Your distribution for record date ' || current_date || ' was paid to wallet '
           || md5(g::text) || '.',
       'unread', jsonb_build_object('batch', 'bench-big-txn', 'n', g)
  FROM generate_series(1, %(rows)s::integer) AS g
"""
_BIG_UPDATE = """
UPDATE public.notifications SET status = 'read', read_at = now()
 WHERE metadata @> '{"batch": "bench-big-txn"}'
"""


Fill = Callable[[BenchContext, psycopg.Connection[Any], str], int]


def run(ctx: BenchContext) -> dict[str, Any]:
    cases = {
        "idle": _case(ctx, "idle", _nothing),
        "one_big_transaction": _case(ctx, "big-txn", _big_transaction),
        "backlog": _case(ctx, "backlog", _backlog),
    }
    for name, case in cases.items():
        log.info("memory %-20s peak RSS %.1f MB", name, case["peak_rss_mb"])
    big, backlog = cases["one_big_transaction"], cases["backlog"]
    return {
        "status": "ok",
        "cases": cases,
        "targets": [
            target(
                f"memory: peak RSS, one {big['row_changes']:,}-change transaction",
                big["peak_rss_mb"],
                "<=",
                PEAK_TARGET_MB,
                "MB",
            ),
            target(
                f"memory: peak RSS, {backlog['wal_mb']:.0f} MB backlog",
                backlog["peak_rss_mb"],
                "<=",
                PEAK_TARGET_MB,
                "MB",
            ),
        ],
    }


def _nothing(ctx: BenchContext, conn: psycopg.Connection[Any], dsn: str) -> int:
    return 0


def _big_transaction(ctx: BenchContext, conn: psycopg.Connection[Any], dsn: str) -> int:
    rows = max(1, ctx.sizes.memory_txn_changes // 2)
    with conn.transaction():
        conn.execute(_BIG_INSERT.encode(), {"rows": rows, "users": ctx.seed.users})
        conn.execute(_BIG_UPDATE.encode())
    return rows * 2


def _backlog(ctx: BenchContext, conn: psycopg.Connection[Any], dsn: str) -> int:
    min_wal_bytes = ctx.sizes.memory_backlog_mb * 2**20
    return build_backlog(ctx, conn, DBNAME, dsn, SLOT, min_wal_bytes=min_wal_bytes).row_changes


def _case(ctx: BenchContext, label: str, fill: Fill) -> dict[str, Any]:
    """A fresh database, ``fill`` it, then time and watch ``cdc run --drain`` emptying it."""
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    try:
        with ctx.server.connect(DBNAME) as conn:
            expected_changes = fill(ctx, conn, dsn)
            ctx.server.checkpoint()
            wal_bytes = lsn_bytes(conn, insert_lsn(conn), confirmed_flush(conn, SLOT))
            daemon = DaemonProcess(dsn, ctx.logdir / f"memory-{label}.log", drain=True)
            exit_ = daemon.start().wait(timeout_s=3600)
            if exit_.returncode != 0:
                raise RuntimeError(
                    f"cdc run --drain exited {exit_.returncode}: {exit_.stderr_tail}"
                )
    finally:
        ctx.server.drop_database(DBNAME)
    return {
        "row_changes": exit_.summary.changes if exit_.summary else expected_changes,
        "wal_mb": round(wal_bytes / 2**20, 1),
        "peak_rss_mb": round(exit_.peak_rss_bytes / 2**20, 1),
        "wall_s": round(exit_.wall_s, 2),
        "cpu_s": round(exit_.cpu_s, 2),
    }
