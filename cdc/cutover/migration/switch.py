"""Switch a table from its audit triggers to CDC (cutover), or back (rollback), at an exact
point of the change stream.

One transaction per table, with a short ``lock_timeout`` (retried with backoff):

1. ``LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE`` (what ``ALTER TABLE ... TRIGGER`` takes):
   it waits for every transaction that has written to the table, and holds back every new one;
2. re-read the table's audit triggers under the lock;
3. ``ALTER TABLE ... DISABLE TRIGGER`` each enabled audit trigger (rollback: enable it again in
   its backed-up state, or recreate it from the backup when it was dropped);
4. ``pg_logical_emit_message(true, 'cdc.cutover', marker)``, transactional: it is decoded at
   the commit of this transaction, in commit order with every other change (no ``flush`` on
   17+: a transactional message is flushed with its commit record, which this transaction
   commits with ``synchronous_commit = on``; ``flush`` only changes non-transactional ones);
5. a row in ``<schema>.trigger_switches``.

The marker is ``{"table": "schema.table", "to": "cdc" | "triggers", "phase": N | null,
"triggers": [names], "backup_id": id}``. Every change to the table committed before it was
written by the audit triggers (they were enabled when it ran: a writer still in progress holds
a lock that step 1 waits for); every change committed after it was not (it ran after the
commit, with the triggers off). So the legacy audit log records the changes before the marker
and CDC the changes after it: each change exactly once. The daemon reads the marker in the
stream and from there on records the table's changes as live activity (``source`` =
``database``) instead of shadow records.

Cutover refuses unless CDC demonstrably captures the table (see :func:`cutover_checks`);
rollback never depends on CDC being healthy: it is the way back when it is not.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.cutover.migration.backup import Backup, backup_problems, load_backup
from cdc.cutover.migration.preconditions import CutoverPlan, plan_cutover
from cdc.cutover.migration.store import Switch, ensure_store, last_switches, record_switch
from cdc.cutover.triggers import (
    RESTORE_SETTINGS,
    TableName,
    audit_triggers,
    enable_statement,
    function_statements,
    qualified,
    qualified_name,
    trigger_statements,
)
from cdc.errors import PrerequisiteError

log = logging.getLogger("cdc.migration.switch")  # log lines keep the name they had

MARKER_PREFIX = "cdc.cutover"

T = TypeVar("T")

# SHARE ROW EXCLUSIVE is what ALTER TABLE ... ENABLE/DISABLE TRIGGER and CREATE TRIGGER take;
# DROP TRIGGER takes ACCESS EXCLUSIVE.
LockMode = Literal["SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"]

# Called before each retry of a table whose lock was not granted: (table, attempt, delay_s).
LockWait = Callable[[TableName, int, float], None]


@dataclass(frozen=True)
class SwitchResult:
    table: TableName
    to: str
    triggers: tuple[str, ...]  # switched (cutover: disabled; rollback: enabled or recreated)
    recreated: tuple[str, ...]  # rollback: triggers recreated from the backup
    backup_id: int | None
    marker: dict[str, Any] | None
    marker_lsn: str | None  # LSN of the cdc.cutover message
    xid: int | None  # 64-bit id of the switching transaction
    attempts: int  # lock attempts it took
    skipped: str | None = None

    @property
    def name(self) -> str:
        return qualified_name(*self.table)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "to": self.to,
            "triggers": list(self.triggers),
            "recreated": list(self.recreated),
            "backup_id": self.backup_id,
            "marker": self.marker,
            "marker_lsn": self.marker_lsn,
            "xid": self.xid,
            "attempts": self.attempts,
            "skipped": self.skipped,
        }


def marker(
    table: TableName,
    to: str,
    phase: int | None,
    triggers: Sequence[str],
    backup_id: int | None,
    by: str | None = None,
) -> dict[str, Any]:
    """The cdc.cutover message; ``by`` (the role that switched) is left out when unknown."""
    content: dict[str, Any] = {
        "table": qualified_name(*table),
        "to": to,
        "phase": phase,
        "triggers": list(triggers),
        "backup_id": backup_id,
    }
    if by is not None:
        content["by"] = by
    return content


def cutover_script(conn: psycopg.Connection[Any], settings: Settings, plan: CutoverPlan) -> str:
    """The statements a cutover runs, table by table (what ``--dry-run`` prints)."""
    lines = []
    user = conn.execute("SELECT session_user::text").fetchone()
    for table in plan.tables:
        if table.skip:
            lines.append(f"-- {table.name}: nothing to do ({table.skip})")
            continue
        names = [t.name for t in table.enabled]
        backup_id = plan.backup.id if plan.backup else None
        content = marker(
            table.table, "cdc", plan.phase, names, backup_id, user[0] if user else None
        )
        emit = sql.SQL("SELECT pg_catalog.pg_logical_emit_message(true, {}, {})").format(
            sql.Literal(MARKER_PREFIX), sql.Literal(json.dumps(content))
        )
        lines += [
            f"-- {table.name}" + ("" if table.ok else ": REFUSED: " + "; ".join(table.refusals())),
            "BEGIN;",
            f"SET LOCAL lock_timeout = '{settings.migration.lock_timeout_ms}ms';",
            f"LOCK TABLE {qualified(*table.table).as_string(conn)} IN SHARE ROW EXCLUSIVE MODE;",
            *(f"{enable_statement(t, 'D').as_string(conn)};" for t in table.enabled),
            f"{emit.as_string(conn)};",
            f"-- and a row in {settings.sink.schema_name}.trigger_switches",
            "COMMIT;",
            "",
        ]
    return "\n".join(lines).strip() + "\n"


def preview_cutover(
    settings: Settings, tables: Sequence[TableName], *, phase: int | None = None
) -> tuple[CutoverPlan, str]:
    """The plan (every precondition) and its SQL; changes nothing."""
    with connect(settings.source.dsn) as conn:
        plan = plan_cutover(conn, settings, tables, phase=phase)
        return plan, cutover_script(conn, settings, plan)


# -- the switch itself ------------------------------------------------------------------------


def locked(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table: TableName,
    work: Callable[[], T],
    *,
    lock_mode: LockMode,
    on_lock_wait: LockWait | None,
) -> tuple[T, int]:
    """Run ``work`` in one transaction that first locks ``table`` with a short lock_timeout;
    when the lock is not granted in time, roll back, wait (exponential backoff with jitter)
    and try again, ``lock_attempts`` times in all. The commit is synchronous: a switch that
    was reported is durable."""
    migration = settings.migration
    delay_s = 0.1
    for attempt in range(1, migration.lock_attempts + 1):
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true), "
                    "set_config('synchronous_commit', 'on', true)",
                    (f"{migration.lock_timeout_ms}ms",),
                )
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN {} MODE").format(
                        qualified(*table), sql.SQL(lock_mode)
                    )
                )
                return work(), attempt
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PrerequisiteError(
                f"{qualified_name(*table)}: {exc.diag.message_primary}; nothing was changed on "
                "it; switch it as the owner of the table with EXECUTE on "
                "pg_catalog.pg_logical_emit_message (or as a superuser)"
            ) from None
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if attempt == migration.lock_attempts:
                raise PrerequisiteError(
                    f"{qualified_name(*table)} is busy: its lock was not granted within "
                    f"{migration.lock_timeout_ms} ms, {attempt} times ({exc.diag.message_primary});"
                    " nothing was changed on it; retry later, or raise [migration] "
                    "lock_timeout_ms / lock_attempts"
                ) from None
            wait_s = delay_s * random.uniform(0.5, 1.0)
            log.info(
                "%s: lock not granted (attempt %d of %d); retrying in %.2fs",
                qualified_name(*table),
                attempt,
                migration.lock_attempts,
                wait_s,
            )
            if on_lock_wait is not None:
                on_lock_wait(table, attempt, wait_s)
            time.sleep(wait_s)
            delay_s = min(delay_s * 2, migration.lock_backoff_max_ms / 1000)
    raise AssertionError("unreachable")


def _emit(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table: TableName,
    to: str,
    phase: int | None,
    triggers: Sequence[str],
    backup_id: int | None,
) -> tuple[dict[str, Any], str, int]:
    """The marker and the switch row, in the caller's transaction."""
    user = conn.execute("SELECT session_user::text").fetchone()
    content = marker(table, to, phase, triggers, backup_id, user[0] if user else None)
    row = conn.execute(
        "SELECT pg_catalog.pg_logical_emit_message(true, %s::text, %s::text)::text",
        (MARKER_PREFIX, json.dumps(content)),
    ).fetchone()
    assert row is not None
    marker_lsn = str(row[0])
    _, xid = record_switch(
        conn,
        settings,
        table,
        mode=to,
        phase=phase,
        triggers=list(triggers),
        backup_id=backup_id,
        marker_lsn=marker_lsn,
        marker=content,
    )
    return content, marker_lsn, xid


def cutover(
    settings: Settings,
    tables: Sequence[TableName],
    *,
    phase: int | None = None,
    on_lock_wait: LockWait | None = None,
) -> tuple[CutoverPlan, list[SwitchResult]]:
    """Switch ``tables`` to CDC. Raises PrerequisiteError, changing nothing, when a
    precondition fails for any of them."""
    with connect(settings.source.dsn) as conn:
        ensure_store(conn, settings)
        plan = plan_cutover(conn, settings, tables, phase=phase)
        if not plan.ok:
            raise PrerequisiteError(plan.refusal())
        results = []
        for table_plan in plan.tables:
            if table_plan.skip:
                results.append(
                    SwitchResult(
                        table_plan.table, "cdc", (), (), None, None, None, None, 0, table_plan.skip
                    )
                )
                continue
            assert plan.backup is not None
            results.append(
                _cutover_table(conn, settings, table_plan.table, plan.backup, phase, on_lock_wait)
            )
        return plan, results


def _cutover_table(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table: TableName,
    backup: Backup,
    phase: int | None,
    on_lock_wait: LockWait | None,
) -> SwitchResult:
    def work() -> tuple[list[str], dict[str, Any], str, int]:
        live = audit_triggers(conn, settings, [table])  # under the lock: what is there now
        problems = backup_problems(backup, live)
        if problems:
            raise PrerequisiteError(
                f"{qualified_name(*table)}: backup {backup.id} cannot restore its triggers: "
                + "; ".join(problems)
                + '; nothing was changed on it; run "cdc triggers backup" and retry'
            )
        names = [t.name for t in live if t.is_enabled]
        for trigger in live:
            if trigger.is_enabled:
                conn.execute(enable_statement(trigger, "D"))
        content, marker_lsn, xid = _emit(conn, settings, table, "cdc", phase, names, backup.id)
        return names, content, marker_lsn, xid

    (names, content, marker_lsn, xid), attempts = locked(
        conn, settings, table, work, lock_mode="SHARE ROW EXCLUSIVE", on_lock_wait=on_lock_wait
    )
    log.info(
        "%s: cut over to CDC at %s (%d trigger(s) disabled)",
        qualified_name(*table),
        marker_lsn,
        len(names),
    )
    return SwitchResult(
        table, "cdc", tuple(names), (), backup.id, content, marker_lsn, xid, attempts
    )


# -- rollback ---------------------------------------------------------------------------------


def _rollback_backup(
    conn: psycopg.Connection[Any], settings: Settings, switch: Switch | None, table: TableName
) -> Backup | None:
    """The backup to restore ``table`` from: the one its cutover named, else the latest."""
    if switch is not None and switch.backup_id is not None:
        backup = load_backup(conn, settings, switch.backup_id)
        if backup is not None and backup.for_table(table):
            return backup
    return load_backup(conn, settings)


def rollback(
    settings: Settings,
    tables: Sequence[TableName],
    *,
    phase: int | None = None,
    on_lock_wait: LockWait | None = None,
) -> list[SwitchResult]:
    """Switch ``tables`` back to their audit triggers: each trigger in its backed-up state,
    recreated from the backup (with its function, when that is gone too) if it was dropped;
    and a ``cdc.cutover`` marker ``"to": "triggers"`` in the same transaction."""
    results = []
    with connect(settings.source.dsn) as conn:
        ensure_store(conn, settings)
        switches = last_switches(conn, settings)
        for table in tables:
            backup = _rollback_backup(conn, settings, switches.get(table), table)
            results.append(
                _rollback_table(
                    conn, settings, table, backup, switches.get(table), phase, on_lock_wait
                )
            )
    return results


def _rollback_table(
    conn: psycopg.Connection[Any],
    settings: Settings,
    table: TableName,
    backup: Backup | None,
    switch: Switch | None,
    phase: int | None,
    on_lock_wait: LockWait | None,
) -> SwitchResult:
    name = qualified_name(*table)
    saved = backup.for_table(table) if backup else []
    if saved and backup is not None and not backup.checksum_ok:
        raise PrerequisiteError(
            f"{name}: backup {backup.id} does not match its checksum; nothing was changed on "
            "it; recreate the triggers from a backup file (its header names its checksum)"
        )
    was_off = switch is not None and switch.mode in ("cdc", "dropped")

    def work() -> tuple[list[str], list[str], dict[str, Any] | None, str | None, int | None]:
        live = {t.name: t for t in audit_triggers(conn, settings, [table])}
        for setting in RESTORE_SETTINGS:
            conn.execute(setting)
        switched: list[str] = []
        recreated: list[str] = []
        for trigger in saved:  # back to the backed-up state, recreated when dropped
            current = live.get(trigger.name)
            if current is None:
                if not _function_exists(conn, trigger.function.signature):
                    for statement in function_statements(trigger.function):
                        conn.execute(statement)
                for statement in trigger_statements(trigger, replace=False):
                    conn.execute(statement)
                recreated.append(trigger.name)
            elif current.enabled != trigger.enabled:
                conn.execute(enable_statement(current, trigger.enabled))
            else:
                continue
            if trigger.is_enabled:
                switched.append(trigger.name)
        if not saved:  # no backup of this table: enable what is there
            for trigger in live.values():
                if not trigger.is_enabled:
                    conn.execute(enable_statement(trigger, "O"))
                    switched.append(trigger.name)
        if not (switched or recreated or was_off):
            return [], [], None, None, None  # nothing was off: it is on its triggers
        backup_id = backup.id if saved and backup is not None else None
        content, marker_lsn, xid = _emit(
            conn, settings, table, "triggers", phase, switched, backup_id
        )
        return switched, recreated, content, marker_lsn, xid

    (switched, recreated, content, marker_lsn, xid), attempts = locked(
        conn, settings, table, work, lock_mode="SHARE ROW EXCLUSIVE", on_lock_wait=on_lock_wait
    )
    if content is None:
        return SwitchResult(
            table, "triggers", (), (), None, None, None, None, attempts, "already on triggers"
        )
    log.info("%s: rolled back to its triggers at %s", name, marker_lsn)
    return SwitchResult(
        table,
        "triggers",
        tuple(switched),
        tuple(recreated),
        content["backup_id"],
        content,
        marker_lsn,
        xid,
        attempts,
    )


def _function_exists(conn: psycopg.Connection[Any], signature: str) -> bool:
    row = conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (signature,)).fetchone()
    return bool(row and row[0])
