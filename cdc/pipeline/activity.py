"""Activity mapping: a committed change becomes an :class:`ActivityRecord`, following the
per-table rules of the config (category, severity, action, entity type, actor, ignored and
redacted columns).

Pure and per-change hot: everything that depends only on the table and its current column set
is computed once per relation version in a :class:`TableMapper`; the per-row work is building
the JSON documents and a few lookups.

The documents (``old``, ``new``, ``changes``, ``context``) are written in jsonb's own text
form (cdc.pipeline.documents, values): a row's columns in jsonb's key order, computed once per
relation, so the text sent is the text the store gives back and the daemon can hash it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from cdc.config import (
    OPERATIONS,
    RedactionSettings,
    Settings,
    SeverityByOperation,
    TableRules,
    TransitionRule,
)
from cdc.metrics import MappingCounts
from cdc.pipeline.activity_record import (
    CUTOVER_PREFIX,
    HEARTBEAT_PREFIX,
    PAST_TENSE,
    RECORD_COLUMNS,
    SOURCE_DATABASE,
    SOURCE_SHADOW,
    ActivityRecord,
    iso_text,
    lsn_text,
)
from cdc.pipeline.changes import (
    Change,
    RelationInfo,
    RowChange,
    TableTruncate,
    TransactionInfo,
    TransactionMessage,
)
from cdc.pipeline.core import converter_kind, mapping
from cdc.pipeline.documents import row_json as _row_json
from cdc.pipeline.documents import update_json as _update_json
from cdc.pipeline.logical_messages import (
    TransactionFields,
    application_event,
    context_of,
    cutover_marker,
    cutover_record,
    heartbeat_latency_s,
)
from cdc.pipeline.pgoutput import TupleData
from cdc.pipeline.redaction import Redactor, redaction_matcher, redactor
from cdc.pipeline.values import (
    JsonConverter,
    TypeRegistry,
    as_string,
    encode_json_string,
    jsonb_key_order,
    jsonb_text,
)

# The record lives in cdc.pipeline.activity_record; importers find it here as before.
__all__ = ["RECORD_COLUMNS", "ActivityMapper", "ActivityRecord", "TableMapper"]

log = logging.getLogger("cdc.activity")  # log lines keep the name they had


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
        "key_order",
        "key_positions",
        "key_redacted",
        "kinds",
        "order",
        "plan",
        "redact",
        "relation",
        "rules",
        "severities",
        "source",
        "transitions",
    )

    def __init__(
        self,
        relation: RelationInfo,
        rules: TableRules | None,
        redaction: RedactionSettings,
        types: TypeRegistry,
        redact: Redactor,
        source: str = SOURCE_DATABASE,
    ) -> None:
        self.relation = relation
        self.source = source
        self.redact = redact
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
        self.json_keys = tuple(encode_json_string(name) + ": " for name in names)
        # the columns in jsonb's key order: the order of the members of old, new and changes
        self.order = tuple(sorted(range(len(names)), key=lambda i: jsonb_key_order(names[i])))
        matcher = redaction_matcher(redaction, rules)

        def redacted(text: str) -> str:
            return encode_json_string(redact(text))

        plain = tuple(types.converter(oid) for oid in relation.type_oids)
        self.converters: tuple[JsonConverter, ...] = tuple(
            redacted if matcher.fullmatch(name) else converter
            for name, converter in zip(names, plain, strict=True)
        )
        self.kinds = tuple(converter_kind(converter) for converter in self.converters)
        # (position, rule, the column's value as the rule compares it) for the rules whose
        # column exists
        self.transitions = tuple(
            (names.index(rule.column), rule, _rule_value(plain[names.index(rule.column)]))
            for rule in (rules.rules if rules else ())
            if rule.column in names
        )
        # keys of the `changes` document: '"col": {"new": ' (jsonb puts "new" before "old")
        self.changed_keys = tuple(encode_json_string(name) + ': {"new": ' for name in names)
        ignore = set(rules.ignore_columns) if rules else set()
        self.ignore_positions = frozenset(i for i, name in enumerate(names) if name in ignore)
        self.actor_positions = tuple(
            names.index(name) for name in (rules.actor_columns if rules else ()) if name in names
        )
        self.key_positions = relation.key_positions
        self.key_order = (
            None
            if relation.key_positions is None
            else tuple(sorted(relation.key_positions, key=lambda i: jsonb_key_order(names[i])))
        )
        # A key column that is redacted must not leak through entity_id or the summary.
        self.key_redacted = relation.key_positions is not None and any(
            matcher.fullmatch(names[i]) for i in relation.key_positions
        )
        self.key_converters = (
            tuple(types.converter(relation.type_oids[i]) for i in relation.key_positions)
            if relation.key_positions is not None
            else None
        )
        self.plan = None if mapping is None else mapping.TablePlan(self)  # its fields, in C

    def row_json(self, values: TupleData, positions: tuple[int, ...] | None = None) -> str:
        """The row's columns (or those at ``positions``, given in jsonb's key order)."""
        if positions is None:
            positions = self.order
            if len(values) != len(positions):  # not the relation's shape: what the row holds
                positions = tuple(i for i in positions if i < len(values))
        return _row_json(self.json_keys, self.kinds, self.converters, values, positions)

    def update_json(self, old: TupleData, new: TupleData) -> tuple[str, str, list[int], list[str]]:
        """An update with the whole old row: the old and new rows' JSON (members in jsonb's key
        order), the positions of the changed columns (in column order) and their diffs, in
        one pass."""
        order = self.order
        if len(new) != len(order):  # not the relation's shape: what the rows hold
            order = tuple(i for i in order if i < len(new))
        old_json, new_json, changed, diffs = _update_json(
            self.json_keys, self.changed_keys, self.kinds, self.converters, old, new, order
        )
        changed.sort()  # named in column order (the summary), the documents in jsonb's
        return old_json, new_json, changed, diffs

    def entity_id(self, values: TupleData | None) -> str | None:
        positions = self.key_positions
        if positions is None or values is None:
            return None
        if self.key_redacted:
            return self.redact(
                "|".join(v if type(v) is str else "" for v in (values[p] for p in positions))
            )
        if len(positions) == 1:
            value = values[positions[0]]
            return value if type(value) is str else None
        assert self.key_converters is not None
        parts = []
        for position, converter in zip(positions, self.key_converters, strict=True):
            value = values[position]
            parts.append(converter(value) if type(value) is str else "null")
        return "[" + ",".join(parts) + "]"

    def transition(
        self, operation: str, old: TupleData | None, new: TupleData
    ) -> TransitionRule | None:
        """The first rule the change matches (compared on the columns' JSON values)."""
        for position, rule, value_of in self.transitions:
            if operation not in rule.operations:
                continue
            after = new[position]
            if operation == "update":
                if old is None or old[position] == after:
                    continue
                if rule.from_value is not None and value_of(old[position]) != rule.from_value:
                    continue
            if rule.to_value is not None and value_of(after) != rule.to_value:
                continue
            return rule
        return None

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
        counts: MappingCounts | None = None,
    ) -> None:
        self._settings = settings
        self.types = types if types is not None else TypeRegistry()
        # Rules are found by relation OID first, so a table renamed under a running daemon
        # keeps its rules; by name for tables the daemon did not resolve at start.
        self.rules_by_relation_id = dict(rules_by_relation_id or {})
        self._mappers: dict[int, TableMapper] = {}
        self._redact = redactor(settings.redaction)
        # (schema, table) -> 'shadow' | 'cdc'; set at start, changed by cutover markers
        self.modes: dict[tuple[str, str], str] = {}
        # running totals the metrics read at each scrape; a reload hands them to the new mapper
        self.counts = MappingCounts() if counts is None else counts
        self._txn: TransactionInfo | None = None
        self._txn_occurred_at = ""
        self._txn_lsn = ""
        self._txn_context: dict[str, object] | None = None
        self._txn_context_json: str | None = None
        self._txn_actor: str | None = None

    @property
    def toast_unavailable(self) -> int:
        """Unchanged TOAST values that could not be recorded, so far."""
        return self.counts.toast_unavailable

    def table_mapper(self, relation: RelationInfo) -> TableMapper:
        mapper = self._mappers.get(relation.relation_id)
        if mapper is None or mapper.relation is not relation:
            rules = self.rules_by_relation_id.get(relation.relation_id)
            if rules is None:
                rules = self._settings.rules_for(relation.schema, relation.table)
            mode = self.modes.get((relation.schema, relation.table))
            mapper = TableMapper(
                relation,
                rules,
                self._settings.redaction,
                self.types,
                self._redact,
                SOURCE_SHADOW if mode == "shadow" else SOURCE_DATABASE,
            )
            self._mappers[relation.relation_id] = mapper
        return mapper

    def set_mode(self, schema: str, table: str, mode: str) -> None:
        self.modes[(schema, table)] = mode
        self._mappers.clear()  # rebuilt with the table's new source

    def _transaction_fields(self, txn: TransactionInfo) -> tuple[str, str]:
        if txn is not self._txn:
            self._txn = txn
            self._txn_occurred_at = iso_text(txn.commit_time)
            self._txn_lsn = lsn_text(txn.commit_lsn)
            self._txn_context, self._txn_actor = context_of(txn, self._settings.context)
            self._txn_context_json = (
                None if self._txn_context is None else jsonb_text(self._txn_context)
            )
        return self._txn_occurred_at, self._txn_lsn

    def _record_context(
        self, origin: str | None, unavailable: tuple[str, ...], actor_from_context: bool
    ) -> str | None:
        if not (origin or unavailable or actor_from_context):
            return self._txn_context_json
        merged: dict[str, object] = dict(self._txn_context or {})
        if origin:
            merged["origin"] = origin
        if unavailable:
            merged["unavailable_columns"] = list(unavailable)
        if actor_from_context:
            merged["actor_source"] = "context"
        return jsonb_text(merged)

    def _py_map(self, change: Change) -> ActivityRecord | None:
        """The record for a change, or None when the change makes no record (the reference
        of _mapping.pyx's ``map_change``, bound below as ``map`` where it was built)."""
        if type(change) is RowChange:
            return _map_row_change(self, change)
        if type(change) is TableTruncate:
            return self._truncate(change)
        if type(change) is TransactionMessage:
            return self._message(change)
        return None

    map = _py_map

    def _message(self, change: TransactionMessage) -> ActivityRecord | None:
        prefix = change.prefix
        txn = change.transaction
        if prefix == self._settings.context.application_prefix:
            return application_event(change, None if txn is None else self._fields(txn))
        if prefix == CUTOVER_PREFIX and txn is not None:
            cutover = cutover_marker(change, txn)
            if cutover is None:
                return None
            self.set_mode(cutover.schema, cutover.table, cutover.mode)
            return cutover_record(change, txn, cutover, self._fields(txn))
        if prefix == HEARTBEAT_PREFIX and txn is None:
            latency = heartbeat_latency_s(change)
            if latency is not None:
                self.counts.heartbeat(latency)
        return None  # the context prefix and anything else: no record of its own

    def _fields(self, txn: TransactionInfo) -> TransactionFields:
        occurred_at, commit_lsn = self._transaction_fields(txn)
        return TransactionFields(occurred_at, commit_lsn, self._txn_context, self._txn_actor)

    def _py_row_change(self, change: RowChange) -> ActivityRecord | None:
        """A row change's record: the reference of cdc/pipeline/_mapping.pyx's
        ``map_row_change`` (what :meth:`map` calls where it was built)."""
        mapper = self.table_mapper(change.relation)
        operation = change.operation
        old = change.old
        new = change.new
        old_json = new_json = changes_json = None
        changed_names: list[str] = []
        if operation == "update":
            assert new is not None
            if old is not None and change.old_kind == "O":
                old_json, new_json, changed, diffs = mapper.update_json(old, new)
                ignore = mapper.ignore_positions
                if ignore and all(index in ignore for index in changed):
                    return None  # only ignored columns (e.g. updated_at) changed
                names = change.relation.column_names
                changed_names = [names[index] for index in changed]
                changes_json = "{" + ", ".join(diffs) + "}"
            else:
                new_json = mapper.row_json(new)
                if old is not None:  # 'K': the key changed; only key columns carry values
                    old_json = mapper.row_json(old, mapper.key_order)
        elif operation == "insert":
            assert new is not None
            new_json = mapper.row_json(new)
        else:
            assert old is not None
            old_json = mapper.row_json(old, None if change.old_kind == "O" else mapper.key_order)
        entity_id = mapper.entity_id(new if new is not None else old)
        occurred_at, commit_lsn = self._transaction_fields(change.transaction)
        if change.unavailable:
            self.counts.toast_unavailable += len(change.unavailable)
        actor = self._txn_actor
        if actor is None:
            actor = mapper.actor_id(new, old)
        context = self._record_context(
            change.transaction.origin, change.unavailable, self._txn_actor is not None
        )
        action = mapper.actions[operation]
        severity = mapper.severities[operation]
        category = mapper.categories
        if mapper.transitions and new is not None:
            rule = mapper.transition(operation, old if change.old_kind == "O" else None, new)
            if rule is not None:
                action = rule.action
                severity = rule.severity or severity
                category = rule.category or category
        # What full-text search finds by default (docs/store.md): the entity, the actor, the
        # changed columns and the action.
        summary = (
            f"{mapper.entity_type} {entity_id if entity_id is not None else '(no key)'} "
            f"{PAST_TENSE[operation]}"
        )
        if actor is not None:
            summary += f" by {actor}"
        if changed_names:
            summary += ": " + ", ".join(changed_names)
        summary += f" ({action})"
        return ActivityRecord(
            occurred_at,
            mapper.source,
            operation,
            action,
            category,
            severity,
            change.relation.schema,
            change.relation.table,
            mapper.entity_type,
            entity_id,
            actor,
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
        extra: dict[str, object] = dict(self._txn_context or {})
        extra.update({name: True for name in options})
        return ActivityRecord(
            occurred_at,
            mapper.source,
            "truncate",
            mapper.actions["truncate"],
            mapper.categories,
            mapper.severities["truncate"],
            change.relation.schema,
            change.relation.table,
            mapper.entity_type,
            None,
            self._txn_actor,
            jsonb_text(extra) if extra else None,
            None,
            None,
            None,
            f"{change.relation.schema}.{change.relation.table} truncated"
            + (f" by {self._txn_actor}" if self._txn_actor is not None else "")
            + f" ({mapper.actions['truncate']})",
            change.transaction.xid,
            commit_lsn,
            change.seq,
        )


_map_row_change: Callable[[ActivityMapper, RowChange], ActivityRecord | None] = (
    mapping.map_row_change if mapping is not None else ActivityMapper._py_row_change
)
if mapping is not None:  # a row change's record made without a Python frame
    ActivityMapper.map = mapping.map_change


def _rule_value(converter: JsonConverter) -> Callable[[object], object]:
    """How a rule reads a column: the JSON value of its text. For a text column (most rules
    watch a status) that is the text itself: no JSON round trip per change."""
    if converter is as_string:
        return _text_value

    def json_value(value: object) -> object:
        return json.loads(converter(value)) if type(value) is str else None

    return json_value


def _text_value(value: object) -> object:
    return value if type(value) is str else None
