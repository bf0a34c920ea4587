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

import psycopg
from psycopg import sql

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

SUMMARY_GIN = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass "
    "AND pg_get_indexdef(indexrelid) LIKE '%%summary_vector(%%'"
)


def _load(dsn: str, chunks: list[bytes], with_doc: bool) -> float:
    """Backend CPU seconds to COPY ``chunks`` into a fresh table shaped like the store."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = fresh_target(conn)
        if with_doc:
            conn.execute(f"ALTER TABLE {target} ADD COLUMN doc tsvector")
            for (index,) in conn.execute(SUMMARY_GIN, (target,)).fetchall():
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
            conn.execute(
                f"CREATE INDEX ON {target} "
                "USING gin (coalesce(doc, activity.summary_vector(summary)))"
            )
        return copy_cpu_s(conn, target, chunks)


def main() -> None:
    args = ab_arguments(__doc__).parse_args()
    server = BenchServer().start()
    try:
        dsn = drained_store(server, "summary_doc_ab", args.seconds)
        with psycopg.connect(dsn, autocommit=True) as conn:
            count = numbered_records(conn)
            document = sql.SQL("to_tsvector('simple', summary)")
            chunks = {
                False: export_records(conn, count),
                True: export_records(conn, count, document),
            }
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
        print(f"daemon's document ÷ server's: {ratios_line(ratios)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
