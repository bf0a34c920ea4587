"""Drop the audit triggers of tables that have been on CDC for the soak period.

A table's audit triggers are dropped only when all of them are disabled, its latest switch is a
cutover to CDC at least ``[migration] soak_hours`` old, and a verified backup still recreates
them exactly (so ``cdc triggers rollback`` can bring them back). A function goes too once no
trigger at all (on any table) uses it any more. One transaction per table (``DROP TRIGGER``
takes an ACCESS EXCLUSIVE lock: short ``lock_timeout``, retried), then one for the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdc.config import Settings
from cdc.connect import connect
from cdc.cutover.migration.backup import Backup, backup_problems, load_backup
from cdc.cutover.migration.store import ensure_store, last_switches, record_switch
from cdc.cutover.migration.switch import LockWait, locked
from cdc.cutover.triggers import (
    FunctionInfo,
    TableName,
    TriggerInfo,
    audit_triggers,
    by_table,
    configured_tables,
    drop_function_statement,
    drop_trigger_statement,
    qualified,
    qualified_name,
)
from cdc.errors import PrerequisiteError


@dataclass
class TableDrop:
    table: TableName
    triggers: list[TriggerInfo]
    kept: str | None = None  # why this table's triggers stay (None: they go)
    backup_id: int | None = None

    @property
    def name(self) -> str:
        return qualified_name(*self.table)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "triggers": [t.name for t in self.triggers],
            "kept": self.kept,
            "backup_id": self.backup_id,
        }


@dataclass
class DropPlan:
    tables: list[TableDrop] = field(default_factory=list)
    functions: list[FunctionInfo] = field(default_factory=list)  # no trigger uses them after

    @property
    def dropping(self) -> list[TableDrop]:
        return [t for t in self.tables if t.kept is None]

    def script(self, conn: psycopg.Connection[Any], settings: Settings) -> str:
        """The SQL the drop runs (what ``--dry-run`` prints)."""
        lock_timeout = f"{settings.migration.lock_timeout_ms}ms"
        lines = []
        for table in self.dropping:
            lines += [
                f"-- {table.name}: {len(table.triggers)} audit trigger(s), "
                f"backed up in backup {table.backup_id}",
                "BEGIN;",
                f"SET LOCAL lock_timeout = '{lock_timeout}';",
                f"LOCK TABLE {qualified(*table.table).as_string(conn)} IN ACCESS EXCLUSIVE MODE;",
                *(f"{drop_trigger_statement(t).as_string(conn)};" for t in table.triggers),
                "COMMIT;",
                "",
            ]
        if self.functions:
            lines.append("-- functions no trigger uses any more")
            lines.append("BEGIN;")
            lines += [f"{drop_function_statement(f).as_string(conn)};" for f in self.functions]
            lines.append("COMMIT;")
        for table in self.tables:
            if table.kept is not None:
                lines.append(f"-- kept: {table.name}: {table.kept}")
        return "\n".join(lines).strip() + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "tables": [t.as_json() for t in self.tables],
            "functions": [f.signature for f in self.functions],
        }


def plan_drop(
    conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[TableName] | None = None
) -> DropPlan:
    """What ``drop`` would remove, and why each other table keeps its triggers."""
    soak_s = settings.migration.soak_hours * 3600
    chosen = list(tables) if tables else configured_tables(settings)
    live = by_table(audit_triggers(conn, settings, chosen))
    switches = last_switches(conn, settings)
    backups: dict[int | None, Backup | None] = {}
    plan = DropPlan()
    for table in chosen:
        triggers = live.get(table, [])
        entry = TableDrop(table, triggers)
        plan.tables.append(entry)
        switch = switches.get(table)
        enabled = [t.name for t in triggers if t.is_enabled]
        if not triggers:
            entry.kept = "no audit triggers"
        elif enabled:
            entry.kept = (
                f"still on its triggers ({', '.join(enabled)} enabled); "
                '"cdc triggers cutover" first'
            )
        elif switch is None or switch.mode != "cdc":
            entry.kept = 'no cutover to CDC recorded; run "cdc triggers cutover" first'
        elif switch.age_seconds < soak_s:
            entry.kept = (
                f"on CDC for {switch.age_seconds / 3600:.1f}h, less than [migration] "
                f"soak_hours = {settings.migration.soak_hours:g}"
            )
        else:
            if switch.backup_id not in backups:
                backups[switch.backup_id] = load_backup(conn, settings, switch.backup_id)
            backup = backups[switch.backup_id]
            if backup is None:
                entry.kept = 'no backup of its triggers; run "cdc triggers backup"'
                continue
            problems = backup_problems(backup, triggers)
            if problems:
                entry.kept = (
                    f"backup {backup.id} cannot restore its triggers: "
                    + "; ".join(problems)
                    + '; run "cdc triggers backup"'
                )
            else:
                entry.backup_id = backup.id
    plan.functions = _unused_functions(conn, plan)
    return plan


def _unused_functions(conn: psycopg.Connection[Any], plan: DropPlan) -> list[FunctionInfo]:
    dropped = [t for table in plan.dropping for t in table.triggers]
    oids = [t.oid for t in dropped]
    functions: dict[int, FunctionInfo] = {}
    for trigger in dropped:
        functions.setdefault(trigger.function.oid, trigger.function)
    unused = []
    for oid, function in functions.items():
        row = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgfoid = %s AND oid <> ALL(%s)",
            (oid, oids),
        ).fetchone()
        if row is not None and row[0] == 0:
            unused.append(function)
    return unused


def drop_triggers(
    settings: Settings,
    tables: Sequence[TableName] | None = None,
    *,
    dry_run: bool = False,
    on_lock_wait: LockWait | None = None,
) -> tuple[DropPlan, str, list[str]]:
    """Plan, and unless ``dry_run`` apply: returns the plan, its SQL and what was done. Named
    ``tables`` that cannot be dropped are refused (PrerequisiteError, nothing changed)."""
    with connect(settings.source.dsn) as conn:
        ensure_store(conn, settings)
        plan = plan_drop(conn, settings, tables)
        script = plan.script(conn, settings)
        if tables:
            refused = [f"{t.name}: {t.kept}" for t in plan.tables if t.kept is not None]
            if refused:
                raise PrerequisiteError(
                    "drop refused: " + " | ".join(refused) + "; nothing was dropped"
                )
        if dry_run:
            return plan, script, []
        done = []
        for table in plan.dropping:
            _drop_table(conn, settings, table, on_lock_wait)
            done.append(f"dropped {len(table.triggers)} audit trigger(s) of {table.name}")
        if plan.functions:
            with conn.transaction():
                for function in plan.functions:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgfoid = %s",
                        (function.oid,),
                    ).fetchone()
                    if row is not None and row[0] == 0:
                        conn.execute(drop_function_statement(function))
                        done.append(f"dropped function {function.signature}")
        return plan, script, done


def _drop_table(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table: TableDrop,
    on_lock_wait: LockWait | None,
) -> None:
    def work() -> None:
        live = {t.name: t for t in audit_triggers(conn, settings, [table.table])}
        for trigger in table.triggers:
            current = live.get(trigger.name)
            if current is None:
                continue  # dropped meanwhile
            if current.is_enabled:
                raise PrerequisiteError(
                    f"{table.name}: trigger {trigger.name} was enabled again meanwhile; "
                    "nothing was dropped on this table"
                )
            conn.execute(drop_trigger_statement(current))
        record_switch(
            conn,
            settings,
            table.table,
            mode="dropped",
            phase=None,
            triggers=[t.name for t in table.triggers],
            backup_id=table.backup_id,
            marker_lsn=None,
            marker=None,
        )

    locked(
        conn, settings, table.table, work, lock_mode="ACCESS EXCLUSIVE", on_lock_wait=on_lock_wait
    )
