"""Back up the audit triggers and their functions, so that they can always be recreated.

A backup is the SQL that recreates every audit trigger of the configured tables exactly: each
function as ``pg_get_functiondef`` prints it (language, SECURITY DEFINER, SET options, body),
its owner and comment; each trigger as ``pg_get_triggerdef`` prints it, its enabled state
(``tgenabled`` O/D/R/A → ``ENABLE`` / ``DISABLE`` / ``ENABLE REPLICA`` / ``ENABLE ALWAYS``) and
comment. It runs in one transaction with ``search_path = pg_catalog`` (every name in it is
qualified) and is idempotent (``CREATE OR REPLACE FUNCTION``, ``DROP TRIGGER IF EXISTS``).

:func:`take_backup` stores it in ``<schema>.trigger_backups`` with its SHA-256 and the catalog
facts it was made from, reads it back, and marks it verified when the checksum holds and the
facts equal the live catalog. :func:`backup_problems` repeats that check later: cutover, rollback
and drop refuse a backup that no longer matches the triggers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.cutover.migration.store import BACKUPS, ensure_store, store_exists, store_table
from cdc.cutover.triggers import (
    RESTORE_SETTINGS,
    FunctionInfo,
    Statement,
    TableName,
    TriggerInfo,
    audit_triggers,
    function_statements,
    trigger_statements,
)
from cdc.errors import ConfigError, PrerequisiteError


@dataclass(frozen=True)
class Backup:
    id: int
    taken_at: datetime
    taken_by: str
    checksum: str
    sql: str
    triggers: tuple[TriggerInfo, ...]
    verified_at: datetime | None

    @property
    def checksum_ok(self) -> bool:
        return checksum(self.sql) == self.checksum

    def for_table(self, table_name: TableName) -> list[TriggerInfo]:
        return [t for t in self.triggers if t.table_name == table_name]

    def tables(self) -> list[TableName]:
        return sorted({t.table_name for t in self.triggers})

    def script(self, database: str = "") -> str:
        """The SQL file: a header (id, time, checksum of the body) and the body."""
        where = f" of database {database}" if database else ""
        header = (
            f"-- activity-cdc trigger backup {self.id}{where}, taken {self.taken_at.isoformat()}"
            f" by {self.taken_by}\n"
            f"-- {len(self.triggers)} audit trigger(s) on {len(self.tables())} table(s), "
            f"{len({t.function.signature for t in self.triggers})} function(s)\n"
            f"-- sha256 of everything after this header: {self.checksum}\n"
            "-- Recreates the triggers in the state they were in. To switch a table back from\n"
            "-- CDC, use `cdc triggers rollback` instead: it also marks the switch in the stream.\n"
        )
        return header + self.sql


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def backup_sql(conn: psycopg.Connection[Any], triggers: Sequence[TriggerInfo]) -> str:
    """The body of a backup: one transaction that recreates ``triggers`` and their functions."""
    lines = ["BEGIN;", *(f"{s};" for s in RESTORE_SETTINGS)]
    functions: dict[str, FunctionInfo] = {}
    users: dict[str, int] = {}
    for trigger in triggers:
        functions.setdefault(trigger.function.signature, trigger.function)
        users[trigger.function.signature] = users.get(trigger.function.signature, 0) + 1
    for signature, function in functions.items():
        lines.append(f"\n-- function {signature} ({users[signature]} trigger(s))")
        lines.extend(_terminated(conn, function_statements(function)))
    for trigger in triggers:
        lines.append(
            f"\n-- {trigger.qualified_table}: trigger {trigger.name} ({trigger.enabled_state})"
        )
        lines.extend(_terminated(conn, trigger_statements(trigger)))
    lines.append("\nCOMMIT;")
    return "\n".join(lines) + "\n"


def _terminated(conn: psycopg.Connection[Any], statements: Iterable[Statement]) -> Iterable[str]:
    for statement in statements:
        text = statement.as_string(conn).rstrip()
        yield text if text.endswith(";") else text + ";"


def _facts_problems(backed_up: Sequence[TriggerInfo], live: Sequence[TriggerInfo]) -> list[str]:
    saved = {(t.schema, t.table, t.name): t for t in backed_up}
    problems = []
    for trigger in live:
        copy = saved.get((trigger.schema, trigger.table, trigger.name))
        where = f"trigger {trigger.name} on {trigger.qualified_table}"
        if copy is None:
            problems.append(f"{where} is not in it")
        elif copy.facts() != trigger.facts():
            problems.append(f"{where} changed since (definition or comment)")
        elif copy.function.facts() != trigger.function.facts():
            problems.append(
                f"function {trigger.function.signature} of {where} changed since "
                "(definition, owner, SECURITY DEFINER, settings or comment)"
            )
    return problems


def backup_problems(backup: Backup, live: Sequence[TriggerInfo]) -> list[str]:
    """Why ``backup`` cannot stand in for the ``live`` audit triggers (empty: it can)."""
    problems = []
    if not backup.checksum_ok:
        problems.append(f"its SQL does not match its checksum {backup.checksum[:12]}…")
    if backup.verified_at is None:
        problems.append("it was never verified")
    return problems + _facts_problems(backup.triggers, live)


def _row_to_backup(row: Sequence[Any]) -> Backup:
    backup_id, taken_at, taken_by, digest, text, triggers, verified_at = row
    data = triggers if isinstance(triggers, list) else json.loads(triggers)
    return Backup(
        id=int(backup_id),
        taken_at=taken_at,
        taken_by=taken_by,
        checksum=digest,
        sql=text,
        triggers=tuple(TriggerInfo.from_json(item) for item in data),
        verified_at=verified_at,
    )


def load_backup(
    conn: psycopg.Connection[Any], settings: Settings, backup_id: int | None = None
) -> Backup | None:
    """Backup ``backup_id``, or the latest; None when there is none."""
    if not store_exists(conn, settings, BACKUPS):
        return None
    query = sql.SQL(
        "SELECT id, taken_at, taken_by, checksum, sql, triggers, verified_at FROM {} "
        "WHERE %(id)s::bigint IS NULL OR id = %(id)s ORDER BY id DESC LIMIT 1"
    ).format(store_table(settings, BACKUPS))
    row = conn.execute(query, {"id": backup_id}).fetchone()
    return _row_to_backup(row) if row else None


def take_backup(settings: Settings) -> Backup:
    """Back up every audit trigger of the configured tables; stored, read back and verified."""
    with connect(settings.source.dsn) as conn:
        ensure_store(conn, settings)
        triggers = audit_triggers(conn, settings)
        if not triggers:
            raise ConfigError(
                "no audit triggers on the configured tables: nothing to back up; check "
                f"[migration] audit_functions (now {list(settings.migration.audit_functions)})"
            )
        body = backup_sql(conn, triggers)
        insert = sql.SQL(
            "INSERT INTO {} (checksum, sql, triggers) VALUES (%s, %s, %s::jsonb) RETURNING id"
        ).format(store_table(settings, BACKUPS))
        row = conn.execute(
            insert, (checksum(body), body, json.dumps([t.as_json() for t in triggers]))
        ).fetchone()
        assert row is not None
        backup = load_backup(conn, settings, int(row[0]))
        assert backup is not None
        problems = [p for p in backup_problems(backup, triggers) if p != "it was never verified"]
        if problems:
            raise PrerequisiteError(
                f"backup {backup.id} did not read back as written: " + "; ".join(problems)
            )
        conn.execute(
            sql.SQL("UPDATE {} SET verified_at = now() WHERE id = %s").format(
                store_table(settings, BACKUPS)
            ),
            (backup.id,),
        )
        verified = load_backup(conn, settings, backup.id)
        assert verified is not None
        return verified
