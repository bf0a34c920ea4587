"""Whether the daemon should send the summary's full-text document rather than the server
computing it: ``to_tsvector('simple', summary)`` is the single largest computation in writing a
record (~5.9 µs per platform summary alone, docs/store.md), and the compiled core could send
the lexemes in tsvector's binary form, which the server only validates.

Measured before building: a drained platform backlog's records are exported twice in COPY's
binary format, as stored (A) and with ``to_tsvector('simple', summary)`` appended (B, what the
daemon would send), then COPYed again (2,500 per committed transaction) into fresh tables
shaped like the store: A with the shipped GIN on ``summary_vector(summary)``, B with a
``tsvector`` column and the GIN on ``coalesce(doc, summary_vector(summary))`` (the server
computes the document only when none is sent). Interleaved rounds; the backend's CPU from
``/proc``. Prints each round and the median of B ÷ A.

    python -m bench.summary_doc_ab [--rounds 6] [--seconds 8]
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
SUMMARY_GIN = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass "
    "AND pg_get_indexdef(indexrelid) LIKE '%%summary_vector(%%'"
)


def _export(conn: psycopg.Connection[Any], count: int, with_doc: bool) -> list[bytes]:
    """The stored records in COPY BINARY chunks, with the summary's document appended."""
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'activity.records'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
    ]
    fields = sql.SQL(", ").join(map(sql.Identifier, columns))
    if with_doc:
        fields = sql.SQL("{}, to_tsvector('simple', summary)").format(fields)
    chunks = []
    for start in range(0, count, CHUNK):
        statement = sql.SQL(
            "COPY (SELECT {} FROM public.ab_source WHERE n > {} AND n <= {} ORDER BY n) "
            "TO STDOUT (FORMAT binary)"
        ).format(fields, sql.Literal(start), sql.Literal(start + CHUNK))
        buffer = io.BytesIO()
        with conn.cursor().copy(statement) as copy:
            for data in copy:
                buffer.write(data)
        chunks.append(buffer.getvalue())
    return chunks


def _load(dsn: str, chunks: list[bytes], with_doc: bool) -> float:
    """Backend CPU seconds to COPY ``chunks`` into a fresh table shaped like the store."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.ab_target")
        conn.execute(
            "CREATE TABLE public.ab_target (LIKE activity.records INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        if with_doc:
            conn.execute("ALTER TABLE public.ab_target ADD COLUMN doc tsvector")
            for (index,) in conn.execute(SUMMARY_GIN, ("public.ab_target",)).fetchall():
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
            conn.execute(
                "CREATE INDEX ON public.ab_target "
                "USING gin (coalesce(doc, activity.summary_vector(summary)))"
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
    args = parser.parse_args()
    server = BenchServer().start()
    try:
        dsn, counts = small_platform_source(server, "summary_doc_ab")
        run_pgbench(
            server.bindir,
            dsn,
            PLATFORM_MIX,
            counts.as_params(),
            PgbenchOptions(clients=4, duration_s=args.seconds),
        )
        subprocess.run(cdc_command("run", "--drain"), env=cdc_env(dsn), check=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE public.ab_source AS SELECT row_number() OVER "
                "(ORDER BY commit_lsn, seq) AS n, * FROM activity.records"
            )
            count = conn.execute("SELECT count(*) FROM public.ab_source").fetchone()[0]  # type: ignore[index]
            chunks = {False: _export(conn, count, False), True: _export(conn, count, True)}
        print(
            f"{count} records; COPY bytes per record: as stored "
            f"{sum(map(len, chunks[False])) / count:.0f}, with the document "
            f"{sum(map(len, chunks[True])) / count:.0f}",
            flush=True,
        )
        ratios = []
        for round_no in range(args.rounds):
            spent = {}
            for with_doc in (False, True) if round_no % 2 == 0 else (True, False):
                spent[with_doc] = _load(dsn, chunks[with_doc], with_doc) * 1e6 / count
            ratios.append(spent[True] / spent[False])
            print(
                f"round {round_no + 1}: backend µs per record: server's document "
                f"{spent[False]:.2f}, daemon's {spent[True]:.2f}; B/A {ratios[-1]:.3f}",
                flush=True,
            )
        print(
            f"daemon's document ÷ server's: median {statistics.median(ratios):.3f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
