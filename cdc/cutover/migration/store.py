"""What the migration keeps in the source database, next to the triggers it switches:
``<schema>.trigger_backups`` (backups with their checksum) and ``<schema>.trigger_switches``
(every cutover, rollback and drop). ``<schema>`` is the activity schema (``[sink] table``'s).
Both are created on first use with CREATE ... IF NOT EXISTS (sql/triggers/store.sql): they are
the migration's, not the activity store's, which may live in another database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.cutover.triggers import TableName
from cdc.sqlfiles import sql_template

BACKUPS = "trigger_backups"
SWITCHES = "trigger_switches"


def identifiers(settings: Settings) -> dict[str, str]:
    return {
        "schema": settings.sink.schema_name,
        "backups": BACKUPS,
        "switches": SWITCHES,
        "switches_table_idx": f"{SWITCHES}_table_idx",
    }


def ensure_store(conn: psycopg.Connection[Any], settings: Settings) -> None:
    """Create the migration's tables unless they exist (then no CREATE privilege is needed)."""
    if store_exists(conn, settings, BACKUPS) and store_exists(conn, settings, SWITCHES):
        return
    conn.execute(sql_template("triggers/store.sql", **identifiers(settings)))


def store_exists(conn: psycopg.Connection[Any], settings: Settings, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (settings.sink.schema_name, name),
    ).fetchone()
    return row is not None


def store_table(settings: Settings, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(settings.sink.schema_name), sql.Identifier(name))


@dataclass(frozen=True)
class Switch:
    """The latest switch of one table."""

    table: TableName
    mode: str  # cdc | triggers | dropped
    phase: int | None
    triggers: tuple[str, ...]
    backup_id: int | None
    xid: int
    marker_lsn: str | None
    switched_at: datetime
    age_seconds: float


def record_switch(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table_name: TableName,
    *,
    mode: str,
    phase: int | None,
    triggers: list[str],
    backup_id: int | None,
    marker_lsn: str | None,
    marker: dict[str, Any] | None,
) -> tuple[int, int]:
    """Insert the switch (in the caller's transaction); returns its id and the transaction's
    64-bit id."""
    row = conn.execute(
        sql_template("triggers/record_switch.sql", **identifiers(settings)),
        {
            "schema_name": table_name[0],
            "table_name": table_name[1],
            "mode": mode,
            "phase": phase,
            "triggers": triggers,
            "backup_id": backup_id,
            "marker_lsn": marker_lsn,
            "marker": json.dumps(marker) if marker is not None else None,
        },
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def last_switches(conn: psycopg.Connection[Any], settings: Settings) -> dict[TableName, Switch]:
    """The latest switch of each table (empty when nothing was ever switched)."""
    if not store_exists(conn, settings, SWITCHES):
        return {}
    rows = conn.execute(sql_template("triggers/last_switches.sql", **identifiers(settings)))
    found = {}
    for schema, name, mode, phase, triggers, backup_id, xid, lsn, at, age in rows:
        found[(schema, name)] = Switch(
            table=(schema, name),
            mode=mode,
            phase=phase,
            triggers=tuple(triggers),
            backup_id=backup_id,
            xid=int(xid),
            marker_lsn=lsn,
            switched_at=at,
            age_seconds=float(age),
        )
    return found
