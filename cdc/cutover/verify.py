"""Shadow verification: do the activity records say what the legacy audit log says?

While the audit triggers and CDC both run (the table is in ``shadow`` mode), every committed
row change is written twice: as a legacy audit row by a trigger inside the transaction, and as
an activity record by the daemon after the commit. :func:`verify` compares the two over a
window, per table:

* rows are matched by transaction (the low 32 bits of the legacy ``txid_current()``, which is
  what pgoutput sends as the xid), table, operation and row key (the primary key's values in
  the row; rows of one key in one transaction pair in order);
* a matched pair is compared column by column, old row and new row, except redacted columns
  (the record holds the marker), generated columns (pgoutput does not send them) and columns
  the record lists as unavailable (an unchanged TOASTed value it could not recover);
* legacy rows of any other operation (the demo's ``STATUS_CHANGE`` and ``AMOUNT_CHANGE``) are
  *derived* rows: a second row for the same update, counted apart, never "missing";
* a legacy update that changed only the table's ``ignore_columns`` has no record by design:
  counted as *ignored*.

The window is made exact at its end. The legacy rows are read in one snapshot; the WAL insert
position read in that snapshot, ``up_to_lsn``, is past the commit of every transaction the
snapshot sees. Verify then waits until the daemon has confirmed the stream up to there (so every
record of those transactions is written) and compares only records committed before it. A
transaction that committed just after the snapshot but before ``up_to_lsn`` has records and no
legacy rows in the snapshot: its legacy rows are read again, now that it is visible. At its
start, a transaction belongs to the window when its legacy rows were written (``changed_at``,
the transaction's start) or its records committed (``occurred_at``) at or after ``since``; all
its rows are compared (rows of transactions running longer than an hour across ``since`` may
be cut).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings, TableRules
from cdc.connect import connect
from cdc.cutover.legacy import (
    PRIMARY_OPERATIONS,
    Row,
    legacy_name_map,
    legacy_rows,
    load_json,
)
from cdc.cutover.migration.store import SWITCHES, store_exists, store_table
from cdc.cutover.report import Difference, TableReport, VerifyReport
from cdc.cutover.triggers import (
    TableName,
    audit_triggers,
    configured_tables,
    qualified,
    qualified_name,
)
from cdc.errors import ConfigError, LagExceeded, SinkError, SlotNotFound
from cdc.lsn import Lsn
from cdc.sqlfiles import sql_text

DEFAULT_WINDOW = timedelta(hours=1)
MARGIN = timedelta(hours=1)  # how far a transaction's rows may lie outside the window


# -- comparing values -------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    """A hashable, representation-independent form of a JSON value (1.50 == 1.5)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(value).normalize()
    if isinstance(value, list):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _canon(v)) for k, v in value.items()))
    return str(value)


def values_equal(legacy: Any, cdc: Any) -> bool:
    """JSON values equal, numbers by value; timestamps with an offset by the instant (the
    writer's session TimeZone shapes to_jsonb's text)."""
    if _canon(legacy) == _canon(cdc):
        return True
    if isinstance(legacy, str) and isinstance(cdc, str):
        moments = [_timestamp(legacy), _timestamp(cdc)]
        return None not in moments and moments[0] == moments[1]
    return False


_TIMESTAMPTZ = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?$")


def _timestamp(text: str) -> datetime | None:
    if not _TIMESTAMPTZ.match(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# -- one table's facts ------------------------------------------------------------------------


@dataclass(frozen=True)
class _TableFacts:
    key_columns: tuple[str, ...]
    generated: frozenset[str]
    full_identity: bool
    redacted: re.Pattern[str]
    ignore_columns: frozenset[str]

    def key(self, row: dict[str, Any] | None) -> tuple[Any, ...] | None:
        if not self.key_columns or row is None:
            return None
        return tuple(
            None if self.redacted.fullmatch(c) else _canon(row.get(c)) for c in self.key_columns
        )


def _redaction(settings: Settings, rules: TableRules | None) -> re.Pattern[str]:
    explicit = [re.escape(name) for name in (rules.redact_columns if rules else ())]
    patterns = [*explicit, *settings.redaction.patterns]
    return re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)", re.IGNORECASE)


def _table_facts(
    conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[TableName]
) -> dict[TableName, _TableFacts]:
    rows = conn.execute(
        sql_text("triggers/table_facts.sql"),
        {"schemas": [s for s, _ in tables], "tables": [t for _, t in tables]},
    ).fetchall()
    facts = {}
    for schema, table, keys, generated, identity in rows:
        rules = settings.rules_for(schema, table)
        facts[(schema, table)] = _TableFacts(
            key_columns=tuple(keys),
            generated=frozenset(generated),
            full_identity=identity == "f",
            redacted=_redaction(settings, rules),
            ignore_columns=frozenset(rules.ignore_columns if rules else ()),
        )
    missing = [qualified_name(*t) for t in tables if t not in facts]
    if missing:
        raise ConfigError(f"table(s) not found in the source database: {', '.join(missing)}")
    return facts


# -- the comparison ---------------------------------------------------------------------------


@dataclass
class _Side:
    """The rows of one transaction, table and operation, on one side, by row key."""

    rows: dict[Any, list[Row]] = field(default_factory=lambda: defaultdict(list))


def _row_key(facts: _TableFacts, operation: str, old: Any, new: Any) -> Any:
    return facts.key(old if operation == "delete" else new)


def _compare_images(
    report: TableReport,
    facts: _TableFacts,
    legacy: Row,
    record: Row,
    key: Any,
) -> bool:
    """Column by column, old and new; True when they differ anywhere."""
    unavailable = set((record.get("context") or {}).get("unavailable_columns", ()))
    skipped = facts.generated | unavailable
    differs = False
    for image in ("old", "new"):
        theirs, ours = legacy[image], record[image]
        if theirs is None and ours is None:
            continue
        if image == "old" and record["operation"] == "update" and ours is None:
            continue  # the record has no old row (replica identity not FULL)
        if theirs is None or ours is None:
            differs = True
            report.add(
                Difference(
                    "value", record["xid"], record["operation"], key, image, "(row)", theirs, ours
                )
            )
            continue
        columns = set(ours)
        if image == "new" or facts.full_identity or record["operation"] == "insert":
            columns |= set(theirs)
        for column in sorted(columns):
            if column in skipped or facts.redacted.fullmatch(column):
                continue
            if (
                column not in theirs
                or column not in ours
                or not values_equal(theirs[column], ours[column])
            ):
                differs = True
                report.add(
                    Difference(
                        "value",
                        record["xid"],
                        record["operation"],
                        key,
                        image,
                        column,
                        theirs.get(column, "(absent)"),
                        ours.get(column, "(absent)"),
                    )
                )
    return differs


def _only_ignored(facts: _TableFacts, legacy: Row) -> bool:
    """An update the daemon records no activity for: only ignored columns changed."""
    if not facts.ignore_columns or legacy["operation"] != "update":
        return False
    old, new = legacy["old"] or {}, legacy["new"] or {}
    changed = {c for c in set(old) | set(new) if not values_equal(old.get(c), new.get(c))}
    return not (changed - facts.ignore_columns)


def mode_at(points: Sequence[tuple[int, str]], commit_lsn: int) -> str:
    """The mode (``triggers`` | ``cdc``) of a table for a transaction committed at
    ``commit_lsn``, from its switches (marker LSN, mode) in order: the last marker before the
    commit decides; before the first one, the triggers record the table."""
    mode = "triggers"
    for marker_lsn, to in points:
        if marker_lsn < commit_lsn:
            mode = "cdc" if to in ("cdc", "dropped") else "triggers"
    return mode


def compare(
    tables: Sequence[TableName],
    facts: dict[TableName, _TableFacts],
    legacy_rows: Sequence[Row],
    records: Sequence[Row],
    switches: dict[TableName, list[tuple[int, str]]] | None = None,
) -> list[TableReport]:
    """Match and compare; rows are dicts with xid, table (schema, name), operation, old, new
    (parsed JSON), and for records context and commit_lsn (an int). Records committed while
    their table was on CDC (per ``switches``: marker LSN and mode, in order) are live: they
    have no legacy rows by design; a legacy row of such a transaction is reported. Pure."""
    reports = {table: TableReport(table) for table in tables}
    switches = switches or {}
    live: set[tuple[int, TableName]] = set()
    shadow = []
    for row in records:
        if mode_at(switches.get(row["table"], ()), row["commit_lsn"]) == "cdc":
            reports[row["table"]].live += 1
            live.add((row["xid"], row["table"]))
        else:
            shadow.append(row)
    groups: dict[tuple[int, TableName, str], tuple[_Side, _Side]] = {}
    for row in legacy_rows:
        table_facts = facts[row["table"]]
        if (row["xid"], row["table"]) in live:
            reports[row["table"]].after_cutover += 1
            key = _row_key(table_facts, row["operation"], row["old"], row["new"])
            reports[row["table"]].add(
                Difference("after_cutover", row["xid"], row["operation"], key)
            )
            continue
        if row["operation"] not in PRIMARY_OPERATIONS:
            reports[row["table"]].derived += 1
            continue
        sides = groups.setdefault((row["xid"], row["table"], row["operation"]), (_Side(), _Side()))
        key = _row_key(table_facts, row["operation"], row["old"], row["new"])
        sides[0].rows[key].append(row)
    for row in shadow:
        sides = groups.setdefault((row["xid"], row["table"], row["operation"]), (_Side(), _Side()))
        key = _row_key(facts[row["table"]], row["operation"], row["old"], row["new"])
        sides[1].rows[key].append(row)
    for (xid, table, operation), (legacy_side, cdc_side) in groups.items():
        report, table_facts = reports[table], facts[table]
        for key in list(legacy_side.rows) + [k for k in cdc_side.rows if k not in legacy_side.rows]:
            theirs, ours = legacy_side.rows.get(key, []), cdc_side.rows.get(key, [])
            for legacy, record in zip(theirs, ours, strict=False):
                report.matched += 1
                if _compare_images(report, table_facts, legacy, record, key):
                    report.value_differences += 1
            for legacy in theirs[len(ours) :]:
                if _only_ignored(table_facts, legacy):
                    report.ignored += 1
                else:
                    report.missing_in_cdc += 1
                    report.add(Difference("missing_in_cdc", xid, operation, key))
            for _record in ours[len(theirs) :]:
                report.missing_in_legacy += 1
                report.add(Difference("missing_in_legacy", xid, operation, key))
    return [reports[table] for table in tables]


# -- reading both sides -----------------------------------------------------------------------


def _records(
    conn: psycopg.Connection[Any],
    settings: Settings,
    tables: Sequence[TableName],
    start: datetime,
    end: datetime,
    before_lsn: str,
) -> list[Row]:
    query = sql.SQL(sql_text("triggers/shadow_records.sql")).format(
        records=qualified(settings.sink.schema_name, settings.sink.table_name)
    )
    try:
        rows = conn.execute(
            query,
            {
                "from": start,
                "to": end,
                "before_lsn": before_lsn,
                "schemas": [s for s, _ in tables],
                "tables": [t for _, t in tables],
            },
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise SinkError(
            f'the activity store {settings.sink.table} does not exist; run "cdc setup"'
        ) from None
    return [
        {
            "xid": int(xid) if xid is not None else -1,
            "table": (schema, table),
            "operation": operation,
            "old": load_json(old),
            "new": load_json(new),
            "context": load_json(context),
            "at": occurred_at,
            "commit_lsn": Lsn.parse(commit_lsn),
            "seq": seq,
        }
        for xid, schema, table, operation, old, new, context, occurred_at, commit_lsn, seq in rows
    ]


def wait_for_confirmation(
    conn: psycopg.Connection[Any],
    settings: Settings,
    lsn: str,
    wait_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until the slot's confirmed_flush_lsn reaches ``lsn``: the daemon has written the records
    of every transaction committed before it."""
    slot = settings.source.slot
    deadline = time.monotonic() + wait_seconds
    while True:
        row = conn.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (lsn, slot),
        ).fetchone()
        if row is None:
            raise SlotNotFound(f'replication slot "{slot}" does not exist; run "cdc setup"')
        if row[0]:
            return
        if time.monotonic() >= deadline:
            raise LagExceeded(
                f"the daemon has not confirmed the stream up to {lsn} within {wait_seconds:g}s "
                f"(confirmed {row[1]}), so the records are not complete; start the daemon "
                '("cdc run") or let it catch up ("cdc lag"), or wait longer (--wait)'
            )
        sleep(0.1)


def verify(
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tables: Sequence[TableName] | None = None,
    wait_seconds: float | None = None,
) -> VerifyReport:
    """Compare the legacy audit rows with the activity records over [since, until) (default:
    the hour before now). Returns the report; never raises for differences."""
    chosen = list(tables) if tables else configured_tables(settings)
    names = legacy_name_map(settings, chosen)
    wait = settings.migration.verify_wait_seconds if wait_seconds is None else wait_seconds
    with (
        connect(settings.source.dsn) as source,
        connect(settings.sink_dsn, role="sink") as sink,
    ):
        facts = _table_facts(source, settings, chosen)
        try:
            with source.transaction():
                source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                row = source.execute("SELECT pg_current_wal_insert_lsn()::text, now()").fetchone()
                assert row is not None
                up_to_lsn, now = row
                end = until or now
                start = since or end - DEFAULT_WINDOW
                legacy = legacy_rows(source, settings, names, start - MARGIN, end)
        except psycopg.errors.UndefinedTable:
            raise ConfigError(
                f"the legacy audit log {settings.migration.legacy_table} does not exist; set "
                "[migration] legacy_table"
            ) from None
        except psycopg.errors.UndefinedColumn as exc:
            raise ConfigError(
                f"the legacy audit log {settings.migration.legacy_table}: "
                f"{exc.diag.message_primary}; set the [migration] legacy_*_column names"
            ) from None
        wait_for_confirmation(source, settings, up_to_lsn, wait)
        records = _records(sink, settings, chosen, start, end + MARGIN, up_to_lsn)
        window = {r["xid"] for r in legacy if start <= r["at"] < end}
        window |= {r["xid"] for r in records if start <= r["at"] < end}
        seen = {r["xid"] for r in legacy}
        late = sorted({r["xid"] for r in records if r["xid"] in window} - seen)
        if late:  # committed after the snapshot, before up_to_lsn: visible now
            legacy += legacy_rows(source, settings, names, start - MARGIN, end + MARGIN, late)
        points, audited = _switch_points(source, settings, chosen)
    compared = [t for t in chosen if t in audited]
    reports = {
        r.table: r
        for r in compare(
            compared,
            facts,
            [r for r in legacy if r["xid"] in window and r["table"] in audited],
            [r for r in records if r["xid"] in window and r["table"] in audited],
            points,
        )
    }
    for table in chosen:
        if table not in audited:
            reports[table] = TableReport(table, skipped="no audit triggers and no cutover")
    return VerifyReport(start, end, up_to_lsn, [reports[t] for t in chosen])


def _switch_points(
    conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[TableName]
) -> tuple[dict[TableName, list[tuple[int, str]]], set[TableName]]:
    """Each table's switches (marker LSN, mode) in order, and the tables worth comparing:
    those with audit triggers (enabled or not) or a recorded switch."""
    points: dict[TableName, list[tuple[int, str]]] = {}
    if store_exists(conn, settings, SWITCHES):
        rows = conn.execute(
            sql.SQL(
                "SELECT schema_name, table_name, mode, marker_lsn::text FROM {} ORDER BY id"
            ).format(store_table(settings, SWITCHES))
        )
        for schema, name, mode, lsn in rows:
            # a drop has no marker: the table stays on CDC from its cutover on
            if lsn is not None:
                points.setdefault((schema, name), []).append((Lsn.parse(lsn), mode))
    audited = {t.table_name for t in audit_triggers(conn, settings, tables)} | set(points)
    return points, audited
