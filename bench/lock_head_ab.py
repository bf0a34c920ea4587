"""The sink transaction's first statement, the chain head's lock: psycopg's way (its ``BEGIN``
alone, then the ``SELECT ... FOR UPDATE``: two round trips) against the sink's
(``SinkStatements.lock_head_row``: both as one simple query), interleaved in one run, client
(``process_time``) and server (the backend's ``/proc/<pid>/schedstat``) CPU per lock and
rollback, on a throwaway server:

    python -m bench.lock_head_ab [--locks 3000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench.cdc_process import cdc_setup
from bench.platform_db import SeedCounts, build_template, create_platform_db
from bench.server import BenchServer
from cdc.pipeline.sink import Sink


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as handle:
        return int(handle.read().split()[0]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    server = BenchServer().start()
    try:
        build_template(server, SeedCounts.for_users(200))
        dsn = create_platform_db(server, "lock_head_ab")
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
        ways: dict[str, Callable[[], object]] = {
            "psycopg (BEGIN, then the lock)": lambda: conn.execute(statements.lock_head).fetchone(),
            "one simple query": lambda: statements.lock_head_row(conn),
        }
        for lock in ways.values():  # warm: psycopg prepares a statement run 5 times
            for _ in range(20):
                lock()
                conn.rollback()
        spent: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for round_index in range(args.rounds):
            order = list(ways.items())
            for name, lock in order if round_index % 2 == 0 else reversed(order):
                client, server_s = time.process_time(), _cpu_s(backend)
                for _ in range(args.locks):
                    lock()
                    conn.rollback()
                spent[name].append(
                    (
                        (time.process_time() - client) / args.locks * 1e6,
                        (_cpu_s(backend) - server_s) / args.locks * 1e6,
                    )
                )
        for name, figures in spent.items():
            print(
                f"{name:32s} client {statistics.median(c for c, _ in figures):6.1f} µs  "
                f"server {statistics.median(s for _, s in figures):6.1f} µs per lock + rollback"
            )
        sink.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
