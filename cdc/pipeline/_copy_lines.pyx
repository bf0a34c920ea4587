# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled COPY data of the sink: records in, the bytes COPY sends out, in PostgreSQL's
binary format (:func:`encode_binary_rows`, in _copy_binary.pxi) or its text format (here).

Mirrors ``cdc.pipeline.copy_lines._py_encode_chained_rows`` (the reference, and the fallback
where this was not built): each record's fields as COPY text, chained to the record before by the
SHA-256 of the previous hash and the record's canonical text (cdc.store.chain.canonical_text:
each field as ``<UTF-8 bytes>:<text>``, ``-`` for NULL). Both are built as UTF-8 bytes in
one growing C buffer per batch, straight from the strings' own storage for ASCII text (most
of it): no per-field ``str`` is made, escaped, joined and encoded again, which is what the
reference pays (about 6 µs of the daemon's ~25 µs per change, bench/hot_path.py).

COPY's text format escapes backslash, tab, newline and carriage return; no byte of a
multi-byte UTF-8 sequence is below 0x80, so escaping the UTF-8 bytes one by one is escaping
the characters.

Anything that is not the shape the reference handles (a field that is not ``str`` where text
is expected) raises ``TypeError``; the caller then encodes with the reference, so a record
is never encoded differently, at most more slowly.

The binary rows (reference: ``cdc.pipeline.copy_lines._py_encode_binary_rows``) carry each
field's binary form: text and json as their UTF-8 bytes, jsonb as a version byte (1) and its
text, timestamptz as microseconds since 2000-01-01 UTC, bigint, integer and pg_lsn as big-endian
integers, bytea as its bytes; the chain's hashes are over the same canonical text as the
lines'. A value they do not carry makes the whole call return None (the sink sends text).

tests/unit/test_core_differential.py proves the bytes identical to the references'.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free
from libc.string cimport memchr, memcmp, memcpy

from hashlib import sha256 as _sha256

# A new hash object per record would look sha256 up by name in OpenSSL 3 (EVP_MD_fetch, about
# 0.9 µs, half of the hash's cost on a 900-byte record): copying one made once skips it.
cdef object _SHA256 = _sha256()

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    bytes PyUnicode_AsUTF8String(object)
    char* PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)

cdef const char* _HEX = b"0123456789abcdef"


include "_buffer.pxi"


cdef const char* _ESCAPED = b"\\\t\n\r"  # backslash, tab, newline, carriage return
cdef const char* _ESCAPE_AS = b"\\tnr"  # the letter after the backslash, in the same order


cdef int _put_escaped(Buffer* buf, const char* text, Py_ssize_t n) except -1:
    """COPY text format: backslash, tab, newline and carriage return escaped. The next of each
    is found by ``memchr`` (vectorised) and kept until it is passed, so runs without any of
    them (nearly all of a JSON document) are found and copied whole, in linear time."""
    cdef const char* end = text + n
    cdef const char* at = text
    cdef const char* following[4]
    cdef const char* special
    cdef int k, which
    cdef char* out
    _reserve(buf, 2 * n)
    out = buf.data + buf.size
    for k in range(4):
        following[k] = <const char*>memchr(text, _ESCAPED[k], n)
        if following[k] == NULL:
            following[k] = end
    while True:
        special = end
        which = -1
        for k in range(4):
            if following[k] < special:
                special = following[k]
                which = k
        memcpy(out, at, special - at)
        out += special - at
        if which < 0:
            break
        out[0] = b"\\"
        out[1] = _ESCAPE_AS[which]
        out += 2
        at = special + 1
        following[which] = <const char*>memchr(at, _ESCAPED[which], end - at)
        if following[which] == NULL:
            following[which] = end
    buf.size = out - buf.data
    return 0


cdef int _put_decimal(Buffer* buf, unsigned long long value) except -1:
    cdef char digits[24]
    cdef int n = 0
    cdef int i
    if value == 0:
        return _put_char(buf, b"0")
    while value:
        digits[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
    _reserve(buf, n)
    for i in range(n):
        buf.data[buf.size + i] = digits[n - 1 - i]
    buf.size += n
    return 0


cdef int _put_hex(Buffer* buf, const unsigned char* raw, Py_ssize_t n) except -1:
    cdef Py_ssize_t i
    _reserve(buf, 2 * n)
    for i in range(n):
        buf.data[buf.size + 2 * i] = _HEX[raw[i] >> 4]
        buf.data[buf.size + 2 * i + 1] = _HEX[raw[i] & 15]
    buf.size += 2 * n
    return 0


cdef class _Text:
    """A field's UTF-8 bytes: the string's own storage when it is ASCII, else an encoded copy
    (kept alive here while it is read)."""

    cdef const char* data
    cdef Py_ssize_t size
    cdef object owner

    cdef int set(self, object value) except -1:
        if type(value) is not str:
            raise TypeError("not str")
        if PyUnicode_IS_ASCII(value):
            self.owner = value
            self.data = <const char*>PyUnicode_DATA(value)
            self.size = PyUnicode_GET_LENGTH(value)
        else:
            self.owner = PyUnicode_AsUTF8String(value)
            self.data = PyBytes_AS_STRING(self.owner)
            self.size = PyBytes_GET_SIZE(self.owner)
        return 0


cdef int _canonical(Buffer* canon, _Text text, object value) except -1:
    """One field of the canonical text: ``<bytes>:<text>``, or ``-`` for NULL."""
    if value is None:
        return _put_char(canon, b"-")
    text.set(value)
    _put_decimal(canon, text.size)
    _put_char(canon, b":")
    return _put(canon, text.data, text.size)


cdef int _field(Buffer* line, Buffer* canon, _Text text, object value, bint escape) except -1:
    """A record field into both the line (NULL as ``\\N``) and the canonical text."""
    if value is None:
        _put(line, b"\\N", 2)
        return _put_char(canon, b"-")
    text.set(value)
    if escape:
        _put_escaped(line, text.data, text.size)
    else:
        _put(line, text.data, text.size)
    _put_decimal(canon, text.size)
    _put_char(canon, b":")
    return _put(canon, text.data, text.size)


cdef int _number(Buffer* line, Buffer* canon, object value) except -1:
    """A non-negative integer field (xid, seq, chain_position) into the line and the canonical
    text, as ``str(value)`` writes it."""
    cdef char digits[24]
    cdef int n = 0
    cdef int i
    cdef unsigned long long number
    if type(value) is not int or value < 0:
        raise TypeError("not a non-negative int")
    number = value
    while True:
        digits[n] = <char>(48 + number % 10)
        number //= 10
        n += 1
        if not number:
            break
    _reserve(line, n)
    for i in range(n):
        line.data[line.size + i] = digits[n - 1 - i]
    line.size += n
    _put_decimal(canon, n)
    _put_char(canon, b":")
    _reserve(canon, n)
    for i in range(n):
        canon.data[canon.size + i] = digits[n - 1 - i]
    canon.size += n
    return 0


def encode_chained_rows(
    list records,
    bytes prev,
    long long position,
    str recorded_utc,
    str recorded_copy,
    occurred_utc_of,
):
    """(COPY bytes, last hash, last position): the records chained from ``prev`` at
    ``position``; ``occurred_utc_of(occurred_at)`` gives a commit time's canonical UTC text."""
    cdef Buffer line
    cdef Buffer canon
    cdef _Text text = _Text()
    cdef _Text when = _Text()
    cdef tuple record
    cdef Py_ssize_t i
    cdef object last_at = None
    cdef object occurred_utc = ""
    cdef bytes digest
    cdef unsigned long long seq
    line.data = NULL
    line.size = line.capacity = 0
    canon.data = NULL
    canon.size = canon.capacity = 0
    try:
        for i in range(len(records)):
            record = <tuple>records[i]
            if len(record) != 19:
                raise TypeError("not an activity record")
            position += 1
            occurred_at = record[0]
            if occurred_at != last_at:  # one commit time for every record of a transaction
                last_at = occurred_at
                occurred_utc = occurred_utc_of(occurred_at)
            canon.size = 0
            _put(&canon, PyBytes_AS_STRING(prev), len(prev))  # hashed: prev + canonical text
            # the canonical text's order: occurred_at (UTC), recorded_at, then the fields
            _canonical(&canon, when, occurred_utc)
            _canonical(&canon, when, recorded_utc)
            text.set(occurred_at)  # in the line as sent; canonical above in UTC
            _put(&line, text.data, text.size)
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[1], False)  # source
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[2], False)  # operation
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[3], True)  # action
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[4], True)  # category
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[5], False)  # severity
            for field in range(6, 16):  # schema_name ... summary
                _put_char(&line, b"\t")
                _field(&line, &canon, text, record[field], True)
            _put_char(&line, b"\t")
            xid = record[16]
            if xid is None:
                _put(&line, b"\\N", 2)
                _put_char(&canon, b"-")
            else:
                _number(&line, &canon, xid)
            _put_char(&line, b"\t")
            _field(&line, &canon, text, record[17], False)  # commit_lsn
            _put_char(&line, b"\t")
            _number(&line, &canon, record[18])  # seq
            _put_char(&line, b"\t")
            when.set(recorded_copy)
            _put(&line, when.data, when.size)
            _put_char(&line, b"\t")
            _number(&line, &canon, position)  # chain_position
            _put(&line, b"\t\\\\x", 4)
            _put_hex(&line, <const unsigned char*>PyBytes_AS_STRING(prev), len(prev))
            hashed = _SHA256.copy()
            hashed.update(PyBytes_FromStringAndSize(canon.data, canon.size))
            digest = hashed.digest()
            _put(&line, b"\t\\\\x", 4)
            _put_hex(&line, <const unsigned char*>PyBytes_AS_STRING(digest), len(digest))
            _put_char(&line, b"\n")
            prev = digest
        data = PyBytes_FromStringAndSize(line.data, line.size) if line.size else b""
    finally:
        PyMem_Free(line.data)
        PyMem_Free(canon.data)
    return data, prev, position


include "_copy_binary.pxi"  # the binary rows: encode_binary_rows
