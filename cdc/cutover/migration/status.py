"""Where each configured table is in the migration, and what each side recorded lately.

Modes, from the catalog and the switches:

* ``triggers``: audit triggers enabled, and CDC does not capture the table (not in the
  publication);
* ``shadow``: audit triggers enabled and CDC captures the table too (``cdc verify`` compares);
* ``cdc``: the audit triggers are disabled (or the table never had any): CDC alone records it;
* ``dropped``: the audit triggers were dropped after the soak (a backup can recreate them);
* ``partial``: some audit triggers enabled, some disabled: not a state the migration makes.

Beside it, the daemon's own view when it has one: ``<schema>.capture_modes`` in the activity
store, which the daemon writes as it applies the ``cdc.cutover`` markers (absent before the
first cutover it saw). Counts cover the last hour, or the time since the table's latest switch
when that is more recent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.cutover.legacy import legacy_query
from cdc.cutover.migration.backup import load_backup
from cdc.cutover.migration.store import Switch, last_switches
from cdc.cutover.triggers import (
    TableName,
    audit_triggers,
    by_table,
    configured_tables,
    qualified,
    qualified_name,
)
from cdc.sqlfiles import sql_text

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class CaptureMode:
    """The daemon's row in ``capture_modes``."""

    mode: str  # shadow | cdc
    since_commit_lsn: str | None
    changed_at: datetime | None


@dataclass(frozen=True)
class TableStatus:
    table: TableName
    mode: str  # triggers | shadow | cdc | dropped | partial
    enabled_triggers: tuple[str, ...]
    disabled_triggers: tuple[str, ...]
    captured: bool  # in the publication
    switch: Switch | None
    daemon: CaptureMode | None
    since: datetime
    records: int | None  # activity records (shadow or live) since `since`
    legacy_rows: int | None  # legacy audit rows of row changes since `since`
    legacy_derived: int | None  # other legacy rows (STATUS_CHANGE ...) since `since`
    note: str | None

    @property
    def name(self) -> str:
        return qualified_name(*self.table)

    def as_json(self) -> dict[str, Any]:
        switch = self.switch
        return {
            "table": self.name,
            "mode": self.mode,
            "enabled_triggers": list(self.enabled_triggers),
            "disabled_triggers": list(self.disabled_triggers),
            "captured": self.captured,
            "last_switch": None
            if switch is None
            else {
                "mode": switch.mode,
                "phase": switch.phase,
                "at": switch.switched_at.isoformat(),
                "marker_lsn": switch.marker_lsn,
                "backup_id": switch.backup_id,
            },
            "daemon_mode": None
            if self.daemon is None
            else {
                "mode": self.daemon.mode,
                "since_commit_lsn": self.daemon.since_commit_lsn,
                "changed_at": self.daemon.changed_at.isoformat()
                if self.daemon.changed_at
                else None,
            },
            "since": self.since.isoformat(),
            "records": self.records,
            "legacy_rows": self.legacy_rows,
            "legacy_derived_rows": self.legacy_derived,
            "note": self.note,
        }


@dataclass(frozen=True)
class MigrationStatus:
    tables: list[TableStatus]
    backup_id: int | None
    capture_modes: bool  # whether the daemon's capture_modes table exists

    def as_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "capture_modes": self.capture_modes,
            "tables": [t.as_json() for t in self.tables],
        }


def _capture_modes(
    sink: psycopg.Connection[Any], settings: Settings
) -> dict[TableName, CaptureMode] | None:
    """The daemon's capture modes; None when it has not created the table (yet)."""
    try:
        rows = sink.execute(
            sql.SQL(
                "SELECT schema_name, table_name, mode, since_commit_lsn::text, changed_at "
                "FROM {}.capture_modes"
            ).format(sql.Identifier(settings.sink.schema_name))
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return {(s, t): CaptureMode(mode, lsn, at) for s, t, mode, lsn, at in rows}


def _record_count(
    sink: psycopg.Connection[Any], settings: Settings, table: TableName, since: datetime
) -> int | None:
    query = sql.SQL(sql_text("triggers/record_counts.sql")).format(
        records=qualified(settings.sink.schema_name, settings.sink.table_name)
    )
    try:
        row = sink.execute(
            query, {"schema": table[0], "table": table[1], "since": since}
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row[0]) if row else 0


def _legacy_counts(
    conn: psycopg.Connection[Any], settings: Settings, table: TableName, since: datetime
) -> tuple[int | None, int | None]:
    try:
        with conn.transaction():
            row = conn.execute(
                legacy_query(settings, "triggers/legacy_counts.sql"),
                {"schema": table[0], "table": table[1], "since": since},
            ).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return None, None  # no legacy log (any more)
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _mode(
    enabled: list[str], disabled: list[str], captured: bool, switch: Switch | None, backed_up: bool
) -> tuple[str, str | None]:
    if enabled and disabled:
        return "partial", "some audit triggers are enabled, some disabled"
    if enabled:
        if captured:
            return "shadow", None
        return "triggers", 'not in the publication: CDC does not capture it ("cdc setup")'
    if disabled:
        return "cdc", None if switch is not None else "audit triggers disabled outside cdc"
    if (switch is not None and switch.mode == "dropped") or backed_up:
        return "dropped", None
    return "cdc", "no audit triggers"


def migration_status(settings: Settings) -> MigrationStatus:
    tables = configured_tables(settings)
    with (
        connect(settings.source.dsn) as conn,
        connect(settings.sink_dsn, role="sink") as sink,
    ):
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now: datetime = row[0]
        triggers = by_table(audit_triggers(conn, settings, tables))
        switches = last_switches(conn, settings)
        backup = load_backup(conn, settings)
        backed_up = {t.table_name for t in backup.triggers} if backup else set()
        published = {
            (s, t)
            for s, t in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (settings.source.publication,),
            )
        }
        modes = _capture_modes(sink, settings)
        found = []
        for table in tables:
            live = triggers.get(table, [])
            enabled = [t.name for t in live if t.is_enabled]
            disabled = [t.name for t in live if not t.is_enabled]
            switch = switches.get(table)
            mode, note = _mode(enabled, disabled, table in published, switch, table in backed_up)
            daemon = modes.get(table) if modes is not None else None
            expected = "cdc" if mode in ("cdc", "dropped") else "shadow"
            if daemon is not None and daemon.mode != expected and mode != "triggers":
                note = (
                    f"the daemon records it in {daemon.mode} mode: it has not applied the "
                    "latest switch yet"
                )
            since = now - WINDOW
            if switch is not None and switch.switched_at > since:
                since = switch.switched_at
            legacy_rows, legacy_derived = _legacy_counts(conn, settings, table, since)
            found.append(
                TableStatus(
                    table=table,
                    mode=mode,
                    enabled_triggers=tuple(enabled),
                    disabled_triggers=tuple(disabled),
                    captured=table in published,
                    switch=switch,
                    daemon=daemon,
                    since=since,
                    records=_record_count(sink, settings, table, since),
                    legacy_rows=legacy_rows,
                    legacy_derived=legacy_derived,
                    note=note,
                )
            )
    return MigrationStatus(found, backup.id if backup else None, modes is not None)
