"""The sink's statements through psycopg's API against the sink's own use of libpq, interleaved
in one run, client (``process_time``) and server (the backend's ``/proc/<pid>/schedstat``) CPU
per sink transaction (then rolled back), on a throwaway server:

* the chain head's lock, a sink transaction's first statement: psycopg's ``BEGIN`` alone, then
  the ``SELECT ... FOR UPDATE`` (two round trips), against ``SinkStatements.lock_head_row``
  (both as one simple query);
* a COPY of ``--records`` records (binary, the platform's shapes of bench.sink_ab) after the
  lock: psycopg's ``Cursor.copy``, against ``CopyFormat.send`` (libpq's calls, no cursor).

    python -m bench.sink_libpq_ab [--transactions 3000] [--rounds 6] [--records 46]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.cdc_process import cdc_setup
from bench.platform_db import SeedCounts, build_template, create_platform_db
from bench.server import BenchServer
from bench.sink_ab import _cpu_s, _records
from cdc.pipeline.copy_lines import ChainHead
from cdc.pipeline.sink import Sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=46)
    args = parser.parse_args()
    server = BenchServer().start()
    try:
        build_template(server, SeedCounts.for_users(200))
        dsn = create_platform_db(server, "sink_libpq_ab")
        cdc_setup(dsn)
        sink = Sink(dsn, schema="activity", table="records", slot="activity_cdc")
        sink.open()
        conn = sink._conn
        assert conn is not None
        statements = sink._sql
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
        conn.rollback()
        copy = sink._format
        head = statements.lock_head_row(conn)
        assert head is not None
        conn.rollback()
        found = copy.binary_rows(
            _records(args.records, 1 << 40), ChainHead(bytes(head[0]), int(head[1]))
        )
        assert found is not None
        data = found[0]

        def psycopg_copy() -> None:
            statements.lock_head_row(conn)
            with conn.cursor() as cur, cur.copy(copy.binary_sql.as_bytes(conn)) as writer:
                writer.write(data)

        def sink_copy() -> None:
            statements.lock_head_row(conn)
            copy.send(conn, data, True)

        pairs: dict[str, dict[str, Callable[[], object]]] = {
            "lock": {
                "psycopg (BEGIN, then the lock)": lambda: conn.execute(
                    statements.lock_head
                ).fetchone(),
                "one simple query": lambda: statements.lock_head_row(conn),
            },
            f"lock + COPY of {args.records} records": {
                "psycopg's Cursor.copy": psycopg_copy,
                "CopyFormat.send": sink_copy,
            },
        }
        for title, ways in pairs.items():
            _compare(title, ways, conn, backend, args.transactions, args.rounds)
        sink.close()
    finally:
        server.stop()


def _compare(
    title: str,
    ways: dict[str, Callable[[], object]],
    conn: Any,
    backend: int,
    transactions: int,
    rounds: int,
) -> None:
    for way in ways.values():  # warm: psycopg prepares a statement run 5 times
        for _ in range(20):
            way()
            conn.rollback()
    spent: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for round_index in range(rounds):
        order = list(ways.items())
        for name, way in order if round_index % 2 == 0 else reversed(order):
            client, server_s = time.process_time(), _cpu_s(backend)
            for _ in range(transactions):
                way()
                conn.rollback()
            spent[name].append(
                (
                    (time.process_time() - client) / transactions * 1e6,
                    (_cpu_s(backend) - server_s) / transactions * 1e6,
                )
            )
    print(title)
    for name, figures in spent.items():
        print(
            f"  {name:32s} client {statistics.median(c for c, _ in figures):6.1f} µs  "
            f"server {statistics.median(s for _, s in figures):6.1f} µs per transaction"
        )


if __name__ == "__main__":
    main()
