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

from cpython.object cimport PyObject

cdef object _ActivityRecord = None
cdef object _text_value = None  # cdc.pipeline.activity._text_value: a text column's rule value
cdef object _tuple_new = tuple.__new__


cdef class TablePlan:
    """What ``map_row_change`` reads of a TableMapper and its relation, as C fields: built once
    per TableMapper (one relation version, never changed after), so a change reads them
    without an attribute lookup each (~20 a change). The TableMapper keeps it (``plan``)."""

    cdef object relation
    cdef tuple json_keys, changed_keys, kinds, converters, order, key_order, column_names
    cdef tuple key_positions, actor_positions
    cdef object ignore_positions, actions, severities, categories, transitions
    cdef bint actor_columns, key_redacted, one_key
    cdef Py_ssize_t key_position
    cdef str entity_type, source, schema, table

    def __init__(self, mapper):
        relation = mapper.relation
        self.relation = relation
        self.json_keys, self.changed_keys = mapper.json_keys, mapper.changed_keys
        self.kinds, self.converters = mapper.kinds, mapper.converters
        self.order, self.key_order = mapper.order, mapper.key_order
        self.column_names = relation.column_names
        self.schema, self.table = relation.schema, relation.table
        self.ignore_positions = mapper.ignore_positions
        self.actions, self.severities = mapper.actions, mapper.severities
        self.categories, self.transitions = mapper.categories, mapper.transitions
        self.actor_positions = mapper.actor_positions
        self.actor_columns = len(self.actor_positions) > 0
        self.key_positions = mapper.key_positions
        self.key_redacted = mapper.key_redacted
        self.one_key = self.key_positions is not None and len(self.key_positions) == 1
        self.key_position = self.key_positions[0] if self.one_key else -1
        self.entity_type, self.source = mapper.entity_type, mapper.source


cdef inline str _row(TablePlan plan, tuple values, object positions):
    """TableMapper.row_json: every column in jsonb's order, or those at ``positions``."""
    if positions is None:
        positions = plan.order
        if len(values) != len(<tuple>positions):
            positions = tuple([i for i in positions if i < len(values)])
    return _row_json(plan.json_keys, plan.kinds, plan.converters, values, positions)


cdef inline void _digits(char* out, int value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10


def iso_datetime(moment):
    """``moment.isoformat()``, written here for a datetime in UTC (every commit time)."""
    return _iso(moment)


cdef str _iso(object moment):
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
    return _lsn(value)


cdef str _lsn(unsigned long long value):
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


# A RowChange's fields read from its slots (as cdc/pipeline/_core.pyx writes them): the class
# is a slots dataclass whose offsets are read once from its member descriptors.
cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef object _RowChange = None
cdef object _TableTruncate = None
cdef object _TransactionMessage = None
cdef object _TransactionInfo = None
cdef Py_ssize_t _TXN, _SEQ, _RELATION, _OPERATION, _OLD, _NEW, _OLD_KIND, _UNAVAILABLE


cdef Py_ssize_t _offset(type cls, str name) except -1:
    descriptor = cls.__dict__[name]
    if type(descriptor).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*>descriptor).d_member.offset


cdef inline object _slot(object obj, Py_ssize_t offset):
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>obj) + offset))[0]
    if value == NULL:
        raise AttributeError("a RowChange field is not set")
    return <object>value


cdef _load():
    global _ActivityRecord, _text_value, _RowChange, _TableTruncate, _TransactionMessage
    global _TransactionInfo
    global _TXN, _SEQ, _RELATION, _OPERATION, _OLD, _NEW, _OLD_KIND, _UNAVAILABLE
    from cdc.pipeline import activity, change_values

    _ActivityRecord, _text_value = activity.ActivityRecord, activity._text_value
    cls = change_values.RowChange
    _TXN, _SEQ, _RELATION = _offset(cls, "transaction"), _offset(cls, "seq"), _offset(cls, "relation")
    _OPERATION, _OLD, _NEW = _offset(cls, "operation"), _offset(cls, "old"), _offset(cls, "new")
    _OLD_KIND, _UNAVAILABLE = _offset(cls, "old_kind"), _offset(cls, "unavailable")
    _TableTruncate, _TransactionMessage = change_values.TableTruncate, change_values.TransactionMessage
    _TransactionInfo = change_values.TransactionInfo
    _RowChange = cls


def map_change(object self, object change):
    """``ActivityMapper._py_map`` (bound as the mapper's ``map``): a row change's record made
    here without a Python frame; a truncate or a logical message by the mapper's methods."""
    if _RowChange is None:
        _load()
    kind = type(change)
    if kind is _RowChange:
        return _map_row_change(self, change)
    if kind is _TableTruncate:
        return self._truncate(change)
    if kind is _TransactionMessage:
        return self._message(change)
    return None


def map_row_change(object self, object change):
    """The record of a RowChange (None: only ignored columns changed), as
    ``ActivityMapper._py_row_change`` makes it. ``self`` is the ActivityMapper."""
    if _RowChange is None:
        _load()
    return _map_row_change(self, change)


cdef object _map_row_change(object self, object change):
    cdef str operation
    cdef object old, new, relation, old_kind, txn, unavailable, seq
    cdef TablePlan plan
    if type(change) is _RowChange:
        operation = <str>_slot(change, _OPERATION)
        old, new = _slot(change, _OLD), _slot(change, _NEW)
        relation, old_kind = _slot(change, _RELATION), _slot(change, _OLD_KIND)
        txn, unavailable, seq = _slot(change, _TXN), _slot(change, _UNAVAILABLE), _slot(change, _SEQ)
    else:
        operation, old, new = change.operation, change.old, change.new
        relation, old_kind = change.relation, change.old_kind
        txn, unavailable, seq = change.transaction, change.unavailable, change.seq
    mapper = self._mappers.get(relation.relation_id)
    if mapper is None or mapper.relation is not relation:
        mapper = self.table_mapper(relation)
    plan = mapper.plan
    if plan is None or plan.relation is not relation:
        plan = TablePlan(mapper)
    documents = _documents(plan, operation, old, new, old_kind)
    if documents is None:
        return None  # only ignored columns (e.g. updated_at) changed
    old_json, new_json, changes_json, changed_names = documents
    # the entity: one plain key column is the common case
    key_row = new if new is not None else old
    if key_row is not None and plan.one_key and not plan.key_redacted:
        entity_id = (<tuple>key_row)[plan.key_position]
        if type(entity_id) is not str:
            entity_id = None
    else:
        entity_id = mapper.entity_id(key_row)
    if txn is self._txn:
        occurred_at = self._txn_occurred_at
        commit_lsn = self._txn_lsn
    else:
        occurred_at, commit_lsn = _transaction_fields(self, txn)
    if unavailable:
        self.counts.toast_unavailable += len(unavailable)
    txn_actor = self._txn_actor
    actor = txn_actor
    if actor is None and plan.actor_columns:
        actor = _actor(plan, new, old)
    origin = txn.origin
    if origin or unavailable or txn_actor is not None:
        context = self._record_context(origin, unavailable, txn_actor is not None)
    else:
        context = self._txn_context_json
    action = plan.actions[operation]
    severity = plan.severities[operation]
    category = plan.categories
    if plan.transitions and new is not None:
        rule = _transition(mapper, operation, old if old_kind == "O" else None, new)
        if rule is not None:
            action = rule.action
            severity = rule.severity or severity
            category = rule.category or category
    return _tuple_new(
        _ActivityRecord,
        (
            occurred_at, plan.source, operation, action, category, severity, plan.schema,
            plan.table, plan.entity_type, entity_id, actor, context, old_json, new_json,
            changes_json, _summary(plan, operation, entity_id, actor, changed_names, action),
            txn.xid, commit_lsn, seq,
        ),
    )


cdef tuple _transaction_fields(object self, object txn):
    """``ActivityMapper._transaction_fields`` for a new transaction. One without logical
    messages (most) has no context and no actor (``context_of`` gives None, None): its fields
    are set here; any other is read by the mapper's method."""
    if type(txn) is not _TransactionInfo or txn.messages:
        return self._transaction_fields(txn)
    occurred_at, commit_lsn = _iso(txn.commit_time), _lsn(txn.commit_lsn)
    self._txn = txn
    self._txn_occurred_at, self._txn_lsn = occurred_at, commit_lsn
    self._txn_context = self._txn_context_json = self._txn_actor = None
    return occurred_at, commit_lsn


cdef object _actor(TablePlan plan, object new, object old):
    """``TableMapper.actor_id``: the first actor column holding text, in the new row, then
    the old."""
    for row in (new, old):
        if row is None:
            continue
        for position in plan.actor_positions:
            value = row[position]
            if type(value) is str:
                return value
    return None


cdef object _documents(TablePlan plan, str operation, object old, object new, object old_kind):
    """(old JSON, new JSON, changes JSON, changed column names) of a change, or None when only
    ignored columns changed."""
    cdef list changed
    cdef tuple order, names
    old_json = new_json = changes_json = changed_names = None
    if operation == "update":
        if old is not None and old_kind == "O":
            order = plan.order
            if len(<tuple>new) != len(order):
                order = tuple([i for i in order if i < len(<tuple>new)])
            old_json, new_json, changed, diffs = _update_json(
                plan.json_keys, plan.changed_keys, plan.kinds, plan.converters, old, new, order
            )
            changed.sort()
            ignore = plan.ignore_positions
            if ignore and all([index in ignore for index in changed]):
                return None
            names = plan.column_names
            changed_names = [names[index] for index in changed]
            changes_json = "{" + ", ".join(diffs) + "}"
        else:
            new_json = _row(plan, new, None)
            if old is not None:  # 'K': the key changed; only key columns carry values
                old_json = _row(plan, old, plan.key_order)
    elif operation == "insert":
        new_json = _row(plan, new, None)
    else:
        old_json = _row(plan, old, None if old_kind == "O" else plan.key_order)
    return old_json, new_json, changes_json, changed_names


include "_buffer.pxi"

from cpython.mem cimport PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeUTF8

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL


cdef int _put_text(Buffer* buf, str text) except -1:
    """A str's UTF-8: its own storage when it is ASCII (most text), else its cached UTF-8."""
    cdef Py_ssize_t n
    cdef const char* data
    if PyUnicode_IS_ASCII(text):
        return _put(buf, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    data = PyUnicode_AsUTF8AndSize(text, &n)  # UnicodeEncodeError for a lone surrogate
    return _put(buf, data, n)


cdef str _summary(
    TablePlan plan, str operation, object entity_id, object actor, object changed_names,
    object action
):
    """What full-text search finds by default (docs/store.md): the entity, the actor, the
    changed columns and the action; written as UTF-8 into one buffer, one str made of it."""
    cdef Buffer buf
    cdef Py_ssize_t i
    if (
        (entity_id is not None and type(entity_id) is not str)
        or (actor is not None and type(actor) is not str)
        or type(action) is not str
    ):
        return _summary_text(plan, operation, entity_id, actor, changed_names, action)
    buf.data = NULL
    buf.size = buf.capacity = 0
    try:
        _put_text(&buf, plan.entity_type)
        _put_char(&buf, b" ")
        if entity_id is None:
            _put(&buf, b"(no key)", 8)
        else:
            _put_text(&buf, <str>entity_id)
        _put_char(&buf, b" ")
        _put_text(&buf, <str>_PAST_TENSE[operation])
        if actor is not None:
            _put(&buf, b" by ", 4)
            _put_text(&buf, <str>actor)
        if changed_names:
            _put(&buf, b": ", 2)
            for i in range(len(<list>changed_names)):
                if i:
                    _put(&buf, b", ", 2)
                _put_text(&buf, <str>(<list>changed_names)[i])
        _put(&buf, b" (", 2)
        _put_text(&buf, <str>action)
        _put_char(&buf, b")")
        return PyUnicode_DecodeUTF8(buf.data, buf.size, NULL)
    except UnicodeEncodeError:  # a lone surrogate (an actor from JSON context): as the f-string
        return _summary_text(plan, operation, entity_id, actor, changed_names, action)
    finally:
        PyMem_Free(buf.data)


cdef str _summary_text(
    TablePlan plan, str operation, object entity_id, object actor, object changed_names,
    object action
):
    """The summary as ``ActivityMapper._py_row_change`` writes it (f-strings)."""
    cdef str summary = (
        f"{plan.entity_type} {entity_id if entity_id is not None else '(no key)'} "
        f"{_PAST_TENSE[operation]}"
    )
    if actor is not None:
        summary += f" by {actor}"
    if changed_names:
        summary += ": " + ", ".join(changed_names)
    summary += f" ({action})"
    return summary
