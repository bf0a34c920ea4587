# cython: language_level=3
"""A row change's activity record, compiled: ``ActivityMapper._py_row_change`` in C.

The mapping of an INSERT, UPDATE or DELETE (cdc.pipeline.activity) is the same few steps for
every change: the row documents, the entity, the transaction's fields, the rules' action,
severity and category, the summary, the record. As Python it costs ~4.5 µs per change
beyond the documents themselves (attribute lookups, calls, the f-strings, the named tuple's
``__new__``); here the same steps run as C, calling back into the mapper for what is rare or
long (a table seen for the first time, a composite or redacted key, a new transaction,
transition rules, context that must be merged).

The reference is ``ActivityMapper._py_row_change``; the two must give equal records for
every change (tests/unit/test_core_differential.py).
"""

from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime_tzinfo,
    import_datetime,
)
from cpython.unicode cimport PyUnicode_DecodeASCII

from datetime import datetime as _datetime, timezone

from cdc.pipeline._core import row_json as _row_json, update_json as _update_json

import_datetime()
cdef object _UTC = timezone.utc
cdef const char* _HEX_UPPER = b"0123456789ABCDEF"

_PAST_TENSE = {
    "insert": "created",
    "update": "updated",
    "delete": "deleted",
    "truncate": "truncated",
}

cdef object _ActivityRecord = None
cdef object _text_value = None  # cdc.pipeline.activity._text_value: a text column's rule value
cdef object _tuple_new = tuple.__new__


cdef inline str _row(object mapper, tuple values, object positions):
    """TableMapper.row_json: every column in jsonb's order, or those at ``positions``."""
    if positions is None:
        positions = mapper.order
        if len(values) != len(<tuple>positions):
            positions = tuple([i for i in positions if i < len(values)])
    return _row_json(mapper.json_keys, mapper.kinds, mapper.converters, values, positions)


cdef inline void _digits(char* out, int value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10


def iso_datetime(moment):
    """``moment.isoformat()``, written here for a datetime in UTC (every commit time)."""
    cdef char text[32]
    cdef int size = 19
    cdef int micro
    if type(moment) is not _datetime or datetime_tzinfo(moment) is not _UTC:
        return moment.isoformat()
    _digits(text, PyDateTime_GET_YEAR(moment), 4)
    text[4] = b"-"
    _digits(text + 5, PyDateTime_GET_MONTH(moment), 2)
    text[7] = b"-"
    _digits(text + 8, PyDateTime_GET_DAY(moment), 2)
    text[10] = b"T"
    _digits(text + 11, PyDateTime_DATE_GET_HOUR(moment), 2)
    text[13] = b":"
    _digits(text + 14, PyDateTime_DATE_GET_MINUTE(moment), 2)
    text[16] = b":"
    _digits(text + 17, PyDateTime_DATE_GET_SECOND(moment), 2)
    micro = PyDateTime_DATE_GET_MICROSECOND(moment)
    if micro:  # isoformat leaves out a zero fraction
        text[19] = b"."
        _digits(text + 20, micro, 6)
        size = 26
    text[size:size + 6] = b"+00:00"
    return PyUnicode_DecodeASCII(text, size + 6, NULL)


cdef int _hex(char* out, unsigned long long value) noexcept:
    cdef char digits[8]
    cdef int n = 0, i
    while True:
        digits[n] = _HEX_UPPER[value & 15]
        value >>= 4
        n += 1
        if not value:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


def lsn_text(unsigned long long value):
    """``cdc.lsn.format_lsn``: ``16/B374D848``."""
    cdef char text[20]
    cdef int size = _hex(text, value >> 32)
    text[size] = b"/"
    size += 1
    size += _hex(text + size, value & 0xFFFFFFFF)
    return PyUnicode_DecodeASCII(text, size, NULL)


cdef object _transition(object mapper, str operation, object old, tuple new):
    """``TableMapper.transition``: the first rule the change matches."""
    for position, rule, value_of in mapper.transitions:
        if operation not in rule.operations:
            continue
        after = new[position]
        if operation == "update":
            if old is None or old[position] == after:
                continue
            if rule.from_value is not None:
                before = old[position]
                if value_of is _text_value:
                    value = before if type(before) is str else None
                else:
                    value = value_of(before)
                if value != rule.from_value:
                    continue
        if rule.to_value is not None:
            if value_of is _text_value:
                value = after if type(after) is str else None
            else:
                value = value_of(after)
            if value != rule.to_value:
                continue
        return rule
    return None


def map_row_change(object self, object change):
    """The record of a RowChange (None: only ignored columns changed), as
    ``ActivityMapper._py_row_change`` makes it. ``self`` is the ActivityMapper."""
    global _ActivityRecord, _text_value
    cdef str operation = change.operation
    cdef object old = change.old
    cdef object new = change.new
    cdef object old_json = None
    cdef object new_json = None
    cdef object changes_json = None
    cdef list changed_names = None
    cdef list changed
    cdef tuple order, names, positions
    cdef str summary
    if _ActivityRecord is None:
        from cdc.pipeline import activity

        _ActivityRecord, _text_value = activity.ActivityRecord, activity._text_value
    relation = change.relation
    mapper = self._mappers.get(relation.relation_id)
    if mapper is None or mapper.relation is not relation:
        mapper = self.table_mapper(relation)
    old_kind = change.old_kind
    if operation == "update":
        if old is not None and old_kind == "O":
            order = mapper.order
            if len(<tuple>new) != len(order):
                order = tuple([i for i in order if i < len(<tuple>new)])
            old_json, new_json, changed, diffs = _update_json(
                mapper.json_keys, mapper.changed_keys, mapper.kinds, mapper.converters,
                old, new, order
            )
            changed.sort()
            ignore = mapper.ignore_positions
            if ignore and all([index in ignore for index in changed]):
                return None  # only ignored columns (e.g. updated_at) changed
            names = relation.column_names
            changed_names = [names[index] for index in changed]
            changes_json = "{" + ", ".join(diffs) + "}"
        else:
            new_json = _row(mapper, new, None)
            if old is not None:  # 'K': the key changed; only key columns carry values
                old_json = _row(mapper, old, mapper.key_order)
    elif operation == "insert":
        new_json = _row(mapper, new, None)
    else:
        old_json = _row(mapper, old, None if old_kind == "O" else mapper.key_order)
    # the entity: one plain key column is the common case
    key_row = new if new is not None else old
    positions = mapper.key_positions
    if key_row is not None and positions is not None and len(positions) == 1 and not mapper.key_redacted:
        entity_id = (<tuple>key_row)[<Py_ssize_t>positions[0]]
        if type(entity_id) is not str:
            entity_id = None
    else:
        entity_id = mapper.entity_id(key_row)
    txn = change.transaction
    if txn is self._txn:
        occurred_at = self._txn_occurred_at
        commit_lsn = self._txn_lsn
    else:
        occurred_at, commit_lsn = self._transaction_fields(txn)
    unavailable = change.unavailable
    if unavailable:
        self.counts.toast_unavailable += len(unavailable)
    txn_actor = self._txn_actor
    actor = txn_actor
    if actor is None and mapper.actor_positions:
        actor = mapper.actor_id(new, old)
    origin = txn.origin
    if origin or unavailable or txn_actor is not None:
        context = self._record_context(origin, unavailable, txn_actor is not None)
    else:
        context = self._txn_context_json
    action = mapper.actions[operation]
    severity = mapper.severities[operation]
    category = mapper.categories
    if mapper.transitions and new is not None:
        rule = _transition(mapper, operation, old if old_kind == "O" else None, new)
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
    return _tuple_new(
        _ActivityRecord,
        (
            occurred_at,
            mapper.source,
            operation,
            action,
            category,
            severity,
            relation.schema,
            relation.table,
            mapper.entity_type,
            entity_id,
            actor,
            context,
            old_json,
            new_json,
            changes_json,
            summary,
            txn.xid,
            commit_lsn,
            change.seq,
        ),
    )
