"""What the A/B benchmarks of the store's write cost share: a store filled as the daemon fills
it, its records as COPY BINARY chunks, and the sink backend's part (a backend's CPU to COPY
those chunks into a table shaped like the store, one transaction per chunk as the sink does).
"""

from __future__ import annotations

import argparse
import io
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from bench.cdc_process import cdc_command, cdc_env, small_platform_source
from bench.process_probe import cpu_seconds
from bench.server import BenchServer
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

CHUNK = 2_500  # records per COPY: about a drain's flush


def ab_arguments(doc: str) -> argparse.ArgumentParser:
    """The A/B tools' common flags: rounds, and seconds of the platform's mix to record."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    return parser


def drained_store(server: BenchServer, name: str, seconds: float) -> str:
    """A platform database ``name`` with ``seconds`` of its mix (4 clients) recorded by
    ``cdc run --drain`` into its store; returns its DSN."""
    dsn, counts = small_platform_source(server, name)
    options = PgbenchOptions(clients=4, duration_s=seconds)
    run_pgbench(server.bindir, dsn, PLATFORM_MIX, counts.as_params(), options)
    subprocess.run(cdc_command("run", "--drain"), env=cdc_env(dsn), check=True)
    return dsn


def export_chunks(
    conn: psycopg.Connection[Any], count: int, query: Callable[[int, int], sql.Composable]
) -> list[bytes]:
    """``query(offset, limit)``'s rows in COPY BINARY, ``CHUNK`` records at a time."""
    chunks = []
    for start in range(0, count, CHUNK):
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(query(start, CHUNK))
        buffer = io.BytesIO()
        with conn.cursor().copy(statement) as copy:
            for data in copy:
                buffer.write(data)
        chunks.append(buffer.getvalue())
    return chunks


def numbered_records(conn: psycopg.Connection[Any]) -> int:
    """The store's records copied into ``public.ab_source``, numbered ``n`` in commit order
    (the order the sink wrote them); returns how many."""
    conn.execute(
        "CREATE TABLE public.ab_source AS SELECT row_number() OVER "
        "(ORDER BY commit_lsn, seq) AS n, * FROM activity.records"
    )
    row = conn.execute("SELECT count(*) FROM public.ab_source").fetchone()
    return int(row[0]) if row else 0


def export_records(
    conn: psycopg.Connection[Any], count: int, extra: sql.Composable | None = None
) -> list[bytes]:
    """:func:`numbered_records`' rows with the store's columns (and ``extra``, an expression
    over them, last) in COPY BINARY chunks, in commit order."""
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'activity.records'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
    ]
    fields = sql.SQL(", ").join(map(sql.Identifier, columns))
    if extra is not None:
        fields = sql.SQL("{}, {}").format(fields, extra)

    def rows(offset: int, limit: int) -> sql.Composable:
        return sql.SQL(
            "SELECT {} FROM public.ab_source WHERE n > {} AND n <= {} ORDER BY n"
        ).format(fields, sql.Literal(offset), sql.Literal(offset + limit))

    return export_chunks(conn, count, rows)


TARGET = "public.ab_target"


def fresh_target(conn: psycopg.Connection[Any]) -> str:
    """An empty ``public.ab_target`` shaped like the store's records (columns, defaults,
    constraints, every index); returns its name."""
    conn.execute(f"DROP TABLE IF EXISTS {TARGET}")
    conn.execute(
        f"CREATE TABLE {TARGET} (LIKE activity.records INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    )
    return TARGET


def copy_cpu_s(conn: psycopg.Connection[Any], table: str, chunks: list[bytes]) -> float:
    """This connection's backend CPU seconds to COPY ``chunks`` into ``table`` (after a
    CHECKPOINT, so that no earlier writes are flushed on its time)."""
    conn.execute("CHECKPOINT")
    pid = conn.pgconn.backend_pid
    before = cpu_seconds(pid) or 0.0
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(
        sql.Identifier(*table.split("."))
    )
    for data in chunks:
        with conn.transaction(), conn.cursor().copy(statement) as copy:
            copy.write(data)
    return (cpu_seconds(pid) or 0.0) - before
