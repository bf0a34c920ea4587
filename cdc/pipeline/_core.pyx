# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled core of the hot path: the inner loops that run once per column of every change.

Compiled from this file by Cython when the package is built (setup.py); the pure-Python
functions it mirrors stay the reference and the fallback (cdc.pipeline.core chooses once, at
import):

* :func:`decode_fast` mirrors ``cdc.pipeline.pgoutput.fast.fast_decode``: Insert, Update, Delete,
  Begin and Commit read straight from the message's buffer (:func:`decode_tuple` for the
  TupleData), the message dataclasses filled without their ``__init__``. Malformed input raises
  ``ValueError`` (``UnicodeDecodeError`` for bad UTF-8) and the decoder re-reads the message
  with its checked reader, exactly as it does when the pure fast path fails: never a different
  result, at most a slower one. :func:`has_unchanged_toast` mirrors ``UNCHANGED_TOAST in row``.
* :func:`row_json` and :func:`update_json` mirror ``cdc.pipeline.documents._py_row_json``
  and ``_py_update_json``: a row (or an update's old row, new row and diff) as JSON text, with the
  built-in converters of cdc.pipeline.values inlined by *kind* (a small int per column, resolved
  once per relation by :func:`cdc.pipeline.core.converter_kind`); any other converter (user-defined types,
  redaction) is called as it is.

tests/unit/test_core_differential.py proves both implementations give identical results.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8

from json.encoder import encode_basestring as _encode

# Kinds of converters (cdc.pipeline.core gives the same numbers to the Python ones).
cdef enum:
    CALL = 0
    STRING = 1
    NUMBER = 2
    BOOL = 3
    RAW = 4
    TIMESTAMP = 5
    TIMESTAMPTZ = 6

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    # tp_alloc of a class defined in Python (a heap type): allocates, zeroes, tracks for GC
    object PyType_GenericAlloc(PyTypeObject* cls, Py_ssize_t nitems)


# The messages are frozen slots dataclasses: their __init__ sets each field through
# object.__setattr__ (~0.3 µs a field, 1.5-2 µs a message). This module fills the slots
# directly instead, as __init__ would (every field, in order; no __post_init__ exists), so the
# instance is the same: equal, hashable, picklable, immutable. The offsets are read once from
# the classes' slot descriptors.
cdef class _Slots:
    cdef type cls
    cdef Py_ssize_t offsets[8]
    cdef Py_ssize_t count

    def __init__(self, type cls, tuple fields):
        self.cls = cls
        self.count = len(fields)
        if self.count > 8:
            raise ValueError(f"{cls.__name__} has more than 8 fields")
        for i, name in enumerate(fields):
            descriptor = cls.__dict__[name]
            if type(descriptor).__name__ != "member_descriptor":
                raise TypeError(f"{cls.__name__}.{name} is not a slot")
            self.offsets[i] = (<PyMemberDescrObject*>descriptor).d_member.offset


cdef inline object _store(object obj, Py_ssize_t offset, object value):
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + offset))[0] = <PyObject*>value
    return obj


cdef inline object _new(_Slots slots):
    return PyType_GenericAlloc(<PyTypeObject*>slots.cls, 0)


cdef object _make3(_Slots slots, object a, object b, object c):
    obj = _new(slots)
    _store(obj, slots.offsets[0], a)
    _store(obj, slots.offsets[1], b)
    _store(obj, slots.offsets[2], c)
    return obj


cdef object _make4(_Slots slots, object a, object b, object c, object d):
    obj = _make3(slots, a, b, c)
    return _store(obj, slots.offsets[3], d)


cdef object _make5(_Slots slots, object a, object b, object c, object d, object e):
    obj = _make4(slots, a, b, c, d)
    return _store(obj, slots.offsets[4], e)


# What cdc.pipeline.pgoutput defines, read on first use (that module imports this one).
cdef object _UNCHANGED = None
cdef _Slots _Insert, _Update, _Delete, _Begin, _Commit


cdef inline object _unchanged():
    global _UNCHANGED, _Insert, _Update, _Delete, _Begin, _Commit
    if _UNCHANGED is None:
        from dataclasses import fields

        from cdc.pipeline import pgoutput

        def slots(cls):
            return _Slots(cls, tuple(field.name for field in fields(cls)))

        _Insert, _Update, _Delete = slots(pgoutput.Insert), slots(pgoutput.Update), slots(pgoutput.Delete)
        _Begin, _Commit = slots(pgoutput.Begin), slots(pgoutput.Commit)
        _UNCHANGED = pgoutput.UNCHANGED_TOAST
    return _UNCHANGED


# --- a commit time: Int64 microseconds since 2000-01-01 UTC -> datetime -----------------------
# ``cdc.pipeline.pgoutput.reader.pg_time`` (the reference) adds a timedelta to the epoch; here
# the calendar date comes from the day number (H. Hinnant's civil_from_days), and the last
# conversion is kept, since a transaction's Begin and Commit carry the same time.

from cpython.datetime cimport datetime_new, import_datetime

import_datetime()

cdef long long _US_PER_DAY = 86400000000LL
cdef long long _last_micros = 0
cdef object _last_moment = None
cdef object _utc = None


cdef object _commit_time(long long micros):
    global _last_micros, _last_moment, _utc
    cdef long long days, rem, z, era, doe, yoe, year, doy, mp, day, month
    if _last_moment is not None and micros == _last_micros:
        return _last_moment
    if _utc is None:
        from datetime import UTC

        _utc = UTC
    days = micros / _US_PER_DAY
    rem = micros % _US_PER_DAY
    if rem < 0:
        rem += _US_PER_DAY
        days -= 1
    z = days + 10957 + 719468  # days since 1970-01-01, shifted to 0000-03-01
    era = (z if z >= 0 else z - 146096) / 146097
    doe = z - era * 146097
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    mp = (5 * doy + 2) / 153
    day = doy - (153 * mp + 2) / 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    if month <= 2:
        year += 1
    if year < 1 or year > 9999:
        raise OverflowError("date value out of range")
    moment = datetime_new(
        <int>year, <int>month, <int>day, <int>(rem / 3600000000LL),
        <int>(rem / 60000000LL % 60), <int>(rem / 1000000 % 60), <int>(rem % 1000000), _utc
    )
    _last_micros, _last_moment = micros, moment
    return moment


cdef inline unsigned int _u32(const unsigned char* p) noexcept:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef inline unsigned long long _u64(const unsigned char* p) noexcept:
    return (<unsigned long long>_u32(p) << 32) | _u32(p + 4)


def has_unchanged_toast(tuple values not None):
    """Whether a row holds an unchanged TOAST value (by identity: no comparisons)."""
    return _has_unchanged(values)


cdef bint _has_unchanged(tuple values) except -1:
    unchanged = _unchanged()
    for value in values:
        if value is unchanged:
            return True
    return False


cdef inline object _field(object obj, _Slots slots, Py_ssize_t index):
    """A message's field read from its slot (the class is ``slots.cls`` exactly)."""
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>obj) + slots.offsets[index]))[0]
    if value == NULL:
        raise AttributeError(f"{slots.cls.__name__} field {index} is not set")
    return <object>value


def decode_fast(bytes data not None, bint in_stream):
    """Insert, Update, Delete, Begin or Commit, read straight from the buffer, as
    ``cdc.pipeline.pgoutput.fast.fast_decode`` reads them; None for any other kind. Raises
    ``ValueError`` (or ``OverflowError`` for a timestamp) on anything malformed: the caller then
    reads the message with the checked decoder."""
    return _decode_fast(data, in_stream)


cdef object _decode_fast(bytes data, bint in_stream):
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t offset
    cdef unsigned char kind, marker
    cdef long long micros
    _unchanged()
    if size < 1:
        raise ValueError("empty message")
    kind = buf[0]
    if kind == 73 or kind == 85 or kind == 68:  # 'I', 'U', 'D'
        if in_stream:
            if size < 10:
                raise ValueError("short")
            xid = _u32(buf + 1)
            relation_id = _u32(buf + 5)
            marker = buf[9]
            offset = 10
        else:
            if size < 6:
                raise ValueError("short")
            xid = None
            relation_id = _u32(buf + 1)
            marker = buf[5]
            offset = 6
        if kind == 73:
            if marker != 78:  # 'N'
                raise ValueError("marker")
            new = _decode_tuple(data, &offset)
            if offset != size:
                raise ValueError("trailing bytes")
            return _make3(_Insert, relation_id, new, xid)
        if kind == 85:
            if marker == 78:
                old = old_kind = None
            elif marker == 79 or marker == 75:  # 'O', 'K'
                old = _decode_tuple(data, &offset)
                old_kind = "O" if marker == 79 else "K"
                if offset >= size or buf[offset] != 78:
                    raise ValueError("marker")
                offset += 1
            else:
                raise ValueError("marker")
            new = _decode_tuple(data, &offset)
            if offset != size:
                raise ValueError("trailing bytes")
            return _make5(_Update, relation_id, new, old, old_kind, xid)
        if marker == 79:
            old_kind = "O"
        elif marker == 75:
            old_kind = "K"
        else:
            raise ValueError("marker")
        old = _decode_tuple(data, &offset)
        if offset != size:
            raise ValueError("trailing bytes")
        return _make4(_Delete, relation_id, old, old_kind, xid)
    if kind == 66:  # 'B': final_lsn, commit_time, xid
        if size != 21:
            raise ValueError("length")
        micros = <long long>_u64(buf + 9)
        return _make3(_Begin, _u64(buf + 1), _commit_time(micros), _u32(buf + 17))
    if kind == 67:  # 'C': flags, commit_lsn, end_lsn, commit_time
        if size != 26:
            raise ValueError("length")
        micros = <long long>_u64(buf + 18)
        return _make4(_Commit, buf[1], _u64(buf + 2), _u64(buf + 10), _commit_time(micros))
    return None


def decode_tuple(bytes data not None, Py_ssize_t offset):
    """(values, offset after the tuple) of the TupleData at ``offset``."""
    values = _decode_tuple(data, &offset)
    return values, offset


cdef tuple _decode_tuple(bytes data, Py_ssize_t* at):
    """The TupleData at ``at[0]``, made as the tuple itself (no list copied into one); ``at[0]``
    moves past it."""
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t count, i, offset = at[0]
    cdef Py_ssize_t length
    cdef unsigned char kind
    cdef tuple values
    cdef object value
    unchanged = _unchanged()
    if offset < 0 or offset + 2 > size:
        raise ValueError("tuple: no column count")
    count = (<Py_ssize_t>buf[offset] << 8) | buf[offset + 1]
    offset += 2
    values = PyTuple_New(count)  # its unset items are NULL: freed as such if this raises
    for i in range(count):
        if offset >= size:
            raise ValueError("tuple: no column kind")
        kind = buf[offset]
        if kind == 116 or kind == 98:  # 't', 'b'
            if offset + 5 > size:
                raise ValueError("tuple: no length")
            length = _u32(buf + offset + 1)
            offset += 5
            if length > size - offset:
                raise ValueError("tuple: value past the end")
            if kind == 116:
                value = PyUnicode_DecodeUTF8(<const char*>buf + offset, length, NULL)
            else:
                value = PyBytes_FromStringAndSize(<const char*>buf + offset, length)
            offset += length
        elif kind == 110:  # 'n'
            value = None
            offset += 1
        elif kind == 117:  # 'u'
            value = unchanged
            offset += 1
        else:
            raise ValueError("tuple: unknown column kind")
        Py_INCREF(value)  # PyTuple_SET_ITEM steals a reference
        PyTuple_SET_ITEM(values, i, value)
    at[0] = offset
    return values


include "_decoder.pxi"

# The stream's XLogData messages read in C (the reference: cdc.pipeline.stream).
include "_frames.pxi"


include "_documents.pxi"


include "_assembly.pxi"
