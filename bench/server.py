"""The throwaway PostgreSQL every benchmark runs on, and its databases.

One cluster per benchmark run (``cdc.demo.embedded.EmbeddedPostgres``, fsync on), with the same
settings for every mode, so that ratios compare like with like. Never the machine's own
server: the cluster lives in a temporary directory on a free loopback port and is removed at
the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cdc.demo.embedded import EmbeddedPostgres

# Sized for a 2-core, 24 GiB machine and identical for every mode. Checkpoints are spaced
# out (and forced between runs by the benchmarks) so that none lands inside a timed run.
SERVER_SETTINGS: Mapping[str, str] = {
    "shared_buffers": "1GB",
    "max_wal_size": "16GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "1h",
    "max_connections": "100",
    "logical_decoding_work_mem": "64MB",
    "wal_sender_timeout": "60s",
    "log_min_messages": "warning",
}


class BenchServer:
    """Start with :meth:`start`, end with :meth:`stop`; databases by name."""

    def __init__(self, *, locale: str = "C") -> None:
        # C by default: text compared with memcmp. A production database is usually made in
        # the host's locale (``--locale C.UTF-8``), where btrees over text call strcoll.
        self.embedded = EmbeddedPostgres(fsync=True, settings=SERVER_SETTINGS, locale=locale)

    @property
    def bindir(self) -> Path:
        return self.embedded.bindir

    def start(self) -> BenchServer:
        self.embedded.start()
        return self

    def stop(self) -> None:
        self.embedded.stop()

    def dsn(self, dbname: str = "postgres") -> str:
        return self.embedded.dsn_for(dbname)

    def local_dsn(self, dbname: str = "postgres") -> str:
        """Through the server's Unix socket: how a consumer beside the database connects
        (docs/operations.md, "Where the daemon runs"); the application's pgbench keeps TCP."""
        return self.embedded.local_dsn_for(dbname)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn(dbname), **kwargs)

    def version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def settings(self) -> dict[str, str]:
        """The settings the benchmarks ran with, as the server reports them."""
        names = [*SERVER_SETTINGS, "fsync", "synchronous_commit", "full_page_writes", "wal_level"]
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (names,),
            ).fetchall()
            collation = conn.execute(
                "SELECT datcollate FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        found = {name: value for name, value in rows}
        if collation is not None:
            found["database collation"] = str(collation[0])
        return found

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A fresh database (a copy of ``template`` when given); returns its DSN."""
        self.drop_database(name)
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` and its replication slots (a slot left behind retains WAL forever)."""
        with self.connect() as conn:
            for slot, pid in conn.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                (name,),
            ).fetchall():
                if pid is not None:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                drop_slot(conn, slot)
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def checkpoint(self) -> None:
        """Flush dirty buffers now, so that a checkpoint does not land inside the next run."""
        with self.connect() as conn:
            conn.execute("CHECKPOINT")


def drop_slot(conn: psycopg.Connection[Any], slot: str, *, wait_s: float = 10.0) -> None:
    """Drop a slot if it exists; waits for a consumer that is just disconnecting."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (slot,),
            )
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def running_server() -> Iterator[BenchServer]:
    server = BenchServer().start()
    try:
        yield server
    finally:
        server.stop()
