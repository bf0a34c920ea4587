"""``cdc triggers import-history``: the legacy audit log as activity records, so that an
entity's history runs on from the years the triggers recorded into what CDC records.

Mapping. A legacy row (``to_jsonb(OLD)`` / ``to_jsonb(NEW)`` of one INSERT, UPDATE or DELETE)
becomes a record with ``source = 'legacy'`` by the same rules as a live change of its table
(:class:`LegacyMapper`, from the table's ``[[tables]]`` entry): entity type and id (the primary
key), action template and transition rules, severity per operation, category, actor columns
(new row, then old), ignored columns (an update of only those is no record), and redaction
(the same patterns and marker or keyed hash). Values are the JSON the trigger stored: what
``to_jsonb`` rendered, as the stream renders them. ``occurred_at`` is the legacy row's time
(the transaction's start); ``xid`` its 32-bit transaction id; ``commit_lsn`` is ``0/0`` (no
WAL position: before the stream) and ``seq`` the legacy id (modulo 2^31), so the records'
key also refuses a legacy row imported twice. ``context`` names the legacy id.

Never twice. The import reads the log in chunks by its order column; each chunk's records and
the position after it (``activity.legacy_imports``) commit in ONE sink transaction, so a
killed import resumes after its last committed chunk, and a finished one finds nothing more.
Rows of a transaction CDC recorded too (the shadow phase, when triggers and CDC both ran; or
after the cutover) are skipped: the same (table, xid) within a day among the records.

In the hash chain, imported records are appended where each chunk commits: after the records
written before the import, so the chain's order is the order of recording, not of
``occurred_at``; ``cdc verify-chain`` covers them like any record, and readers order history
by ``occurred_at`` (``cdc activity history``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from cdc.config import OPERATIONS, Settings, TableRules
from cdc.connect import connect
from cdc.cutover.legacy import legacy_name_map, legacy_query
from cdc.cutover.triggers import TableName, configured_tables
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.catalog import primary_keys
from cdc.pipeline.redaction import Redactor, redaction_matcher, redactor
from cdc.pipeline.sink import Sink
from cdc.pipeline.sinks import source_id, system_identifier
from cdc.pipeline.values import jsonb_text
from cdc.sqlfiles import sql_template

SOURCE_LEGACY = "legacy"
NO_LSN = "0/0"
_PAST_TENSE = {"insert": "created", "update": "updated", "delete": "deleted"}


def _load(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text, parse_float=Decimal)


def _dump(value: object) -> str:
    """JSON text; Decimal numbers as written (to_jsonb kept their digits)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dump(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _text(value: object) -> str | None:
    """A JSON value as the column's text would read (for entity ids, actors, redaction)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"  # PostgreSQL's text of a boolean
    return _dump(value)


class LegacyMapper:
    """Maps legacy rows of one table by its [[tables]] rules (see the module docstring)."""

    def __init__(
        self, settings: Settings, table: TableName, rules: TableRules | None, key: Sequence[str]
    ) -> None:
        self.schema, self.table = table
        self.rules = rules
        self.key = tuple(key)
        self.redact: Redactor = redactor(settings.redaction)
        self.matcher: re.Pattern[str] = redaction_matcher(settings.redaction, rules)
        self.entity_type = rules.entity_type if rules and rules.entity_type else self.table
        template = rules.action if rules else "{entity_type}.{operation}"
        self.actions: dict[str, str] = {
            op: template.format(
                entity_type=self.entity_type, operation=op, table=self.table, schema=self.schema
            )
            for op in OPERATIONS
        }
        self.severity = rules.severity if rules else None
        self.category = rules.category if rules else "data_change"
        self.ignore = set(rules.ignore_columns) if rules else set()
        self.actor_columns = tuple(rules.actor_columns) if rules else ()

    def _redacted(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            name: (self.redact(_text(value) or "") if value is not None else None)
            if self.matcher.fullmatch(name)
            else value
            for name, value in row.items()
        }

    def _entity_id(self, row: dict[str, Any] | None) -> str | None:
        if row is None or not self.key or any(k not in row for k in self.key):
            return None
        if any(self.matcher.fullmatch(k) for k in self.key):
            return self.redact("|".join(_text(row[k]) or "" for k in self.key))
        if len(self.key) == 1:
            return _text(row[self.key[0]])
        return "[" + ",".join(_dump(row[k]) for k in self.key) + "]"

    def _severity(self, operation: str) -> str:
        return (
            str(getattr(self.severity, operation))
            if self.severity
            else ("warning" if operation == "delete" else "info")
        )

    def record(
        self,
        legacy_id: int,
        xid: int | None,
        operation: str,
        old_text: str | None,
        new_text: str | None,
        changed_at: datetime,
    ) -> ActivityRecord | None:
        old, new = _load(old_text), _load(new_text)
        changed: list[str] = []
        changes: dict[str, Any] | None = None
        if operation == "update" and old is not None and new is not None:
            changed = [name for name in new if old.get(name) != new.get(name)]
            if changed and all(name in self.ignore for name in changed):
                return None  # only ignored columns (e.g. updated_at) changed
            changes = {name: {"old": old.get(name), "new": new.get(name)} for name in changed}
        action, severity, category = self._classified(operation, old, new)
        entity_id = self._entity_id(new if new is not None else old)
        actor = self._actor(old, new)
        summary = (
            f"{self.entity_type} {entity_id if entity_id is not None else '(no key)'} "
            f"{_PAST_TENSE[operation]}"
        )
        if actor is not None:
            summary += f" by {actor}"
        if changed:
            summary += ": " + ", ".join(changed)
        summary += f" ({action})"
        red_old = self._redacted(old) if old is not None else None
        red_new = self._redacted(new) if new is not None else None
        red_changes = self._redacted_changes(changes) if changes is not None else None
        return ActivityRecord(
            changed_at.isoformat(),
            SOURCE_LEGACY,
            operation,
            action,
            category,
            severity,
            self.schema,
            self.table,
            self.entity_type,
            entity_id,
            actor,
            # the documents in jsonb's own text form: the sink hashes the text it sends
            jsonb_text({"legacy_id": legacy_id}),
            None if red_old is None else jsonb_text(red_old),
            None if red_new is None else jsonb_text(red_new),
            None if red_changes is None else jsonb_text(red_changes),
            summary,
            xid,
            NO_LSN,
            legacy_id % 2**31,
        )

    def _classified(
        self, operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> tuple[str, str, str]:
        """(action, severity, category): the first transition rule that matches, else the
        table's defaults for the operation."""
        action, severity, category = (
            self.actions[operation],
            self._severity(operation),
            self.category,
        )
        for rule in self.rules.rules if self.rules else ():
            if operation not in rule.operations or new is None or rule.column not in new:
                continue
            after = new[rule.column]
            if operation == "update":
                before = (old or {}).get(rule.column)
                if before == after or (rule.from_value is not None and before != rule.from_value):
                    continue
            if rule.to_value is not None and after != rule.to_value:
                continue
            return rule.action, rule.severity or severity, rule.category or category
        return action, severity, category

    def _actor(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
        """The first actor column that holds a value, new row first."""
        for row in (new, old):
            for column in self.actor_columns if row is not None else ():
                if row is not None and row.get(column) is not None:
                    return _text(row[column])
        return None

    def _redacted_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {
                side: (self.redact(_text(v) or "") if v is not None else None)
                for side, v in change.items()
            }
            if self.matcher.fullmatch(name)
            else change
            for name, change in changes.items()
        }


@dataclass
class ImportProgress:
    """After each committed chunk: rows read so far, their total, rate and ETA."""

    rows_read: int
    total: int
    records: int
    skipped_shadow: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.rows_read) / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class ImportResult:
    rows_read: int  # this run
    records: int  # this run
    skipped_shadow: int  # this run
    resumed_after_id: int  # 0: from the start
    last_id: int
    dry_run: bool


def import_key(settings: Settings, since: datetime | None, until: datetime | None) -> str:
    return (
        f"{settings.migration.legacy_table} since={since.isoformat() if since else '-'} "
        f"until={until.isoformat() if until else '-'}"
    )


def import_history(
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    chunk_rows: int = 10_000,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportResult:
    """Import the legacy audit log of the configured tables (see the module docstring)."""
    tables = configured_tables(settings)
    key = import_key(settings, since, until)
    schema, records_table = settings.sink.schema_name, settings.sink.table_name
    with connect(settings.source.dsn) as source:
        names = legacy_name_map(settings, tables)
        keys = primary_keys(source)
        mappers = {
            name: LegacyMapper(settings, table, settings.rules_for(*table), keys.get(table, ()))
            for name, table in names.items()
        }
        sink = Sink(
            settings.sink_dsn,
            schema=schema,
            table=records_table,
            slot=settings.source.slot,
            hash_chain=settings.sink.hash_chain,
            source_id=source_id(system_identifier(source), settings.source.slot),
        )
        sink.open()
        try:
            position = sink.execute(
                sql.SQL("SELECT last_id FROM {}.legacy_imports WHERE import_key = %(key)s").format(
                    sql.Identifier(schema)
                ),
                {"key": key},
            )
            sink.commit()
            start_id = int(position[0][0]) if position else 0
            params = {"names": list(names), "since": since, "until": until}
            row = source.execute(
                legacy_query(settings, "triggers/legacy_import_total.sql"),
                {**params, "after": start_id},
            ).fetchone()
            total = int(row[0]) if row else 0
            chunk_sql = legacy_query(settings, "triggers/legacy_import_chunk.sql")
            shadow_sql = sql_template("store/shadow_xids.sql", schema=schema, records=records_table)
            upsert = sql_template("store/legacy_import_position.sql", schema=schema)
            started = time.monotonic()
            last_id, read, written, skipped = start_id, 0, 0, 0
            while True:
                rows = source.execute(
                    chunk_sql, {**params, "after": last_id, "limit": chunk_rows}
                ).fetchall()
                if not rows:
                    break
                recorded = _recorded_by_cdc(sink, shadow_sql, rows)
                records, chunk_skipped = _chunk_records(rows, mappers, recorded)
                chunk_last = int(rows[-1][0])
                if not dry_run:
                    sink.write(Flush(records, None))
                    sink.execute(
                        upsert,
                        {"key": key, "last": chunk_last, "read": len(rows),
                         "records": len(records), "skipped": chunk_skipped},
                    )  # fmt: skip
                    sink.commit()  # the chunk and the position after it, together
                last_id = chunk_last
                read += len(rows)
                written += len(records)
                skipped += chunk_skipped
                if progress is not None:
                    progress(
                        ImportProgress(read, total, written, skipped, time.monotonic() - started)
                    )
        finally:
            sink.close()
    return ImportResult(read, written, skipped, start_id, last_id, dry_run)


def _chunk_records(
    rows: Iterable[tuple[Any, ...]],
    mappers: dict[str, LegacyMapper],
    recorded: set[tuple[str, str, int]],
) -> tuple[list[ActivityRecord], int]:
    """The records of a chunk of the legacy log, and how many of its rows CDC recorded already
    (left out)."""
    records = []
    skipped = 0
    for legacy_id, xid, table_name, _schema, operation, old, new, changed_at in rows:
        mapper = mappers[table_name]
        if (mapper.schema, mapper.table, xid) in recorded:
            skipped += 1
            continue
        record = mapper.record(legacy_id, xid, operation, old, new, changed_at)
        if record is not None:
            records.append(record)
    return records, skipped


def _recorded_by_cdc(
    sink: Sink, query: sql.Composed, rows: Iterable[tuple[Any, ...]]
) -> set[tuple[str, str, int]]:
    rows = list(rows)
    xids = sorted({int(row[1]) for row in rows if row[1] is not None})
    if not xids:
        return set()
    times = [row[7] for row in rows]
    found = sink.execute(query, {"since": min(times), "until": max(times), "xids": xids})
    return {(str(s), str(t), int(x)) for s, t, x in found}
