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

from typing import Any

import psycopg
from psycopg import sql

from bench.server import BenchServer
from bench.stats import ratios_line
from bench.store_copy import ab_arguments, copy_cpu_s, drained_store, export_chunks

# The collations compared, by the name a database's default would have; ``C`` first.
# "default" is the database's own (the cluster's --locale), as a store made before 0026 has.
WANTED = ("C", "default", "C.utf8", "en_US.utf8")


def _collations(conn: psycopg.Connection[Any]) -> list[str]:
    """The wanted collations this server has (initdb imports the host's locales)."""
    conn.execute("SELECT pg_import_system_collations('pg_catalog')")
    have = {row[0] for row in conn.execute("SELECT collname FROM pg_collation")}
    return [name for name in WANTED if name in have]


def _records(offset: int, limit: int) -> sql.Composable:
    return sql.SQL(
        "SELECT * FROM activity.records ORDER BY commit_lsn, seq OFFSET {} LIMIT {}"
    ).format(sql.Literal(offset), sql.Literal(limit))


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
        return copy_cpu_s(conn, "public.ab_target", chunks)


def main() -> None:
    parser = ab_arguments(__doc__)
    parser.add_argument("--locale", default="C", help="the cluster's locale (initdb --locale)")
    args = parser.parse_args()
    server = BenchServer(locale=args.locale).start()
    try:
        dsn = drained_store(server, "collation_ab", args.seconds)
        with psycopg.connect(dsn, autocommit=True) as conn:
            collations = _collations(conn)
            count = conn.execute("SELECT count(*) FROM activity.records").fetchone()[0]  # type: ignore[index]
            chunks = export_chunks(conn, count, _records)
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
            print(f"{name} ÷ C: {ratios_line(values)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
