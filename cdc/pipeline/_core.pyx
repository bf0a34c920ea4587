# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled core of the hot path: the inner loops that run once per column of every change.

Compiled from this file by Cython when the package is built (setup.py); the pure-Python
functions it mirrors stay the reference and the fallback (cdc.pipeline.core chooses once, at import):

* :func:`decode_tuple` mirrors ``cdc.pipeline.pgoutput.fast._fast_tuple``: a pgoutput TupleData read straight
  from the message's buffer. Malformed input raises ``ValueError`` (a ``UnicodeDecodeError`` for
  bad UTF-8) and the decoder re-reads the message with its checked reader, exactly as it does
  when the pure fast path fails: never a different result, at most a slower one.
* :func:`row_json` and :func:`update_json` mirror ``cdc.pipeline.activity._row_json`` and
  ``_update_json``: a row (or an update's old row, new row and diff) as JSON text, with the
  built-in converters of cdc.pipeline.values inlined by *kind* (a small int per column, resolved once per
  relation by :func:`cdc.pipeline.core.converter_kind`); any other converter (user-defined types,
  redaction) is called as it is.

tests/unit/test_core_differential.py proves both implementations give identical results.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
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

cdef object _UNCHANGED = None


cdef inline object _unchanged():
    # Imported on first use: cdc.pipeline.pgoutput imports this module.
    global _UNCHANGED
    if _UNCHANGED is None:
        from cdc.pipeline.pgoutput import UNCHANGED_TOAST
        _UNCHANGED = UNCHANGED_TOAST
    return _UNCHANGED


cdef inline unsigned int _u32(const unsigned char* p) noexcept:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


def decode_tuple(bytes data not None, Py_ssize_t offset):
    """(values, offset after the tuple) of the TupleData at ``offset``."""
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t count, i
    cdef Py_ssize_t length
    cdef unsigned char kind
    cdef list values
    unchanged = _unchanged()
    if offset < 0 or offset + 2 > size:
        raise ValueError("tuple: no column count")
    count = (<Py_ssize_t>buf[offset] << 8) | buf[offset + 1]
    offset += 2
    values = [None] * count
    for i in range(count):
        if offset >= size:
            raise ValueError("tuple: no column kind")
        kind = buf[offset]
        if kind == 116:  # 't'
            if offset + 5 > size:
                raise ValueError("tuple: no length")
            length = _u32(buf + offset + 1)
            offset += 5
            if length > size - offset:
                raise ValueError("tuple: value past the end")
            values[i] = PyUnicode_DecodeUTF8(<const char*>buf + offset, length, NULL)
            offset += length
        elif kind == 110:  # 'n'
            offset += 1
        elif kind == 117:  # 'u'
            values[i] = unchanged
            offset += 1
        elif kind == 98:  # 'b'
            if offset + 5 > size:
                raise ValueError("tuple: no length")
            length = _u32(buf + offset + 1)
            offset += 5
            if length > size - offset:
                raise ValueError("tuple: value past the end")
            values[i] = PyBytes_FromStringAndSize(<const char*>buf + offset, length)
            offset += length
        else:
            raise ValueError("tuple: unknown column kind")
    return tuple(values), offset


cdef inline bint _is_digit(Py_UCS4 ch) noexcept:
    return 48 <= ch <= 57


cdef str _convert(int kind, object converter, str text):
    """One text value as JSON, as the converter of that kind in cdc.pipeline.values renders it."""
    cdef Py_ssize_t n = len(text)
    if kind == STRING:
        return _encode(text)
    if kind == NUMBER:
        if n and _is_digit(text[n - 1]):
            return text
        return converter(text)
    if kind == BOOL:
        return "true" if text == "t" else "false"
    if kind == RAW:
        return text
    if kind == TIMESTAMPTZ:
        if (
            n >= 11
            and text[n - 3] == u"+" and text[n - 2] == u"0" and text[n - 1] == u"0"
            and text[4] == u"-" and text[10] == u" "
        ):
            return '"' + text[:10] + "T" + text[11:] + ':00"'
        return converter(text)
    if kind == TIMESTAMP:
        if n >= 11 and text[4] == u"-" and text[10] == u" " and text[n - 1] != u"C":
            return '"' + text[:10] + "T" + text[11:] + '"'
        return converter(text)
    return converter(text)


cdef str _other_json(object value):
    # Not text: NULL, or a binary format column (not requested by the stream) as hex text.
    if value is None:
        return "null"
    if type(value) is not bytes:
        raise TypeError(f"a column value is text, bytes or None, not {type(value).__name__}")
    return _encode("\\x" + (<bytes>value).hex())


def row_json(tuple keys, tuple kinds, tuple converters, tuple values, positions):
    """The row as a JSON object (every column, or those at ``positions``); unchanged TOAST
    values are left out."""
    cdef list parts = []
    cdef Py_ssize_t index, n
    unchanged = _unchanged()
    if positions is None:
        n = len(values)
        for index in range(n):
            value = values[index]
            if value is None:
                parts.append(<str>keys[index] + "null")
            elif type(value) is str:
                parts.append(
                    <str>keys[index] + _convert(<int>kinds[index], converters[index], <str>value)
                )
            elif value is unchanged:
                continue
            else:
                parts.append(<str>keys[index] + _other_json(value))
    else:
        for index in positions:
            value = values[index]
            if value is None:
                parts.append(<str>keys[index] + "null")
            elif type(value) is str:
                parts.append(
                    <str>keys[index] + _convert(<int>kinds[index], converters[index], <str>value)
                )
            elif value is unchanged:
                continue
            else:
                parts.append(<str>keys[index] + _other_json(value))
    return "{" + ",".join(parts) + "}"


def update_json(
    tuple keys, tuple changed_keys, tuple kinds, tuple converters, tuple old, tuple new
):
    """An update with the whole old row: (old row JSON, new row JSON, positions of the changed
    columns, their diffs), in one pass."""
    cdef list old_parts = []
    cdef list new_parts = []
    cdef list changed = []
    cdef list diffs = []
    cdef Py_ssize_t index, n = len(new)
    cdef str after_json, before_json, fragment, key
    cdef int kind
    unchanged = _unchanged()
    if len(old) != n:
        raise ValueError("the old and the new row have different numbers of columns")
    for index in range(n):
        before = old[index]
        after = new[index]
        key = <str>keys[index]
        if after is unchanged:  # listed in the record's context as unavailable
            if before is not unchanged:
                old_parts.append(key + _other_json(before))
            continue
        kind = <int>kinds[index]
        if type(after) is str:
            after_json = _convert(kind, converters[index], <str>after)
        else:
            after_json = _other_json(after)
        fragment = key + after_json
        new_parts.append(fragment)
        if before == after:
            old_parts.append(fragment)
            continue
        before_json = "null"
        if before is not unchanged:
            if type(before) is str:
                before_json = _convert(kind, converters[index], <str>before)
            else:
                before_json = _other_json(before)
            old_parts.append(key + before_json)
        changed.append(index)
        # the diff shows a value that is not text (binary, unavailable) as null
        diffs.append(
            <str>changed_keys[index]
            + (before_json if type(before) is str or before is None else "null")
            + ',"new":'
            + (after_json if type(after) is str or after is None else "null")
            + "}"
        )
    return "{" + ",".join(old_parts) + "}", "{" + ",".join(new_parts) + "}", changed, diffs

