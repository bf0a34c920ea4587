"""3. Latency: from the source commit to the record being visible in the store.

The daemon runs (``cdc run``) while pgbench offers a steady load of fixed-shape transactions
(bench/pgbench/latency_flow.sql: 4 changes, 4 records) at a set rate. What is measured:

* ``visible``: a separate connection polls the store every ``POLL_INTERVAL_S`` for records
  past the last one it saw; a record's latency is the poll's ``statement_timestamp()`` minus
  the record's ``occurred_at`` (the source transaction's commit timestamp). Both clocks are
  the same server's. It is what a reader of the activity log experiences, an upper bound by
  at most one poll interval;
* ``recorded_at``: ``recorded_at - occurred_at`` of the same records, where ``recorded_at``
  defaults to ``now()``, the *start* of the sink transaction: it leaves out the COPY and the
  commit, so it is a lower bound, shown for comparison.

The first ``WARMUP_S`` of each run are left out. Loads are run in a rotated order per round.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

from bench.cdc_process import DaemonProcess, cdc_setup
from bench.context import BenchContext, log, target
from bench.platform_db import create_platform_db
from bench.slots import commit_marker, insert_lsn, wait_recorded
from bench.stats import Percentiles, median, percentiles, weighted_percentiles
from bench.workload import LATENCY_CHANGES_PER_TXN, LATENCY_SCRIPT, PgbenchOptions, run_pgbench

POLL_INTERVAL_S = 0.01
WARMUP_S = 2.0
P99_TARGET_MS = 250.0
TARGET_LOAD = 5_000  # changes per second the p99 target applies to
DBNAME = "latency"

# Records past the last seen (commit_lsn, seq): the primary key starts with (commit_lsn, seq),
# and the sink writes in commit order, so nothing can appear behind what was already seen.
_NEW_RECORDS = """
SELECT pg_wal_lsn_diff(commit_lsn, '0/0')::bigint,
       occurred_at,
       extract(epoch FROM statement_timestamp() - occurred_at)::float8,
       count(*)
  FROM activity.records
 WHERE commit_lsn > %s::pg_lsn
 GROUP BY commit_lsn, occurred_at
"""


class RecordPoller:
    """Polls the store in a thread; collects (occurred_at, latency_s, records) per commit."""

    def __init__(self, dsn: str, start_lsn: str) -> None:
        self.dsn = dsn
        self.last_lsn = start_lsn
        self.samples: list[tuple[datetime, float, int]] = []
        self.polls = 0
        self.poll_s: list[float] = []  # how long each poll's query took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="record-poller", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> RecordPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.prepare_threshold = 0
                # The store grows from nothing during a run, faster than autovacuum analyses
                # it, and a generic plan cannot see that the LSN is past nearly every record
                # either: the planner chose a sequential scan of every record at every poll
                # (17 ms at 60k records, 45-50 ms under load: polls 50 ms apart instead of 10,
                # a core taken from the daemon, latency overstated by up to a poll). The
                # primary key's index finds the new records in 0.03 ms.
                conn.execute("SET enable_seqscan = off")
                last = self.last_lsn
                while not self._stop.is_set():
                    started = time.perf_counter()
                    rows = conn.execute(_NEW_RECORDS, (last,)).fetchall()
                    self.poll_s.append(time.perf_counter() - started)
                    self.polls += 1
                    if rows:
                        newest = max(row[0] for row in rows)
                        last = f"{newest >> 32:X}/{newest & 0xFFFFFFFF:X}"
                        self.samples.extend((row[1], row[2], row[3]) for row in rows)
                    self._stop.wait(POLL_INTERVAL_S)
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def stop(self) -> list[tuple[datetime, float, int]]:
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.samples


def run(ctx: BenchContext) -> dict[str, Any]:
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    runs: dict[int, list[dict[str, Any]]] = {load: [] for load in ctx.sizes.latency_loads}
    daemon = DaemonProcess(dsn, ctx.logdir / "latency.log").start()
    try:
        with ctx.server.connect(DBNAME) as conn:
            daemon.wait_streaming(conn)
            warmup_s = min(WARMUP_S * 2, ctx.sizes.latency_seconds)
            _offer(ctx, conn, dsn, min(ctx.sizes.latency_loads), seconds=warmup_s)
            loads = tuple(str(load) for load in ctx.sizes.latency_loads)
            for round_index in range(ctx.sizes.rounds):
                shift = round_index % len(loads)
                for load_text in loads[shift:] + loads[:shift]:
                    load = int(load_text)
                    result = _offer(ctx, conn, dsn, load, seconds=ctx.sizes.latency_seconds)
                    result["round"] = round_index
                    runs[load].append(result)
                    log.info(
                        "latency round %d %6d changes/s offered (%d achieved): "
                        "p50 %.0f ms p95 %.0f ms p99 %.0f ms",
                        round_index,
                        load,
                        result["achieved_changes_per_s"],
                        result["visible_ms"]["p50"],
                        result["visible_ms"]["p95"],
                        result["visible_ms"]["p99"],
                    )
        exit_ = daemon.stop()
        if exit_.returncode != 0:
            raise RuntimeError(f"cdc run exited {exit_.returncode}: {exit_.stderr_tail}")
    finally:
        daemon.kill()
        ctx.server.drop_database(DBNAME)
    summary = {
        str(load): {
            key: round(median([r["visible_ms"][key] for r in load_runs]), 1)
            for key in ("p50", "p95", "p99")
        }
        | {
            "recorded_at_p99_ms": round(median([r["recorded_at_ms"]["p99"] for r in load_runs]), 1),
            "source_txn_p99_ms": round(median([r["source_txn_ms"]["p99"] for r in load_runs]), 1),
            "achieved_changes_per_s": round(
                median([r["achieved_changes_per_s"] for r in load_runs])
            ),
        }
        for load, load_runs in runs.items()
    }
    targets = []
    if TARGET_LOAD in runs:
        targets.append(
            target(
                f"latency: p99 commit → visible record at {TARGET_LOAD} changes/s",
                summary[str(TARGET_LOAD)]["p99"],
                "<=",
                P99_TARGET_MS,
                "ms",
            )
        )
    return {
        "status": "ok",
        "method": {
            "poll_interval_ms": POLL_INTERVAL_S * 1000,
            "warmup_s": WARMUP_S,
            "changes_per_txn": LATENCY_CHANGES_PER_TXN,
            "clients": ctx.sizes.latency_clients,
            "seconds_per_run": ctx.sizes.latency_seconds,
        },
        "loads": summary,
        "runs": {str(load): load_runs for load, load_runs in runs.items()},
        "targets": targets,
    }


def _offer(
    ctx: BenchContext, conn: psycopg.Connection[Any], dsn: str, load: int, *, seconds: float
) -> dict[str, Any]:
    """Offer ``load`` changes/s for ``seconds``; latencies of the records it produced."""
    start_lsn = insert_lsn(conn)
    poller = RecordPoller(dsn, start_lsn).start()
    started_at = datetime.now().astimezone()
    try:
        result = run_pgbench(
            ctx.server.bindir,
            dsn,
            ((LATENCY_SCRIPT, 1),),
            ctx.pgbench_variables(),
            PgbenchOptions(
                clients=ctx.sizes.latency_clients,
                duration_s=seconds,
                rate_tps=load / LATENCY_CHANGES_PER_TXN,
            ),
        )
        wait_recorded(conn, commit_marker(conn))
        time.sleep(POLL_INTERVAL_S * 5)  # one more poll after the last commit is recorded
    finally:
        samples = poller.stop()
    window_start = started_at + timedelta(seconds=WARMUP_S)
    kept = [(latency_s * 1000, n) for occurred, latency_s, n in samples if occurred >= window_start]
    records = sum(n for _, n in kept)
    if kept:
        first = min(occurred for occurred, _, _ in samples if occurred >= window_start)
        last = max(occurred for occurred, _, _ in samples)
        span_s = max((last - first).total_seconds(), 1e-3)
    else:
        span_s = 1.0
    recorded = _recorded_at_latencies(conn, start_lsn, window_start)
    return {
        "offered_changes_per_s": load,
        "achieved_changes_per_s": round(records / span_s),
        "records": records,
        "polls": poller.polls,
        "poll_ms": percentiles([s * 1000 for s in poller.poll_s]).as_json(),
        "pgbench_tps": round(result.tps, 1),
        # the source's own transactions (4 changes and the commit's WAL flush): a commit time
        # is taken before that flush, so a slow flush is in every commit -> visible latency
        "source_txn_ms": result.latency_ms.as_json(),
        "schedule_lag_ms": result.schedule_lag_ms.as_json() if result.schedule_lag_ms else None,
        "visible_ms": weighted_percentiles(kept).as_json(),
        "recorded_at_ms": recorded.as_json(),
    }


def _recorded_at_latencies(
    conn: psycopg.Connection[Any], start_lsn: str, since: datetime
) -> Percentiles:
    rows = conn.execute(
        "SELECT extract(epoch FROM recorded_at - occurred_at)::float8 * 1000 "
        "FROM activity.records WHERE commit_lsn > %s::pg_lsn AND occurred_at >= %s",
        (start_lsn, since),
    ).fetchall()
    return percentiles([row[0] for row in rows])
