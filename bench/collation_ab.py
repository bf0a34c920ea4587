"""What the collation of the store's text columns costs the sink's server per record.

The benchmarks' clusters are made with ``--locale=C``, where PostgreSQL compares text with
``memcmp``. A production database is usually made in the host's locale (Debian's default
cluster: ``C.UTF-8`` or ``en_US.UTF-8``), where every comparison in a btree over a text column
calls the C library's ``strcoll``: the store's btrees over ``(entity_type, entity_id, …)``,
``(actor_id, …)``, ``(category, severity, …)`` and ``(severity, …)`` compare text at every
insert. The readers only ever compare those columns for equality, which is byte equality under
any deterministic collation, so the store could declare them ``COLLATE "C"`` whatever the
database's locale.

Measured before building: a drained platform backlog's records are exported once in COPY's
binary format, then COPYed again (2,500 per committed transaction) into fresh tables shaped
like the store (``LIKE activity.records INCLUDING ALL``) whose text columns are given each
collation in turn: ``C`` (what the store would declare) and the host locales a database would
get by default (``C.utf8``, ``en_US.utf8`` where the machine has them: ``localedef -i en_US -f
UTF-8 en_US.UTF-8``). Interleaved rounds, rotated order; the backend's CPU from ``/proc``.
Prints each round and the median of each locale ÷ ``C``.

    python -m bench.collation_ab [--rounds 6] [--seconds 8]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
from typing import Any

import psycopg
from psycopg import sql

from bench.cdc_process import cdc_command, cdc_env, small_platform_source
from bench.process_probe import cpu_seconds
from bench.server import BenchServer
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

CHUNK = 2_500
# The collations compared, by the name a database's default would have; ``C`` first.
# "default" is the database's own (the cluster's --locale), as a store made before 0026 has.
WANTED = ("C", "default", "C.utf8", "en_US.utf8")


def _collations(conn: psycopg.Connection[Any]) -> list[str]:
    """The wanted collations this server has (initdb imports the host's locales)."""
    conn.execute("SELECT pg_import_system_collations('pg_catalog')")
    have = {row[0] for row in conn.execute("SELECT collname FROM pg_collation")}
    return [name for name in WANTED if name in have]


def _export(conn: psycopg.Connection[Any], count: int) -> list[bytes]:
    chunks = []
    for start in range(0, count, CHUNK):
        statement = sql.SQL(
            "COPY (SELECT * FROM activity.records ORDER BY commit_lsn, seq "
            "OFFSET {} LIMIT {}) TO STDOUT (FORMAT binary)"
        ).format(sql.Literal(start), sql.Literal(CHUNK))
        buffer = io.BytesIO()
        with conn.cursor().copy(statement) as copy:
            for data in copy:
                buffer.write(data)
        chunks.append(buffer.getvalue())
    return chunks


def _load(dsn: str, chunks: list[bytes], collation: str) -> float:
    """Backend CPU seconds to COPY ``chunks`` into a fresh store-shaped table whose text
    columns have ``collation``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.ab_target")
        conn.execute("CREATE TABLE public.ab_target (LIKE activity.records INCLUDING ALL)")
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'public.ab_target'::regclass "
                "AND attnum > 0 AND NOT attisdropped AND atttypid = 'text'::regtype"
            )
        ]
        conn.execute(
            sql.SQL("ALTER TABLE public.ab_target {}").format(
                sql.SQL(", ").join(
                    sql.SQL("ALTER COLUMN {} TYPE text COLLATE {}").format(
                        sql.Identifier(column), sql.Identifier("pg_catalog", collation)
                    )
                    for column in columns
                )
            )
        )
        conn.execute("CHECKPOINT")
        pid = conn.pgconn.backend_pid
        before = cpu_seconds(pid) or 0.0
        for data in chunks:
            with (
                conn.transaction(),
                conn.cursor().copy("COPY public.ab_target FROM STDIN (FORMAT binary)") as copy,
            ):
                copy.write(data)
        return (cpu_seconds(pid) or 0.0) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--locale", default="C", help="the cluster's locale (initdb --locale)")
    args = parser.parse_args()
    server = BenchServer(locale=args.locale).start()
    try:
        dsn, counts = small_platform_source(server, "collation_ab")
        run_pgbench(
            server.bindir,
            dsn,
            PLATFORM_MIX,
            counts.as_params(),
            PgbenchOptions(clients=4, duration_s=args.seconds),
        )
        subprocess.run(cdc_command("run", "--drain"), env=cdc_env(dsn), check=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            collations = _collations(conn)
            count = conn.execute("SELECT count(*) FROM activity.records").fetchone()[0]  # type: ignore[index]
            chunks = _export(conn, count)
        print(f"{count} records; collations: {', '.join(collations)}", flush=True)
        ratios: dict[str, list[float]] = {name: [] for name in collations[1:]}
        for round_no in range(args.rounds):
            shift = round_no % len(collations)
            order = collations[shift:] + collations[:shift]
            spent = {name: _load(dsn, chunks, name) * 1e6 / count for name in order}
            for name in ratios:
                ratios[name].append(spent[name] / spent["C"])
            print(
                f"round {round_no + 1}: backend µs per record: "
                + ", ".join(f"{name} {spent[name]:.2f}" for name in collations),
                flush=True,
            )
        for name, values in ratios.items():
            print(
                f"{name} ÷ C: median {statistics.median(values):.3f} "
                f"(rounds {', '.join(f'{r:.2f}' for r in values)})"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
