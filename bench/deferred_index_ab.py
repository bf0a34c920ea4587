"""What the store's secondary indexes would cost built once over a closed partition, against
maintained record by record as the sink writes (a design question of issue 17, measured before
building anything).

The sink's backend spends most of a record's CPU in index inserts (docs/benchmarks.md, "Sink
backend"): four btrees whose keys land anywhere in the tree (entity, actor, category,
severity) and the summary's GIN with its pending list. A partition whose records are all
written could instead get those indexes by ``CREATE INDEX``, which sorts once. This measures
both on the same records: a drained platform backlog's records COPYed (binary, 2,500 per
committed transaction, as a drain's flushes) into a fresh table shaped like the store,

* A: with every index of the store, as shipped;
* B: with only the primary key and the time index (what a partition still being written
  would keep), then each other index created over the whole table
  (``max_parallel_maintenance_workers = 0``, so that one backend does all of the work).

The backend's CPU from ``/proc``, per record: A's COPY against B's COPY plus its builds (and
the builds alone). Interleaved rounds; prints each round and the median of B ÷ A. What it
does not measure: reading a partition whose secondary indexes do not exist yet.

    python -m bench.deferred_index_ab [--rounds 6] [--seconds 8] [--maintenance-work-mem 256MB]
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from bench.process_probe import cpu_seconds
from bench.server import BenchServer
from bench.stats import ratios_line
from bench.store_copy import (
    ab_arguments,
    copy_cpu_s,
    drained_store,
    export_records,
    fresh_target,
    numbered_records,
)


def _kept(definition: str) -> bool:
    """The indexes a partition being written keeps: the key (the follow, one record by its
    position, exactly once) and the time index (newest-first pages), both appended at their
    right end."""
    return definition.endswith(" (occurred_at)") or " UNIQUE " in definition


def _load(dsn: str, chunks: list[bytes], *, deferred: bool, work_mem: str) -> tuple[float, float]:
    """Backend CPU seconds: the COPY, and the builds after it (0 for A)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = fresh_target(conn)
        conn.execute("SET max_parallel_maintenance_workers = 0")
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(work_mem)))
        later: list[str] = []
        if deferred:
            for name, definition in conn.execute(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = %s::regclass",
                (target,),
            ).fetchall():
                if not _kept(definition):
                    later.append(definition)
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
        copy_s = copy_cpu_s(conn, target, chunks)
        pid = conn.pgconn.backend_pid
        before = cpu_seconds(pid) or 0.0
        for definition in later:
            conn.execute(sql.SQL(definition))  # type: ignore[arg-type]  # pg_get_indexdef's text
        return copy_s, (cpu_seconds(pid) or 0.0) - before


def main() -> None:
    parser = ab_arguments(__doc__)
    parser.add_argument("--maintenance-work-mem", default="256MB")
    args = parser.parse_args()
    server = BenchServer().start()
    try:
        dsn = drained_store(server, "deferred_index_ab", args.seconds)
        with psycopg.connect(dsn, autocommit=True) as conn:
            count = numbered_records(conn)
            chunks = export_records(conn, count)
        print(f"{count} records", flush=True)
        ratios = []
        for round_no in range(args.rounds):
            spent: dict[bool, tuple[float, float]] = {}
            for deferred in (False, True) if round_no % 2 == 0 else (True, False):
                copy_s, build_s = _load(
                    dsn, chunks, deferred=deferred, work_mem=args.maintenance_work_mem
                )
                spent[deferred] = (copy_s * 1e6 / count, build_s * 1e6 / count)
            a = spent[False][0]
            b_copy, b_build = spent[True]
            ratios.append((b_copy + b_build) / a)
            print(
                f"round {round_no + 1}: backend µs per record: every index while writing "
                f"{a:.2f}; two while writing {b_copy:.2f} + the rest built after {b_build:.2f}"
                f" = {b_copy + b_build:.2f}; B/A {ratios[-1]:.3f}",
                flush=True,
            )
        print(f"built after ÷ maintained while writing: {ratios_line(ratios)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
