"""What one activity record costs the server to write, with and without the store's indexes.

The profile shows the sink thread waiting for the server most of the time; this says what the
server spends that time on. The records the daemon just wrote are copied into plain tables
shaped like the store (``LIKE activity.records``), each with fewer of its indexes, and written
again the way the sink writes them: batches of ``BATCH_ROWS`` rows, one committed transaction
each, ``synchronous_commit = on``. The differences between the variants are the per-row cost
of the indexes. (The real store is also partitioned and keeps rollups; the drain measures it
whole.)
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

BATCH_ROWS = 5000

# name → (whether the copy takes the store's indexes (LIKE ... INCLUDING INDEXES), the
# full-text index it gets instead of the store's own: None keeps the store's, "" none).
_SUMMARY_GIN = "CREATE INDEX ON bench_w USING gin (to_tsvector('simple', summary))"
_VALUES_GIN = (
    "CREATE INDEX ON bench_w USING gin ((to_tsvector('simple', coalesce(summary, '')) "
    "|| json_to_tsvector('simple', coalesce(new, old, '{}'), '[\"string\", \"numeric\"]') "
    "|| json_to_tsvector('simple', coalesce(changes, '{}'), '[\"string\", \"numeric\"]')))"
)
_VARIANTS: dict[str, tuple[bool, str | None]] = {
    "all indexes of the store": (True, None),
    "btrees + GIN over the summary (the default store)": (True, _SUMMARY_GIN),
    "btrees + GIN over summary and values (search_values)": (True, _VALUES_GIN),
    "btrees, no full-text index": (True, ""),
    "primary key only": (False, ""),
    "no index at all": (False, ""),
}


def _create_variant(conn: psycopg.Connection[Any], name: str) -> None:
    with_indexes, full_text = _VARIANTS[name]
    conn.execute("DROP TABLE IF EXISTS bench_w")
    if with_indexes:
        conn.execute(
            "CREATE TABLE bench_w (LIKE activity.records INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
    else:
        conn.execute("CREATE TABLE bench_w (LIKE activity.records INCLUDING DEFAULTS)")
    if full_text is not None:
        for (index,) in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam "
            "WHERE i.indrelid = 'bench_w'::regclass AND a.amname = 'gin'"
        ).fetchall():
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        if full_text:
            conn.execute(full_text.encode())
    if name == "primary key only":
        conn.execute("ALTER TABLE bench_w ADD PRIMARY KEY (commit_lsn, seq, occurred_at)")


def measure_store_write_cost(conn: psycopg.Connection[Any], *, max_rows: int) -> dict[str, Any]:
    """µs per record written, per variant, from the records already in activity.records."""
    conn.execute("SET synchronous_commit = on")
    conn.execute("DROP TABLE IF EXISTS bench_src")
    conn.execute(
        "CREATE TABLE bench_src AS SELECT row_number() OVER (ORDER BY commit_lsn, seq) AS n, * "
        "FROM activity.records ORDER BY commit_lsn, seq LIMIT %s",
        (max_rows,),
    )
    row = conn.execute("SELECT count(*) FROM bench_src").fetchone()
    rows = int(row[0]) if row else 0
    names = [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'activity.records'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    ]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    insert = sql.SQL(
        "INSERT INTO bench_w ({columns}) SELECT {columns} FROM bench_src WHERE n BETWEEN %s AND %s"
    ).format(columns=columns)
    variants: dict[str, float] = {}
    for name in _VARIANTS:
        _create_variant(conn, name)
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        for first in range(1, rows + 1, BATCH_ROWS):
            with conn.transaction():
                conn.execute(insert, (first, first + BATCH_ROWS - 1))
        variants[name] = (time.perf_counter() - started) * 1e6 / max(rows, 1)
    conn.execute("DROP TABLE IF EXISTS bench_w")
    conn.execute("DROP TABLE IF EXISTS bench_src")
    return {
        "rows": rows,
        "batch_rows": BATCH_ROWS,
        "us_per_record": {name: round(value, 2) for name, value in variants.items()},
    }
