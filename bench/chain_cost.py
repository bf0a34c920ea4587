"""What the hash chain costs the sink: the same records written through
``cdc.pipeline.sink.Sink`` as the daemon writes them (COPY, rollups, checkpoint, durable
commit), with ``hash_chain`` on (the daemon chains each line,
cdc.pipeline.copy_lines.encode_chained_rows; the head moves in the transaction) and off, in
interleaved rounds into the same store, 5,000 records per
committed transaction. Each write gets its own LSNs (shifted far beyond the real ones), so the
rounds never collide and every round writes into an equally full table.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.lsn import Lsn, format_lsn
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.batching import Checkpoint, Flush
from cdc.pipeline.sink import Sink

BATCH_ROWS = 5000

# The columns as the sink's COPY text takes them (jsonb, timestamps and LSNs as text).
_AS_TEXT = ("occurred_at", "context", "old", "new", "changes", "commit_lsn")


def _read_records(dsn: str, max_rows: int) -> list[ActivityRecord]:
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(name))
        if name in _AS_TEXT
        else sql.Identifier(name)
        for name in RECORD_COLUMNS
    )
    query = sql.SQL(
        "SELECT {} FROM activity.records r ORDER BY r.commit_lsn, r.seq LIMIT %s"
    ).format(columns)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query, (max_rows,)).fetchall()
    return [ActivityRecord(*row) for row in rows]


def _write(dsn: str, records: list[ActivityRecord], *, chain: bool, shift: int) -> float:
    """Seconds to write ``records`` (LSNs moved up by ``shift``) in committed batches."""
    moved = [r._replace(commit_lsn=format_lsn(Lsn.parse(r.commit_lsn) + shift)) for r in records]
    sink = Sink(
        dsn, schema="activity", table="records", slot=f"bench_chain_{chain}", hash_chain=chain
    )
    sink.open()
    try:
        started = time.perf_counter()
        for first in range(0, len(moved), BATCH_ROWS):
            batch = moved[first : first + BATCH_ROWS]
            lsn = Lsn.parse(batch[-1].commit_lsn)
            sink.write(
                Flush(
                    batch, Checkpoint(lsn, lsn + 1, datetime.fromisoformat(batch[-1].occurred_at))
                )
            )
        return time.perf_counter() - started
    finally:
        sink.close()


def measure_chain_cost(dsn: str, *, max_rows: int, rounds: int = 3) -> dict[str, Any]:
    """µs per record through the sink with and without the hash chain (medians of rounds)."""
    records = _read_records(dsn, max_rows)
    if not records:
        return {"rows": 0}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    seconds: dict[bool, list[float]] = {False: [], True: []}
    ratios: list[float] = []
    run = 0
    for round_no in range(rounds):
        order = (False, True) if round_no % 2 == 0 else (True, False)
        this_round: dict[bool, float] = {}
        for chain in order:
            run += 1
            # ((run) << 40): far above any real LSN of the bench, one range per write
            this_round[chain] = _write(dsn, records, chain=chain, shift=run << 40)
            seconds[chain].append(this_round[chain])
        ratios.append(this_round[True] / this_round[False])
    per_record = {
        chain: statistics.median(values) * 1e6 / len(records) for chain, values in seconds.items()
    }
    return {
        "rows": len(records),
        "batch_rows": BATCH_ROWS,
        "rounds": rounds,
        "us_per_record_without_chain": round(per_record[False], 2),
        "us_per_record_with_chain": round(per_record[True], 2),
        "chain_us_per_record": round(per_record[True] - per_record[False], 2),
        "ratio_with_to_without": round(statistics.median(ratios), 3),
    }
