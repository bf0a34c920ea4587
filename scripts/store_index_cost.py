"""What each index of the activity store costs the sink: COPY rows/s and WAL bytes per record
into the records table with no index, with only the primary key, with the primary key and one
secondary index, with everything migration 0001 creates, and through ``Sink.write`` (COPY,
rollups and checkpoint in one transaction per batch). One run on a throwaway cluster
(``cdc.demo.embedded``, fsync on); the numbers are in docs/store.md.

    .venv/bin/python scripts/store_index_cost.py [--rows 200000] [--batch 5000] [--repeat 3]

Each configuration starts from an empty store made by the real migrations, then the indexes it
does not measure are dropped. Records look like the demo platform's: 60% inserts, 30% updates
(old, new and a diff), 10% deletes, rows of 12 columns, five records per source transaction.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc.config import settings_from_mapping
from cdc.control.setup import migration_files, migration_identifiers
from cdc.demo.embedded import EmbeddedPostgres
from cdc.lsn import Lsn, format_lsn
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.batching import Checkpoint, Flush
from cdc.pipeline.rollups import upsert_parameters
from cdc.pipeline.sink import PreparedFlush, Sink, encode_copy_rows
from cdc.sqlfiles import sql_template

SCHEMA = "activity"
TABLES = [f"table_{n}" for n in range(18)]
CATEGORIES = ["user_management", "investor_management", "compliance", "token", "finance"]
SEVERITY = {"insert": "info", "update": "notice", "delete": "warning"}
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "kyc",
    "approved",
    "pending",
    "rejected",
    "wire",
    "usd",
    "eur",
    "token",
]


def make_records(count: int, seed: int = 7) -> list[ActivityRecord]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    records: list[ActivityRecord] = []
    lsn = 0x1_0000_0000
    while len(records) < count:
        lsn += 0x400
        occurred_at = (start + timedelta(milliseconds=len(records))).isoformat()
        for seq in range(5):
            table = rng.choice(TABLES)
            key = rng.randrange(200_000)
            op = rng.choices(["insert", "update", "delete"], [6, 3, 1])[0]
            row = {
                "id": key,
                "email": f"user{key}@example.com",
                "name": " ".join(rng.choices(WORDS, k=3)),
                "status": rng.choice(WORDS),
                "amount": f"{rng.random() * 1e6:.2f}",
                "currency": rng.choice(["USD", "EUR"]),
                "project_id": rng.randrange(500),
                "created_at": occurred_at,
                "updated_at": occurred_at,
                "updated_by": rng.randrange(1000),
                "notes": " ".join(rng.choices(WORDS, k=12)),
                "active": True,
            }
            old = new = changes = None
            if op == "insert":
                new = json.dumps(row)
            elif op == "delete":
                old = json.dumps(row)
            else:
                before = {**row, "status": "pending"}
                old, new = json.dumps(before), json.dumps(row)
                changes = json.dumps({"status": {"old": "pending", "new": row["status"]}})
            # as the rules of a config give them: a category per table, a severity per operation
            records.append(
                ActivityRecord(
                    occurred_at,
                    "database",
                    op,
                    f"{table}.{op}",
                    CATEGORIES[TABLES.index(table) % len(CATEGORIES)],
                    SEVERITY[op],
                    "public",
                    table,
                    table,
                    str(key),
                    str(row["updated_by"]),
                    None,
                    old,
                    new,
                    changes,
                    # as cdc.pipeline.activity writes it: entity, actor, changed columns, action
                    f"{table} {key} {op}d by {row['updated_by']}"
                    + (": status" if op == "update" else "")
                    + f" ({table}.{op})",
                    lsn >> 8,
                    format_lsn(lsn),
                    seq,
                )
            )
    return records[:count]


FULL_TEXT_ALTERNATIVES = {
    "alternative: stored generated tsvector column + GIN on it": """
        ALTER TABLE activity.records ADD COLUMN search tsvector
            GENERATED ALWAYS AS (activity.search_vector(summary, new, old, changes)) STORED;
        CREATE INDEX ON activity.records USING gin (search)""",
    "alternative: the expression GIN index with fastupdate off": """
        CREATE INDEX ON activity.records USING gin
            (activity.search_vector(summary, new, old, changes)) WITH (fastupdate = off)""",
    "alternative: the expression GIN index with a 32MB pending list": """
        CREATE INDEX ON activity.records USING gin
            (activity.search_vector(summary, new, old, changes))
            WITH (gin_pending_list_limit = 32768)""",
    "alternative: GIN over the summary only": """
        CREATE INDEX ON activity.records USING gin (to_tsvector('simple', summary))""",
    "opt-in ([store] search_values): GIN over summary and values": """
        CREATE INDEX ON activity.records USING gin
            (activity.search_vector(summary, new, old, changes))""",
}


def fresh_store(conn: psycopg.Connection[Any], keep: set[str] | None, keep_pkey: bool) -> None:
    """The store as the migrations make it, minus the secondary indexes not in ``keep``
    (None: keep all)."""
    settings = settings_from_mapping(
        {"source": {"dsn": "x"}, "tables": [{"name": "public.t"}]}, env={}
    )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    for _version, name in migration_files():
        with conn.transaction():
            conn.execute(
                sql_template(f"migrations/{name}", **migration_identifiers(settings)).as_string(
                    conn
                )
            )
    for (index,) in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'activity.records'::regclass AND NOT i.indisprimary"
    ).fetchall():
        if keep is not None and index not in keep:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, index)))
    if not keep_pkey:
        conn.execute("ALTER TABLE activity.records DROP CONSTRAINT records_pkey")
    conn.execute("CHECKPOINT")


@dataclass
class Sample:
    wall_s: float
    server_cpu_s: float  # the backend's time on a CPU (/proc/<pid>/schedstat)
    client_cpu_s: float  # this process: encoding and rollup counting in Sink.write
    wal_bytes: int


def on_cpu_s(pid: int) -> float:
    """Seconds the process has run on a CPU. Unlike wall time, hardly moved by other work on
    the machine, so it compares configurations measured minutes apart."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def wal_position(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def measured(conn: psycopg.Connection[Any], work: Callable[[], None]) -> Sample:
    pid = conn.info.backend_pid
    with psycopg.connect(conn.info.dsn, autocommit=True) as probe:
        wal = wal_position(probe)
        cpu, client, wall = on_cpu_s(pid), time.process_time(), time.perf_counter()
        work()
        elapsed = time.perf_counter() - wall
        client_cpu, server_cpu = time.process_time() - client, on_cpu_s(pid) - cpu
        return Sample(elapsed, server_cpu, client_cpu, wal_position(probe) - wal)


def copy_batches(dsn: str, batches: list[str]) -> Sample:
    """COPY each batch in its own transaction, as the sink does (rows encoded beforehand)."""
    statement = sql.SQL("COPY activity.records ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, RECORD_COLUMNS))
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.commit()

        def work() -> None:
            for text in batches:
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    copy.write(text)
                conn.commit()

        return measured(conn, work)


def sink_batches(dsn: str, batches: list[list[ActivityRecord]], *, rollups: bool) -> Sample:
    """Through Sink.write: encoding, COPY, rollups (unless switched off, to measure them) and
    checkpoint, one transaction per batch."""
    sink = Sink(dsn, schema=SCHEMA, table="records", slot="bench")
    no_counts = upsert_parameters([])
    sink.open()
    try:
        conn = sink._conn
        assert conn is not None

        def work() -> None:
            for records in batches:
                lsn = Lsn.parse(records[-1].commit_lsn)
                at = datetime.fromisoformat(records[-1].occurred_at)
                flush = Flush(records, Checkpoint(lsn, lsn + 1, at))
                # counts made ahead, and none: the rollups add nothing (switched off)
                sink.write(flush if rollups else PreparedFlush(flush, None, None, None, no_counts))

        return measured(conn, work)
    finally:
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # a plain kill must still run the finally below, which removes the cluster
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(1))

    records = make_records(args.rows)
    record_batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    text_batches = [encode_copy_rows(batch) for batch in record_batches]
    server = EmbeddedPostgres(
        fsync=True, settings={"shared_buffers": "256MB", "max_wal_size": "4GB"}
    ).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        dsn = server.dsn_for("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            fresh_store(conn, None, True)
            secondary = [
                row[0]
                for row in conn.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'activity.records'::regclass AND NOT i.indisprimary "
                    "ORDER BY c.relname"
                )
            ]
        configs: list[tuple[str, set[str] | None, bool, bool | None, str]] = [
            ("no index (heap only)", set(), False, None, ""),
            ("primary key only", set(), True, None, ""),
            *[(f"primary key + {name}", {name}, True, None, "") for name in secondary],
            ("all indexes (as shipped)", None, True, None, ""),
            ("Sink.write, rollups switched off", None, True, False, ""),
            ("Sink.write (encode, COPY, rollups, checkpoint)", None, True, True, ""),
            # the alternatives to the full-text expression index, each with the primary key
            *[(label, set(), True, None, ddl) for label, ddl in FULL_TEXT_ALTERNATIVES.items()],
        ]
        samples: dict[str, list[Sample]] = {label: [] for label, *_ in configs}
        for _ in range(args.repeat):  # interleaved, so that a busy minute hits all alike
            for label, keep, pkey, through_sink, ddl in configs:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    fresh_store(conn, keep, pkey)
                    if ddl:
                        conn.execute(ddl)
                samples[label].append(
                    copy_batches(dsn, text_batches)
                    if through_sink is None
                    else sink_batches(dsn, record_batches, rollups=through_sink)
                )
                print(f"{label}: {samples[label][-1]}", file=sys.stderr)
        report(samples, args.rows, args.batch, args.repeat)
    finally:
        server.stop()


def report(samples: dict[str, list[Sample]], rows: int, batch: int, repeat: int) -> None:
    def per_row_us(values: list[float]) -> float:
        return statistics.median(values) / rows * 1e6

    base = per_row_us([s.server_cpu_s for s in samples["primary key only"]])
    print(f"\n{rows:,} records, batches of {batch}, median of {repeat} interleaved runs\n")
    print(
        "| configuration | server CPU µs/row | vs primary key only | client CPU µs/row "
        "| WAL bytes/row | rows/s (wall, best) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in samples.items():
        server = per_row_us([s.server_cpu_s for s in runs])
        client = per_row_us([s.client_cpu_s for s in runs])
        wal = statistics.median([s.wal_bytes for s in runs]) / rows
        best = rows / min(s.wall_s for s in runs)
        print(
            f"| {label} | {server:.1f} | {server - base:+.1f} µs ({server / base - 1:+.0%}) | "
            f"{client:.1f} | {wal:,.0f} | {best:,.0f} |"
        )


if __name__ == "__main__":
    main()
