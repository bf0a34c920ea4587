"""Activity mapping: a committed change becomes an :class:`ActivityRecord`, following the
per-table rules of the config (category, severity, action, entity type, actor, ignored and
redacted columns).

Pure and per-change hot: everything that depends only on the table and its current column set
is computed once per relation version in a :class:`TableMapper`; the per-row work is building
the JSON documents and a few lookups.

The documents (``old``, ``new``, ``changes``, ``context``) are written in jsonb's own text form
(cdc.pipeline.values): a row's columns in jsonb's key order, computed once per relation, so the text
sent is the text the store gives back and the daemon can hash it (cdc.store.chain).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from cdc import records
from cdc.config import (
    OPERATIONS,
    SEVERITY_LEVELS,
    RedactionSettings,
    Settings,
    SeverityByOperation,
    TableRules,
    TransitionRule,
    split_qualified_name,
)
from cdc.errors import ConfigError
from cdc.lsn import format_lsn
from cdc.pipeline.changes import (
    Change,
    RelationInfo,
    RowChange,
    TableTruncate,
    TransactionInfo,
    TransactionMessage,
)
from cdc.pipeline.core import compiled, converter_kind, mapping
from cdc.pipeline.pgoutput import UNCHANGED_TOAST, TupleData
from cdc.pipeline.values import (
    JsonConverter,
    TypeRegistry,
    as_string,
    encode_json_string,
    jsonb_key_order,
    jsonb_text,
)

log = logging.getLogger("cdc.activity")  # log lines keep the name they had

SOURCE_DATABASE = "database"
SOURCE_SHADOW = "shadow"  # a table still audited by its legacy triggers (before its cutover)
SOURCE_APPLICATION = "application"
SOURCE_MIGRATION = "migration"
CUTOVER_PREFIX = "cdc.cutover"
HEARTBEAT_PREFIX = "cdc.heartbeat"
SEVERITIES = SEVERITY_LEVELS

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


RECORD_COLUMNS = records.same_columns(
    "ActivityRecord", ActivityRecord._fields, records.RECORD_COLUMNS
)


Redactor = Callable[[str], str]  # a column's text value -> what is stored instead (plain text)


def redactor(redaction: RedactionSettings) -> Redactor:
    """The marker, or a keyed hash: HMAC-SHA256 keeps equal secrets comparable, unreadable."""
    if redaction.mode == "marker":
        marker = redaction.marker

        def to_marker(_text: str) -> str:
            return marker

        return to_marker
    key = os.environ.get(redaction.key_env, "")
    if not key:
        raise ConfigError(
            f"redaction.mode is 'hmac' but the environment variable {redaction.key_env} holding "
            "the key is not set; set it (a long random secret) or use mode = 'marker'"
        )
    secret = key.encode()

    def to_hash(text: str) -> str:
        return "hmac-sha256:" + hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    return to_hash


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
        "key_order",
        "key_positions",
        "key_redacted",
        "kinds",
        "order",
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
        matcher = _redaction_matcher(redaction, rules)

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
        # columns whose unchanged TOAST value could not be recorded (a metric reads it)
        self.toast_unavailable = 0
        # end-to-end latencies of heartbeat messages seen since the daemon last read them
        self.heartbeat_latencies: list[float] = []
        self._txn: TransactionInfo | None = None
        self._txn_occurred_at = ""
        self._txn_lsn = ""
        self._txn_context: dict[str, object] | None = None
        self._txn_context_json: str | None = None
        self._txn_actor: str | None = None

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
            self._txn_occurred_at = _iso(txn.commit_time)
            self._txn_lsn = _lsn_text(txn.commit_lsn)
            self._txn_context, self._txn_actor = self._context_of(txn)
            self._txn_context_json = None if self._txn_context is None else _dump(self._txn_context)
        return self._txn_occurred_at, self._txn_lsn

    def _context_of(self, txn: TransactionInfo) -> tuple[dict[str, object] | None, str | None]:
        """The transaction's context (its context messages merged in order) and its actor."""
        prefix = self._settings.context.prefix
        context: dict[str, object] | None = None
        for message in txn.messages:
            if message.prefix != prefix:
                continue
            context = {} if context is None else context
            try:
                body = json.loads(message.content.decode("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
                context.update(body)
            except (UnicodeDecodeError, ValueError) as exc:
                # Kept visible rather than dropped: bad input never loses data silently.
                log.warning("invalid %s message in transaction %d: %s", prefix, txn.xid, exc)
                context["context_error"] = f"invalid context message: {exc}"
        if context is None:
            return None, None
        for key in self._settings.context.actor_keys:
            value = context.get(key)
            if value is not None and value != "":
                return context, str(value)
        return context, None

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
        return _dump(merged)

    def map(self, change: Change) -> ActivityRecord | None:
        """The record for a change, or None when the change makes no record."""
        if type(change) is RowChange:
            return _map_row_change(self, change)
        if type(change) is TableTruncate:
            return self._truncate(change)
        if type(change) is TransactionMessage:
            return self._message(change)
        return None

    def _message(self, change: TransactionMessage) -> ActivityRecord | None:
        prefix = change.prefix
        if prefix == self._settings.context.application_prefix:
            return self._application_event(change)
        if prefix == CUTOVER_PREFIX and change.transaction is not None:
            return self._cutover(change)
        if prefix == HEARTBEAT_PREFIX and change.transaction is None:
            try:
                sent_at = datetime.fromisoformat(json.loads(change.content)["sent_at"])
                self.heartbeat_latencies.append((datetime.now(UTC) - sent_at).total_seconds())
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("invalid heartbeat message: %s", exc)
        return None  # the context prefix and anything else: no record of its own

    def _application_event(self, change: TransactionMessage) -> ActivityRecord:
        """activity.log(...): an application activity that is not a row change."""
        txn = change.transaction
        try:
            body = json.loads(change.content.decode("utf-8"))
            if not isinstance(body, dict) or not body.get("action"):
                raise ValueError("needs a JSON object with an `action`")
        except (UnicodeDecodeError, ValueError) as exc:
            body = {
                "action": "activity.invalid_event",
                "severity": "warning",
                "category": "system",
                "details": {"error": str(exc), "raw": change.content.decode("utf-8", "replace")},
            }
        severity = body.get("severity") if body.get("severity") in SEVERITIES else "info"
        raw_details = body.get("details")
        details: dict[str, object] = raw_details if isinstance(raw_details, dict) else {}
        if txn is not None:
            occurred_at, commit_lsn = self._transaction_fields(txn)
            context = dict(self._txn_context or {})
            actor = body.get("actor_id") or self._txn_actor
            xid: int | None = txn.xid
        else:  # non-transactional (activity.log_now): logged even if the caller rolls back
            occurred_at = str(body.get("emitted_at") or _iso(datetime.now(UTC)))
            commit_lsn = format_lsn(change.lsn)
            context = {}
            actor = body.get("actor_id")
            xid = None
        context.update(details)
        entity_type = body.get("entity_type")
        entity_id = body.get("entity_id")
        summary = body.get("summary") or " ".join(
            str(part) for part in (body["action"], entity_type, entity_id) if part is not None
        ) + ("" if actor is None else f" by {actor}")
        return ActivityRecord(
            occurred_at,
            SOURCE_APPLICATION,
            "message",
            str(body["action"]),
            str(body.get("category") or "application"),
            str(severity),
            None,
            None,
            None if entity_type is None else str(entity_type),
            None if entity_id is None else str(entity_id),
            None if actor is None else str(actor),
            _dump(context) if context else None,
            None,
            None,
            None,
            str(summary),
            xid,
            commit_lsn,
            change.seq,
        )

    def _cutover(self, change: TransactionMessage) -> ActivityRecord | None:
        """A table switches between legacy triggers and CDC at this point of the stream."""
        txn = change.transaction
        assert txn is not None
        try:
            marker = json.loads(change.content.decode("utf-8"))
            schema, table = split_qualified_name(str(marker["table"]))
            target = str(marker["to"])
            if target not in ("cdc", "triggers"):
                raise ValueError(f"`to` must be 'cdc' or 'triggers', not {target!r}")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            log.error("invalid cutover marker in transaction %d ignored: %s", txn.xid, exc)
            return None
        self.set_mode(schema, table, "cdc" if target == "cdc" else "shadow")
        occurred_at, commit_lsn = self._transaction_fields(txn)
        action = "migration.cutover" if target == "cdc" else "migration.rollback"
        return ActivityRecord(
            occurred_at,
            SOURCE_MIGRATION,
            "message",
            action,
            "migration",
            "notice",
            schema,
            table,
            None,
            None,
            None if marker.get("by") is None else str(marker["by"]),
            _dump(marker),
            None,
            None,
            None,
            f"{schema}.{table}: recorded by "
            + ("CDC from here on" if target == "cdc" else "the legacy triggers again"),
            txn.xid,
            commit_lsn,
            change.seq,
        )

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
            self.toast_unavailable += len(change.unavailable)
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
            f"{_PAST_TENSE[operation]}"
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
            _dump(extra) if extra else None,
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


def _other_json(value: object) -> str:
    """A column value that is not text, as row_json writes it: NULL, or a binary format
    column (not requested by the stream) as hex text."""
    if value is None:
        return "null"
    assert isinstance(value, bytes)
    return encode_json_string("\\x" + value.hex())


def _py_row_json(
    keys: tuple[str, ...],
    kinds: tuple[int, ...],
    converters: tuple[JsonConverter, ...],
    values: TupleData,
    positions: tuple[int, ...] | None,
) -> str:
    """The row as a JSON object in jsonb's text form (every column in column order, or those at
    ``positions``, in that order). The reference of cdc/pipeline/_core.pyx's row_json
    (``kinds`` is what the compiled one inlines; unused here)."""
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
    return "{" + ", ".join(parts) + "}"


def _py_update_json(
    keys: tuple[str, ...],
    changed_keys: tuple[str, ...],
    kinds: tuple[int, ...],
    converters: tuple[JsonConverter, ...],
    old: TupleData,
    new: TupleData,
    order: tuple[int, ...],
) -> tuple[str, str, list[int], list[str]]:
    """An update with the whole old row: the old and new rows' JSON, the positions of the
    changed columns and their diffs, in one pass, the columns taken in ``order`` (jsonb's key
    order). An unchanged column (most of them) is converted once and its text shared by both
    rows. The reference of cdc/pipeline/_core.pyx's."""
    old_parts: list[str] = []
    new_parts: list[str] = []
    changed: list[int] = []
    diffs: list[str] = []
    if len(old) != len(new):
        raise ValueError("the old and the new row have different numbers of columns")
    for index in order:
        before = old[index]
        after = new[index]
        if after is UNCHANGED_TOAST:  # listed in the record's context as unavailable
            if before is not UNCHANGED_TOAST:
                old_parts.append(keys[index] + _other_json(before))
            continue
        after_json = converters[index](after) if after.__class__ is str else _other_json(after)
        fragment = keys[index] + after_json
        new_parts.append(fragment)
        if before == after:
            old_parts.append(fragment)
            continue
        before_json = "null"
        if before is not UNCHANGED_TOAST:
            before_json = (
                converters[index](before) if before.__class__ is str else _other_json(before)
            )
            old_parts.append(keys[index] + before_json)
        changed.append(index)
        # the diff shows a value that is not text (binary, unavailable) as null
        diffs.append(
            changed_keys[index]
            + (after_json if after.__class__ is str or after is None else "null")
            + ', "old": '
            + (before_json if before.__class__ is str or before is None else "null")
            + "}"
        )
    return (
        "{" + ", ".join(old_parts) + "}",
        "{" + ", ".join(new_parts) + "}",
        changed,
        diffs,
    )


# The compiled versions (cdc/pipeline/_core.pyx) when there are, chosen once (cdc.pipeline.core).
_Keys = tuple[str, ...]
_Kinds = tuple[int, ...]
_Converters = tuple[JsonConverter, ...]
_row_json: Callable[[_Keys, _Kinds, _Converters, TupleData, tuple[int, ...] | None], str] = (
    compiled.row_json if compiled is not None else _py_row_json
)
_update_json: Callable[
    [_Keys, _Keys, _Kinds, _Converters, TupleData, TupleData, tuple[int, ...]],
    tuple[str, str, list[int], list[str]],
] = compiled.update_json if compiled is not None else _py_update_json


_map_row_change: Callable[[ActivityMapper, RowChange], ActivityRecord | None] = (
    mapping.map_row_change if mapping is not None else ActivityMapper._py_row_change
)


def _dump(document: Mapping[str, object]) -> str:
    return jsonb_text(document)


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


def _py_iso(moment: datetime) -> str:
    return moment.isoformat()


# A commit's time and LSN as text, once per transaction: compiled where built
# (cdc/pipeline/_mapping.pyx), ~1.5 µs less per transaction than isoformat and the f-string.
_iso: Callable[[datetime], str] = mapping.iso_datetime if mapping is not None else _py_iso
_lsn_text: Callable[[int], str] = mapping.lsn_text if mapping is not None else format_lsn
