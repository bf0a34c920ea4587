"""What rendering a type through its cast to json costs the daemon (cdc.pipeline.values): the
same rows drained with a ``text`` column, an ``hstore`` column (rendered by the daemon from
hstore's text) and a PostGIS ``geometry`` column (rendered by the source: one batched
``to_jsonb`` round trip per transaction, cdc.pipeline.catalog), in interleaved rounds on a
throwaway cluster of the machine's server (it needs PostGIS: scripts/bootstrap.sh installs it).
Prints the daemon's process CPU per change (sink thread included) and the wall time per round.

    python -m bench.cast_render_cost [--changes 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import uuid

import psycopg
from psycopg import sql

from cdc.config import settings_from_mapping
from cdc.control.setup import setup
from cdc.demo.embedded import EmbeddedPostgres
from cdc.pipeline.daemon import Daemon

COLUMNS = {  # column type -> the value each inserted row gets
    "text": "md5(n::text)",
    "hstore": "hstore(ARRAY['k', 'n', 'x'], ARRAY['v', n::text, md5(n::text)])",
    "geometry": "ST_MakePoint(n, n * 0.5)",
}
ROWS_PER_TRANSACTION = 100


def drain_one(dsn: str, column_type: str, changes: int) -> tuple[float, float]:
    """(daemon CPU seconds, wall seconds) to drain `changes` inserts into a fresh table."""
    tag = uuid.uuid4().hex[:8]
    table = f"cost_{column_type}_{tag}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, v {}, note text)").format(
                sql.Identifier(table), sql.Identifier(column_type)
            )
        )
    settings = settings_from_mapping(
        {
            "source": {"dsn": dsn, "slot": f"cost_{tag}", "publication": f"cost_{tag}"},
            "batch": {"max_rows": 2000, "max_delay_ms": 20},
            "tables": [{"name": f"public.{table}"}],
            "redaction": {"patterns": []},
        },
        env={},
    )
    setup(settings)
    insert = sql.SQL(
        "INSERT INTO {} SELECT n, {}, 'x' FROM generate_series(%s::int, %s::int) AS n"
    ).format(sql.Identifier(table), sql.SQL(COLUMNS[column_type]))
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, changes, ROWS_PER_TRANSACTION):
            conn.execute(insert, [start + 1, start + ROWS_PER_TRANSACTION])
    daemon = Daemon(settings, drain=True)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        stats = daemon.run()
    finally:
        daemon.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if stats.changes != changes:
        raise RuntimeError(f"{column_type}: drained {stats.changes} changes, not {changes}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", [f"cost_{tag}"])
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    with EmbeddedPostgres() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE cast_render_cost")
        dsn = server.dsn_for("cast_render_cost")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
            conn.execute("CREATE EXTENSION hstore")
        for round_index in range(args.rounds):
            for column_type in COLUMNS:
                cpu, wall = drain_one(dsn, column_type, args.changes)
                per_change = cpu / args.changes * 1e6
                best[column_type] = min(best.get(column_type, per_change), per_change)
                print(f"round {round_index} {column_type:9} daemon CPU {per_change:6.1f} us/change"
                      f"  wall {wall:6.2f} s", flush=True)  # fmt: skip
    print("best of rounds, daemon CPU us/change: "
          + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))  # fmt: skip


if __name__ == "__main__":
    main()
