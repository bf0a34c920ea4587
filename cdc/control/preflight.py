"""What the daemon checks and learns of the source before it streams: ``wal_level``, the
slot, the publication, the configured tables' OIDs, the tables whose audit triggers still
record (shadow mode), the drain target, and the cluster's identity."""

from __future__ import annotations

from cdc.config import Settings
from cdc.connect import connect
from cdc.control.setup import check_wal_level, table_oids
from cdc.cutover.triggers import audited_tables
from cdc.errors import PrerequisiteError, PublicationNotFound, SlotNotFound
from cdc.lsn import Lsn
from cdc.pipeline.loop import Source


def protocol_version_for(server_version_num: int) -> int:
    """The highest pgoutput protocol version the server speaks (streaming needs 2+)."""
    if server_version_num >= 160000:
        return 4
    if server_version_num >= 150000:
        return 3
    if server_version_num >= 140000:
        return 2
    raise PrerequisiteError(
        f"PostgreSQL {server_version_num // 10000} is too old: activity-cdc needs PostgreSQL 14 "
        "or later (logical messages and streamed transactions in pgoutput)"
    )


def preflight(settings: Settings, drain: bool) -> Source:
    """Raises the error that says what to run when the source is not ready to stream."""
    source = settings.source
    with connect(source.dsn) as conn:
        check_wal_level(conn)
        proto = protocol_version_for(conn.info.server_version)
        if not conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (source.slot,)
        ).fetchone():
            raise SlotNotFound(f'replication slot "{source.slot}" does not exist; run "cdc setup"')
        if not conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (source.publication,)
        ).fetchone():
            raise PublicationNotFound(
                f'publication "{source.publication}" does not exist; run "cdc setup"'
            )
        oids = table_oids(conn, settings)
        rules = {
            oids[(r.schema_name, r.table_name)][0]: r
            for r in settings.tables
            if (r.schema_name, r.table_name) in oids
        }
        # Tables setup has not seen (added to the config since): the triggers as they are.
        modes = {table: "shadow" for table in audited_tables(conn, settings)}
        target = None
        if drain:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            assert row is not None
            target = Lsn.parse(row[0])
        identity = conn.execute(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database()"
        ).fetchone()
        assert identity is not None
    return Source(proto, rules, target, modes, identity[0], identity[1])
