"""Activity mapping: a committed change becomes an :class:`ActivityRecord`, following the
per-table rules of the config (category, severity, action, entity type, actor, ignored and
redacted columns).

Pure and per-change hot: everything that depends only on the table and its current column set
is computed once per relation version in a :class:`TableMapper`; the per-row work is building
the JSON documents and a few lookups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from cdc.changes import (
    Change,
    RelationInfo,
    RowChange,
    TableTruncate,
    TransactionInfo,
    TransactionMessage,
)
from cdc.config import OPERATIONS, RedactionSettings, Settings, SeverityByOperation, TableRules
from cdc.lsn import format_lsn
from cdc.pgoutput import UNCHANGED_TOAST, TupleData
from cdc.values import JsonConverter, TypeRegistry, encode_json_string

SOURCE_DATABASE = "database"

_PAST_TENSE = {
    "insert": "created",
    "update": "updated",
    "delete": "deleted",
    "truncate": "truncated",
}


class ActivityRecord(NamedTuple):
    """One row of the activity store, in the column order of the sink's COPY.

    JSON columns hold JSON text; ``commit_lsn`` its ``X/Y`` text; ``occurred_at`` ISO 8601.
    """

    occurred_at: str
    source: str
    operation: str
    action: str
    category: str
    severity: str
    schema_name: str | None
    table_name: str | None
    entity_type: str | None
    entity_id: str | None
    actor_id: str | None
    context: str | None
    old: str | None
    new: str | None
    changes: str | None
    summary: str | None
    xid: int | None
    commit_lsn: str
    seq: int


RECORD_COLUMNS: tuple[str, ...] = ActivityRecord._fields


def _redaction_matcher(redaction: RedactionSettings, rules: TableRules | None) -> re.Pattern[str]:
    explicit = [re.escape(name) for name in (rules.redact_columns if rules else ())]
    return re.compile(
        "|".join(f"(?:{p})" for p in [*explicit, *redaction.patterns]) or "(?!)", re.IGNORECASE
    )


class TableMapper:
    """Everything needed to map rows of one relation version; built once per Relation."""

    __slots__ = (
        "actions",
        "actor_positions",
        "categories",
        "changed_keys",
        "converters",
        "entity_type",
        "ignore_positions",
        "json_keys",
        "key_converters",
        "key_positions",
        "redacted_key",
        "relation",
        "rules",
        "severities",
    )

    def __init__(
        self,
        relation: RelationInfo,
        rules: TableRules | None,
        redaction: RedactionSettings,
        types: TypeRegistry,
    ) -> None:
        self.relation = relation
        self.rules = rules
        names = relation.column_names
        self.entity_type = rules.entity_type if rules and rules.entity_type else relation.table
        template = rules.action if rules else "{entity_type}.{operation}"
        self.actions: dict[str, str] = {
            op: template.format(
                entity_type=self.entity_type,
                operation=op,
                table=relation.table,
                schema=relation.schema,
            )
            for op in OPERATIONS
        }
        severity = rules.severity if rules else SeverityByOperation()
        self.severities: dict[str, str] = {op: str(getattr(severity, op)) for op in OPERATIONS}
        self.categories = rules.category if rules else "data_change"
        self.json_keys = tuple(encode_json_string(name) + ":" for name in names)
        matcher = _redaction_matcher(redaction, rules)
        marker = encode_json_string(redaction.marker)

        def redacted(_text: str) -> str:
            return marker

        self.converters: tuple[JsonConverter, ...] = tuple(
            redacted if matcher.fullmatch(name) else types.converter(oid)
            for name, oid in zip(names, relation.type_oids, strict=True)
        )
        # keys of the `changes` document: '"col":{"old":'
        self.changed_keys = tuple(encode_json_string(name) + ':{"old":' for name in names)
        ignore = set(rules.ignore_columns) if rules else set()
        self.ignore_positions = frozenset(i for i, name in enumerate(names) if name in ignore)
        self.actor_positions = tuple(
            names.index(name) for name in (rules.actor_columns if rules else ()) if name in names
        )
        self.key_positions = relation.key_positions
        # A key column that is redacted must not leak through entity_id or the summary.
        self.redacted_key = (
            redaction.marker
            if relation.key_positions is not None
            and any(matcher.fullmatch(names[i]) for i in relation.key_positions)
            else None
        )
        self.key_converters = (
            tuple(types.converter(relation.type_oids[i]) for i in relation.key_positions)
            if relation.key_positions is not None
            else None
        )

    def row_json(self, values: TupleData, positions: tuple[int, ...] | None = None) -> str:
        keys = self.json_keys
        converters = self.converters
        parts = []
        for index in range(len(values)) if positions is None else positions:
            value = values[index]
            if value is None:
                parts.append(keys[index] + "null")
            elif type(value) is str:
                parts.append(keys[index] + converters[index](value))
            elif value is UNCHANGED_TOAST:
                continue  # listed in the record's context as unavailable
            else:  # binary format column: not requested by the stream; keep it as hex text
                assert isinstance(value, bytes)
                parts.append(keys[index] + encode_json_string("\\x" + value.hex()))
        return "{" + ",".join(parts) + "}"

    def value_json(self, index: int, value: object) -> str:
        if value is None:
            return "null"
        if type(value) is str:
            return self.converters[index](value)
        return "null"

    def entity_id(self, values: TupleData | None) -> str | None:
        positions = self.key_positions
        if positions is None or values is None:
            return None
        if self.redacted_key is not None:
            return self.redacted_key
        if len(positions) == 1:
            value = values[positions[0]]
            return value if type(value) is str else None
        assert self.key_converters is not None
        parts = []
        for position, converter in zip(positions, self.key_converters, strict=True):
            value = values[position]
            parts.append(converter(value) if type(value) is str else "null")
        return "[" + ",".join(parts) + "]"

    def actor_id(self, new: TupleData | None, old: TupleData | None) -> str | None:
        for row in (new, old):
            if row is None:
                continue
            for position in self.actor_positions:
                value = row[position]
                if type(value) is str:
                    return value
        return None


class ActivityMapper:
    """Maps changes to records; one per daemon, rebuilt when the config is reloaded."""

    def __init__(
        self,
        settings: Settings,
        *,
        types: TypeRegistry | None = None,
        rules_by_relation_id: Mapping[int, TableRules] | None = None,
    ) -> None:
        self._settings = settings
        self.types = types if types is not None else TypeRegistry()
        # Rules are found by relation OID first, so a table renamed under a running daemon
        # keeps its rules; by name for tables the daemon did not resolve at start.
        self._rules_by_relation_id = dict(rules_by_relation_id or {})
        self._mappers: dict[int, TableMapper] = {}
        self._txn: TransactionInfo | None = None
        self._txn_occurred_at = ""
        self._txn_lsn = ""

    def table_mapper(self, relation: RelationInfo) -> TableMapper:
        mapper = self._mappers.get(relation.relation_id)
        if mapper is None or mapper.relation is not relation:
            rules = self._rules_by_relation_id.get(relation.relation_id)
            if rules is None:
                rules = self._settings.rules_for(relation.schema, relation.table)
            mapper = TableMapper(relation, rules, self._settings.redaction, self.types)
            self._mappers[relation.relation_id] = mapper
        return mapper

    def _transaction_fields(self, txn: TransactionInfo) -> tuple[str, str]:
        if txn is not self._txn:
            self._txn = txn
            self._txn_occurred_at = _iso(txn.commit_time)
            self._txn_lsn = format_lsn(txn.commit_lsn)
        return self._txn_occurred_at, self._txn_lsn

    def map(self, change: Change) -> ActivityRecord | None:
        """The record for a change, or None when the change makes no record."""
        if type(change) is RowChange:
            return self._row_change(change)
        if type(change) is TableTruncate:
            return self._truncate(change)
        if type(change) is TransactionMessage:
            return None  # application events and context: see the activity model
        return None

    def _row_change(self, change: RowChange) -> ActivityRecord | None:
        mapper = self.table_mapper(change.relation)
        operation = change.operation
        old = change.old
        new = change.new
        old_json = new_json = changes_json = None
        changed_names: list[str] = []
        if operation == "update":
            assert new is not None
            new_json = mapper.row_json(new)
            if old is not None and change.old_kind == "O":
                old_json = mapper.row_json(old)
                parts = []
                ignore = mapper.ignore_positions
                meaningful = False
                names = change.relation.column_names
                for index, (before, after) in enumerate(zip(old, new, strict=True)):
                    if before != after and after is not UNCHANGED_TOAST:
                        changed_names.append(names[index])
                        if index not in ignore:
                            meaningful = True
                        parts.append(
                            mapper.changed_keys[index]
                            + mapper.value_json(index, before)
                            + ',"new":'
                            + mapper.value_json(index, after)
                            + "}"
                        )
                if ignore and not meaningful:
                    return None  # only ignored columns (e.g. updated_at) changed
                changes_json = "{" + ",".join(parts) + "}"
            elif old is not None:  # 'K': the key changed; only key columns carry values
                old_json = mapper.row_json(old, mapper.key_positions)
        elif operation == "insert":
            assert new is not None
            new_json = mapper.row_json(new)
        else:
            assert old is not None
            old_json = mapper.row_json(
                old, None if change.old_kind == "O" else mapper.key_positions
            )
        entity_id = mapper.entity_id(new if new is not None else old)
        occurred_at, commit_lsn = self._transaction_fields(change.transaction)
        context = None
        if change.unavailable or change.transaction.origin:
            context = _context_json(change.transaction.origin, change.unavailable)
        summary = (
            f"{mapper.entity_type} {entity_id if entity_id is not None else '(no key)'} "
            f"{_PAST_TENSE[operation]}"
        )
        if changed_names:
            summary += ": " + ", ".join(changed_names)
        return ActivityRecord(
            occurred_at,
            SOURCE_DATABASE,
            operation,
            mapper.actions[operation],
            mapper.categories,
            mapper.severities[operation],
            change.relation.schema,
            change.relation.table,
            mapper.entity_type,
            entity_id,
            mapper.actor_id(new, old),
            context,
            old_json,
            new_json,
            changes_json,
            summary,
            change.transaction.xid,
            commit_lsn,
            change.seq,
        )

    def _truncate(self, change: TableTruncate) -> ActivityRecord:
        mapper = self.table_mapper(change.relation)
        occurred_at, commit_lsn = self._transaction_fields(change.transaction)
        options = [
            name
            for name, on in (
                ("cascade", change.cascade),
                ("restart_identity", change.restart_identity),
            )
            if on
        ]
        context = "{" + ",".join(f'"{name}":true' for name in options) + "}" if options else None
        return ActivityRecord(
            occurred_at,
            SOURCE_DATABASE,
            "truncate",
            mapper.actions["truncate"],
            mapper.categories,
            mapper.severities["truncate"],
            change.relation.schema,
            change.relation.table,
            mapper.entity_type,
            None,
            None,
            context,
            None,
            None,
            None,
            f"{change.relation.schema}.{change.relation.table} truncated",
            change.transaction.xid,
            commit_lsn,
            change.seq,
        )


def _context_json(origin: str | None, unavailable: tuple[str, ...]) -> str:
    parts = []
    if origin:
        parts.append('"origin":' + encode_json_string(origin))
    if unavailable:
        parts.append(
            '"unavailable_columns":[' + ",".join(map(encode_json_string, unavailable)) + "]"
        )
    return "{" + ",".join(parts) + "}"


def _iso(moment: datetime) -> str:
    return moment.isoformat()
