"""What a cutover requires of each table before it switches (:func:`plan_cutover`): CDC
demonstrably captures it (in the publication, REPLICA IDENTITY FULL, the slot healthy, the daemon
acknowledging and caught up), the switching role may do it, and a verified backup can restore
its audit triggers. Changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.cutover.migration.backup import Backup, backup_problems, load_backup
from cdc.cutover.migration.store import Switch, last_switches
from cdc.cutover.triggers import (
    TableName,
    TriggerInfo,
    audit_triggers,
    by_table,
    qualified_name,
)
from cdc.logical_messages import grant_hint
from cdc.sqlfiles import sql_text


@dataclass(frozen=True)
class Check:
    """One precondition of a cutover: what was found, and the fix when it fails."""

    name: str  # publication, replica_identity, slot, acknowledged, lag, backup
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class TablePlan:
    table: TableName
    checks: list[Check] = field(default_factory=list)
    triggers: list[TriggerInfo] = field(default_factory=list)  # the table's audit triggers
    skip: str | None = None  # why nothing is to be done

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def name(self) -> str:
        return qualified_name(*self.table)

    @property
    def enabled(self) -> list[TriggerInfo]:
        return [t for t in self.triggers if t.is_enabled]

    def refusals(self) -> list[str]:
        return [f"{check.name}: {check.detail}" for check in self.checks if not check.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "ok": self.ok,
            "skip": self.skip,
            "triggers": [t.name for t in self.enabled],
            "checks": [check.as_json() for check in self.checks],
        }


@dataclass
class CutoverPlan:
    to: str  # cdc | triggers
    phase: int | None
    backup: Backup | None
    tables: list[TablePlan]

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    def refusal(self) -> str:
        parts = [
            f"{table.name}: " + "; ".join(table.refusals()) for table in self.tables if not table.ok
        ]
        return (
            f"cutover refused for {len(parts)} of {len(self.tables)} table(s): "
            + " | ".join(parts)
            + '; nothing was changed (see "cdc triggers cutover --dry-run")'
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "phase": self.phase,
            "backup_id": self.backup.id if self.backup else None,
            "ok": self.ok,
            "tables": [table.as_json() for table in self.tables],
        }


def _slot_checks(conn: psycopg.Connection[Any], settings: Settings) -> list[Check]:
    slot = settings.source.slot
    migration = settings.migration
    row = conn.execute(sql_text("triggers/slot_health.sql"), {"slot": slot}).fetchone()
    if row is None:
        return [
            Check(
                "slot",
                False,
                f'replication slot "{slot}" does not exist: nothing captures the changes; run '
                '"cdc setup" and start the daemon',
            )
        ]
    slot_type, plugin, database, wal_status, pid, confirmed, unconfirmed, reply_age = row
    checks = []
    if slot_type != "logical" or plugin != "pgoutput" or database != conn.info.dbname:
        checks.append(
            Check(
                "slot",
                False,
                f'slot "{slot}" is a {slot_type} slot ({plugin}) of database {database!r}, not '
                "activity-cdc's; choose another [source] slot",
            )
        )
    elif wal_status in ("lost", "unreserved"):
        checks.append(
            Check(
                "slot",
                False,
                f'slot "{slot}" has wal_status {wal_status}: the server '
                + ("removed WAL it needed" if wal_status == "lost" else "may remove WAL it needs")
                + '; see "Recovering from an invalidated slot" in docs/operations.md',
            )
        )
    else:
        checks.append(Check("slot", True, f'slot "{slot}" exists, wal_status {wal_status}'))
    checks.append(_acknowledged_check(settings, pid, reply_age, confirmed))
    if unconfirmed is not None and unconfirmed <= migration.max_lag_bytes:
        checks.append(Check("lag", True, f"{unconfirmed} bytes not yet confirmed"))
    else:
        checks.append(
            Check(
                "lag",
                False,
                f"{unconfirmed} bytes not yet confirmed, over [migration] max_lag_bytes = "
                f'{migration.max_lag_bytes}; let the daemon catch up ("cdc lag")',
            )
        )
    return checks


def _acknowledged_check(
    settings: Settings, pid: int | None, reply_age: float | None, confirmed: str | None
) -> Check:
    """The daemon acknowledged recently: its walsender's last reply, or else its checkpoint."""
    limit = settings.migration.max_ack_age_seconds
    checkpoint_age = _checkpoint_age(settings)
    if pid is not None and reply_age is not None and reply_age <= limit:
        return Check(
            "acknowledged",
            True,
            f"the daemon (pid {pid}) acknowledged {reply_age:.1f}s ago, through {confirmed}",
        )
    if checkpoint_age is not None and checkpoint_age <= limit:
        return Check(
            "acknowledged", True, f"the daemon wrote a checkpoint {checkpoint_age:.1f}s ago"
        )
    seen = []
    if pid is None:
        seen.append("nobody streams from the slot")
    elif reply_age is None:
        seen.append(f"pid {pid} streams, its last reply is not visible to this role")
    else:
        seen.append(f"pid {pid} last replied {reply_age:.1f}s ago")
    seen.append(
        "no checkpoint"
        if checkpoint_age is None
        else f"the last checkpoint is {checkpoint_age:.1f}s old"
    )
    return Check(
        "acknowledged",
        False,
        f"the daemon has not acknowledged within {limit:g}s ({', '.join(seen)}); "
        'start it ("cdc run") and retry',
    )


def _checkpoint_age(settings: Settings) -> float | None:
    """Seconds since the daemon last wrote its checkpoint (None: none, or no store)."""
    try:
        with connect(settings.sink_dsn, role="sink") as sink:
            row = sink.execute(
                sql.SQL(
                    "SELECT extract(epoch FROM now() - updated_at)::float8 FROM {}.checkpoints "
                    "WHERE slot_name = %s"
                ).format(sql.Identifier(settings.sink.schema_name)),
                (settings.source.slot,),
            ).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
        return None  # no store, or not ours to read: the walsender's reply must do
    return float(row[0]) if row else None


def _table_checks(
    conn: psycopg.Connection[Any], settings: Settings, table: TableName
) -> list[Check]:
    name = qualified_name(*table)
    publication = settings.source.publication
    published = conn.execute(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s "
        "AND tablename = %s",
        (publication, *table),
    ).fetchone()
    identity = conn.execute(
        "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        table,
    ).fetchone()
    privileges = conn.execute(sql_text("triggers/switch_privileges.sql"), table).fetchone()
    assert privileges is not None
    user, owns, emits = privileges
    missing = []
    if not owns:
        missing.append(f"does not own {name} (ALTER TABLE ... TRIGGER needs its owner)")
    if not emits:
        missing.append(
            "cannot EXECUTE pg_logical_emit_message (setup revokes it from PUBLIC so that "
            "markers cannot be forged); "
            + grant_hint(conn.info.server_version, sql.Identifier(user).as_string(conn))
        )
    return [
        Check("privileges", True, f"{user} owns {name} and may emit the marker")
        if not missing
        else Check(
            "privileges",
            False,
            f"role {user} " + "; and ".join(missing) + "; or run as a superuser",
        ),
        Check("publication", True, f"{name} is in publication {publication}")
        if published
        else Check(
            "publication",
            False,
            f'{name} is not in publication {publication}: CDC does not see it; run "cdc setup"',
        ),
        Check("replica_identity", True, "REPLICA IDENTITY FULL")
        if identity and identity[0] == "f"
        else Check(
            "replica_identity",
            False,
            f"{name} does not have REPLICA IDENTITY FULL (updates and deletes would lack the "
            'old row); run "cdc setup"',
        ),
    ]


def _backup_check(backup: Backup | None, triggers: Sequence[TriggerInfo]) -> Check:
    if backup is None:
        return Check("backup", False, 'no backup of the audit triggers; run "cdc triggers backup"')
    problems = backup_problems(backup, triggers)
    if problems:
        return Check(
            "backup",
            False,
            f"backup {backup.id} cannot restore these triggers: "
            + "; ".join(problems)
            + '; run "cdc triggers backup"',
        )
    return Check("backup", True, f"backup {backup.id} (verified) covers {len(triggers)} trigger(s)")


def plan_cutover(
    conn: psycopg.Connection[Any],
    settings: Settings,
    tables: Sequence[TableName],
    *,
    phase: int | None = None,
) -> CutoverPlan:
    """Evaluate every precondition for every table; changes nothing."""
    backup = load_backup(conn, settings)
    triggers = by_table(audit_triggers(conn, settings, tables))
    switches = last_switches(conn, settings)
    shared = _slot_checks(conn, settings)
    plans = []
    for table in tables:
        plan = TablePlan(table, triggers=triggers.get(table, []))
        if not plan.triggers:
            plan.skip = "no audit triggers: CDC records it already"
        elif not plan.enabled and _on(switches.get(table), "cdc"):
            plan.skip = "already on CDC"
        else:
            plan.checks = [
                *_table_checks(conn, settings, table),
                *shared,
                _backup_check(backup, plan.triggers),
            ]
        plans.append(plan)
    return CutoverPlan("cdc", phase, backup, plans)


def _on(switch: Switch | None, mode: str) -> bool:
    return switch is not None and (
        switch.mode == mode or (mode == "cdc" and switch.mode == "dropped")
    )
