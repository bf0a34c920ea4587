# A row and an update's old row, new row and diff as JSON, compiled (included by _core.pyx):
# ``row_json`` and ``update_json`` mirror ``_py_row_json`` and ``_py_update_json`` of
# cdc.pipeline.documents, with the built-in converters of cdc.pipeline.values inlined by kind.

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
        if _utc_timestamptz(text, n):
            return '"' + text[:10] + "T" + text[11:] + ':00"'
        return converter(text)
    if kind == TIMESTAMP:
        if _plain_timestamp(text, n):
            return '"' + text[:10] + "T" + text[11:] + '"'
        return converter(text)
    return converter(text)


cdef inline bint _utc_timestamptz(str text, Py_ssize_t n):
    return (
        n >= 11
        and text[n - 3] == u"+" and text[n - 2] == u"0" and text[n - 1] == u"0"
        and text[4] == u"-" and text[10] == u" "
    )


cdef inline bint _plain_timestamp(str text, Py_ssize_t n):
    return n >= 11 and text[4] == u"-" and text[10] == u" " and text[n - 1] != u"C"


cdef str _other_json(object value):
    # Not text: NULL, or a binary format column (not requested by the stream) as hex text.
    if value is None:
        return "null"
    if type(value) is not bytes:
        raise TypeError(f"a column value is text, bytes or None, not {type(value).__name__}")
    return _encode("\\x" + (<bytes>value).hex())


# --- rows as JSON, written as UTF-8 into one buffer -------------------------------------------
#
# What the converters return, written straight into the document: a text column is escaped
# as json.encoder.encode_basestring escapes it (quote, backslash and the characters below
# U+0020; \b \f \n \r \t by name, the others as \u00xx), byte by byte over its UTF-8 (no
# byte of a multi-byte sequence is below 0x80); the others' JSON text is copied. One str is
# made per document (from the UTF-8) instead of two per column and a join.

include "_buffer.pxi"

from cpython.mem cimport PyMem_Free
from libc.stdint cimport uint64_t

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    bytes PyUnicode_AsUTF8String(object)

cdef const char* _HEX = b"0123456789abcdef"
cdef unsigned char _PLAIN[256]  # 1: a byte a JSON string holds as it is
for _byte in range(256):
    _PLAIN[_byte] = _byte >= 0x20 and _byte != 0x22 and _byte != 0x5C


cdef int _put_str(Buffer* buf, str text) except -1:
    """A str's UTF-8: its own storage when it is ASCII (most text), else encoded."""
    cdef bytes encoded
    if PyUnicode_IS_ASCII(text):
        return _put(buf, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    encoded = PyUnicode_AsUTF8String(text)
    return _put(buf, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded))


cdef inline bint _plain8(const unsigned char* text) noexcept:
    """Whether none of the eight bytes at ``text`` needs escaping in a JSON string (a quote, a
    backslash, or below 0x20), tested on all eight at once (the exact "has a zero byte" and
    "has a byte below n" word tests)."""
    cdef uint64_t x, quote, backslash
    memcpy(&x, text, 8)
    quote = x ^ 0x2222222222222222ULL
    backslash = x ^ 0x5C5C5C5C5C5C5C5CULL
    return (
        ((x - 0x2020202020202020ULL) & ~x)
        | ((quote - 0x0101010101010101ULL) & ~quote)
        | ((backslash - 0x0101010101010101ULL) & ~backslash)
    ) & 0x8080808080808080ULL == 0


cdef int _put_json_bytes(Buffer* buf, const unsigned char* text, Py_ssize_t n) except -1:
    cdef Py_ssize_t i = 0, run
    cdef unsigned char ch
    cdef char* out
    _reserve(buf, 6 * n + 2)
    out = buf.data + buf.size
    out[0] = b'"'
    out += 1
    while i < n:
        run = i
        while run + 8 <= n and _plain8(text + run):  # eight bytes at a time, then one
            run += 8
        while run < n and _PLAIN[text[run]]:
            run += 1
        if run > i:
            memcpy(out, text + i, run - i)
            out += run - i
            i = run
            if i == n:
                break
        ch = text[i]
        out[0] = b"\\"
        if ch == 0x22 or ch == 0x5C:
            out[1] = <char>ch
            out += 2
        elif ch == 0x08:
            out[1] = b"b"
            out += 2
        elif ch == 0x0C:
            out[1] = b"f"
            out += 2
        elif ch == 0x0A:
            out[1] = b"n"
            out += 2
        elif ch == 0x0D:
            out[1] = b"r"
            out += 2
        elif ch == 0x09:
            out[1] = b"t"
            out += 2
        else:
            out[1] = b"u"
            out[2] = b"0"
            out[3] = b"0"
            out[4] = _HEX[ch >> 4]
            out[5] = _HEX[ch & 15]
            out += 6
        i += 1
    out[0] = b'"'
    out += 1
    buf.size = out - buf.data
    return 0


cdef int _put_json_string(Buffer* buf, str text) except -1:
    """``encode_basestring(text)``, into the buffer."""
    cdef bytes encoded
    if PyUnicode_IS_ASCII(text):
        return _put_json_bytes(
            buf, <const unsigned char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text)
        )
    encoded = PyUnicode_AsUTF8String(text)
    return _put_json_bytes(
        buf, <const unsigned char*>PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)
    )


cdef int _put_value(Buffer* buf, int kind, object converter, str text) except -1:
    """``_convert(kind, converter, text)``, into the buffer."""
    cdef Py_ssize_t n
    if kind == STRING:
        return _put_json_string(buf, text)
    n = len(text)
    if kind == NUMBER and n and _is_digit(text[n - 1]) or kind == RAW:
        return _put_str(buf, text)
    if kind == BOOL:
        return _put(buf, b"true", 4) if text == "t" else _put(buf, b"false", 5)
    if kind == TIMESTAMPTZ and _utc_timestamptz(text, n) or (
        kind == TIMESTAMP and _plain_timestamp(text, n)
    ):
        # digits and separators (ASCII): '"' + date + "T" + time (+ ":00") + '"'
        if not PyUnicode_IS_ASCII(text):
            return _put_str(buf, _convert(kind, converter, text))
        _reserve(buf, n + 5)
        _put_char(buf, b'"')
        _put(buf, <const char*>PyUnicode_DATA(text), 10)
        _put_char(buf, b"T")
        _put(buf, <const char*>PyUnicode_DATA(text) + 11, n - 11)
        if kind == TIMESTAMPTZ:
            _put(buf, b":00", 3)
        return _put_char(buf, b'"')
    return _put_str(buf, converter(text))


cdef inline int _put_json(Buffer* buf, int kind, object converter, object value) except -1:
    """A column value (text, NULL or binary) as JSON, into the buffer."""
    if type(value) is str:
        return _put_value(buf, kind, converter, <str>value)
    return _put_str(buf, _other_json(value))


cdef inline str _text(Buffer* buf):
    return PyUnicode_DecodeUTF8(buf.data, buf.size, NULL)


def row_json(tuple keys, tuple kinds, tuple converters, tuple values, positions):
    """The row as a JSON object (every column, or those at ``positions``); unchanged TOAST
    values are left out."""
    cdef Buffer buf
    cdef Py_ssize_t index, n
    cdef bint first = True
    buf.data = NULL
    buf.size = buf.capacity = 0
    unchanged = _unchanged()
    if positions is None:
        positions = range(len(values))
    try:
        _put_char(&buf, b"{")
        for index in positions:
            value = values[index]
            if value is unchanged:
                continue
            if not first:
                _put(&buf, b", ", 2)
            first = False
            _put_str(&buf, <str>keys[index])
            if value is None:
                _put(&buf, b"null", 4)
            elif type(value) is str:
                _put_value(&buf, <int>kinds[index], converters[index], <str>value)
            else:
                _put_str(&buf, _other_json(value))
        _put_char(&buf, b"}")
        return _text(&buf)
    finally:
        PyMem_Free(buf.data)


def update_json(
    tuple keys, tuple changed_keys, tuple kinds, tuple converters, tuple old, tuple new,
    tuple order
):
    """An update with the whole old row: (old row JSON, new row JSON, positions of the changed
    columns, their diffs), in one pass, the columns taken in ``order`` (jsonb's key order)."""
    cdef Buffer old_buf, new_buf, diff
    cdef list changed = []
    cdef list diffs = []
    cdef Py_ssize_t index, n = len(new), start
    cdef Py_ssize_t after_start, after_end, before_start, before_end
    cdef str key
    cdef int kind
    old_buf.data = new_buf.data = diff.data = NULL
    old_buf.size = old_buf.capacity = new_buf.size = new_buf.capacity = 0
    diff.size = diff.capacity = 0
    unchanged = _unchanged()
    if len(old) != n:
        raise ValueError("the old and the new row have different numbers of columns")
    try:
        _put_char(&old_buf, b"{")
        _put_char(&new_buf, b"{")
        for index in order:
            before = old[index]
            after = new[index]
            key = <str>keys[index]
            if after is unchanged:  # listed in the record's context as unavailable
                if before is not unchanged:
                    if old_buf.size > 1:
                        _put(&old_buf, b", ", 2)
                    _put_str(&old_buf, key)
                    _put_str(&old_buf, _other_json(before))
                continue
            if new_buf.size > 1:
                _put(&new_buf, b", ", 2)
            if before == after:  # most columns: converted once, the same text in both rows
                if old_buf.size > 1:
                    _put(&old_buf, b", ", 2)
                start = new_buf.size
                _put_str(&new_buf, key)
                if type(after) is str:
                    _put_value(&new_buf, <int>kinds[index], converters[index], <str>after)
                else:
                    _put_str(&new_buf, _other_json(after))
                _put(&old_buf, new_buf.data + start, new_buf.size - start)
                continue
            # a changed column: each value converted into its row, the diff made of those
            # bytes (one str per diff, no str per value)
            kind = <int>kinds[index]
            _put_str(&new_buf, key)
            after_start = new_buf.size
            _put_json(&new_buf, kind, converters[index], after)
            after_end = new_buf.size
            before_start = before_end = -1
            if before is not unchanged:
                if old_buf.size > 1:
                    _put(&old_buf, b", ", 2)
                _put_str(&old_buf, key)
                before_start = old_buf.size
                _put_json(&old_buf, kind, converters[index], before)
                before_end = old_buf.size
            changed.append(index)
            # the diff shows a value that is not text (binary, unavailable) as null
            diff.size = 0
            _put_str(&diff, <str>changed_keys[index])
            if type(after) is str or after is None:
                _put(&diff, new_buf.data + after_start, after_end - after_start)
            else:
                _put(&diff, b"null", 4)
            _put(&diff, b', "old": ', 9)
            if before_start >= 0 and (type(before) is str or before is None):
                _put(&diff, old_buf.data + before_start, before_end - before_start)
            else:
                _put(&diff, b"null", 4)
            _put_char(&diff, b"}")
            diffs.append(_text(&diff))
        _put_char(&old_buf, b"}")
        _put_char(&new_buf, b"}")
        return _text(&old_buf), _text(&new_buf), changed, diffs
    finally:
        PyMem_Free(old_buf.data)
        PyMem_Free(new_buf.data)
        PyMem_Free(diff.data)
