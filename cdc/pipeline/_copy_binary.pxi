# The binary COPY rows of the sink (included by _copy_lines.pyx, whose buffer, _Text and
# canonical-text helpers they use; reference: cdc.pipeline.copy_lines._py_encode_binary_rows).

from libc.stdint cimport int64_t, uint64_t

cdef const char* _SIGNATURE = b"PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # + flags, extension
cdef Py_ssize_t _SIGNATURE_SIZE = 19
cdef long long _INT4_MAX = 2147483647
cdef long long _INT8_MAX = 9223372036854775807


class _NotBinary(Exception):
    """A value the binary rows do not carry: the caller sends the flush as text."""


cdef inline int _put_be(Buffer* buf, uint64_t value, int size) except -1:
    cdef int i
    _reserve(buf, size)
    for i in range(size):
        buf.data[buf.size + i] = <char>((value >> (8 * (size - 1 - i))) & 0xFF)
    buf.size += size
    return 0


cdef int _put_int8(Buffer* buf, int64_t value) except -1:
    _put_be(buf, 8, 4)
    return _put_be(buf, <uint64_t>value, 8)


cdef int _put_bytea(Buffer* buf, bytes value) except -1:
    _put_be(buf, <uint64_t>len(value), 4)
    return _put(buf, PyBytes_AS_STRING(value), len(value))


cdef int _digits(const char* text, int n) noexcept:
    """The ASCII decimal number of ``n`` characters; -1 when one is not a digit."""
    cdef int value = 0
    cdef int i
    for i in range(n):
        if text[i] < 48 or text[i] > 57:  # not 0-9
            return -1
        value = value * 10 + (text[i] - 48)
    return value


cdef object _commit_utc(object occurred_at, object occurred_utc_of):
    """The canonical UTC text of ``occurred_at``: for a commit time as the mapper writes it
    (ASCII ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``) its first 26 characters, which is what
    ``occurred_utc_of`` (cdc.store.chain.iso_utc_text) gives it, without that function's
    regular expression (a tenth of the encoder's time in a drain); anything else through
    ``occurred_utc_of``."""
    cdef const char* t
    if (type(occurred_at) is str and PyUnicode_IS_ASCII(occurred_at)
            and PyUnicode_GET_LENGTH(occurred_at) == 32):
        t = <const char*>PyUnicode_DATA(occurred_at)
        if (t[4] == 45 and t[7] == 45 and t[10] == 84 and t[13] == 58 and t[16] == 58
                and t[19] == 46 and memcmp(t + 26, b"+00:00", 6) == 0  # - - T : : . +00:00
                and _digits(t, 4) >= 0 and _digits(t + 5, 2) >= 0 and _digits(t + 8, 2) >= 0
                and _digits(t + 11, 2) >= 0 and _digits(t + 14, 2) >= 0
                and _digits(t + 17, 2) >= 0 and _digits(t + 20, 6) >= 0):
            return occurred_at[:26]
    return occurred_utc_of(occurred_at)


cdef int64_t _utc_micros(object utc) except? -1:
    """A canonical UTC text (``YYYY-MM-DDTHH:MM:SS.ffffff``) as timestamptz's binary value:
    microseconds since 2000-01-01; _NotBinary when it is not one, or not a valid time (as
    ``datetime.fromisoformat`` refuses it)."""
    cdef const char* t
    cdef int year, month, day, hour, minute, second, micro, days_in_month
    cdef int64_t y, era, yoe, doy, doe, days
    if type(utc) is not str or not PyUnicode_IS_ASCII(utc) or PyUnicode_GET_LENGTH(utc) != 26:
        raise _NotBinary()
    t = <const char*>PyUnicode_DATA(utc)
    if (t[4] != 45 or t[7] != 45 or t[10] != 84 or t[13] != 58 or t[16] != 58
            or t[19] != 46):  # - - T : : .
        raise _NotBinary()
    year = _digits(t, 4)
    month = _digits(t + 5, 2)
    day = _digits(t + 8, 2)
    hour = _digits(t + 11, 2)
    minute = _digits(t + 14, 2)
    second = _digits(t + 17, 2)
    micro = _digits(t + 20, 6)
    if (year < 1 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23 or minute < 0
            or minute > 59 or second < 0 or second > 59 or micro < 0):
        raise _NotBinary()
    if month == 2:
        days_in_month = 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    elif month in (4, 6, 9, 11):
        days_in_month = 30
    else:
        days_in_month = 31
    if day > days_in_month:
        raise _NotBinary()
    # days from the civil date (H. Hinnant's algorithm), from 1970-01-01, then from 2000-01-01
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468 - 10957
    return ((days * 24 + hour) * 60 + minute) * 60000000 + <int64_t>second * 1000000 + micro


cdef int _hex_digit(char c):
    if 48 <= c <= 57:  # 0-9
        return c - 48
    if 97 <= c <= 102:  # a-f
        return c - 87
    if 65 <= c <= 70:  # A-F
        return c - 55
    return -1


cdef int64_t _lsn(object text) except? -1:
    """``X/Y`` as pg_lsn reads it (1 to 8 hex digits each side) into its binary value;
    _NotBinary when pg_lsn would refuse it (the text COPY then names the record)."""
    cdef const char* t
    cdef Py_ssize_t n, i
    cdef uint64_t high = 0, low = 0
    cdef int digit, count = 0
    cdef bint after_slash = False
    if type(text) is not str or not PyUnicode_IS_ASCII(text):
        raise _NotBinary()
    t = <const char*>PyUnicode_DATA(text)
    n = PyUnicode_GET_LENGTH(text)
    for i in range(n):
        if t[i] == 47 and not after_slash:  # the slash
            if count < 1:
                raise _NotBinary()
            after_slash = True
            count = 0
            continue
        digit = _hex_digit(t[i])
        if digit < 0 or count == 8:
            raise _NotBinary()
        count += 1
        if after_slash:
            low = low * 16 + digit
        else:
            high = high * 16 + digit
    if not after_slash or count < 1:
        raise _NotBinary()
    return <int64_t>((high << 32) | low)


cdef unsigned long long _binary_number(object value, long long limit) except? 0xFFFFFFFFFFFFFFFF:
    if type(value) is not int or value < 0 or value > limit:
        raise _NotBinary()
    return value


cdef int _binary_text(
    Buffer* row, Buffer* canon, _Text text, object value, bint chained, bint jsonb
) except -1:
    """A text (or json, jsonb) field: its length and UTF-8 bytes (jsonb: version 1 first),
    -1 for NULL; and into the canonical text when chained."""
    if value is None:
        _put_be(row, 0xFFFFFFFF, 4)
        if chained:
            _put_char(canon, b"-")
        return 0
    if type(value) is not str:
        raise _NotBinary()
    text.set(value)
    if text.size + jsonb > _INT4_MAX:
        raise _NotBinary()
    _put_be(row, <uint64_t>(text.size + jsonb), 4)
    if jsonb:
        _put_char(row, 1)
    _put(row, text.data, text.size)
    if chained:
        _put_decimal(canon, text.size)
        _put_char(canon, b":")
        _put(canon, text.data, text.size)
    return 0


cdef int _canonical_number(Buffer* canon, unsigned long long value) except -1:
    """A non-negative number in the canonical text, as ``str(value)`` writes it."""
    cdef char digits[24]
    cdef int n = 0
    cdef int i
    while True:
        digits[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
        if not value:
            break
    _put_decimal(canon, n)
    _put_char(canon, b":")
    _reserve(canon, n)
    for i in range(n):
        canon.data[canon.size + i] = digits[n - 1 - i]
    canon.size += n
    return 0


def encode_binary_rows(
    list records,
    bytes prev,
    long long position,
    str recorded_utc,
    occurred_utc_of,
    int jsonb,
):
    """(COPY bytes, last hash, last position) in binary COPY format, or None when a record holds
    a value these rows do not carry. Chained from ``prev`` at ``position``, or plain when
    ``prev`` is None; ``occurred_utc_of(occurred_at)`` gives a commit time's canonical UTC
    text (None: only the server reads it); ``jsonb`` has a bit per document stored as jsonb
    (context, old, new, changes)."""
    cdef Buffer out
    cdef Buffer canon
    cdef _Text text = _Text()
    cdef _Text when = _Text()
    cdef tuple record
    cdef Py_ssize_t i
    cdef int field
    cdef bint chained = prev is not None
    cdef object last_at = None
    cdef object occurred_utc = None
    cdef int64_t occurred = 0
    cdef int64_t recorded
    cdef int64_t lsn
    cdef unsigned long long xid = 0
    cdef unsigned long long seq
    cdef bytes digest
    out.data = NULL
    out.size = out.capacity = 0
    canon.data = NULL
    canon.size = canon.capacity = 0
    try:
        recorded = _utc_micros(recorded_utc)
        _put(&out, _SIGNATURE, _SIGNATURE_SIZE)
        for i in range(len(records)):
            record = <tuple>records[i]
            if len(record) != 19:
                raise _NotBinary()
            occurred_at = record[0]
            if occurred_at != last_at or occurred_utc is None:
                last_at = occurred_at
                occurred_utc = (
                    _commit_utc(occurred_at, occurred_utc_of) if type(occurred_at) is str else None
                )
                occurred = _utc_micros(occurred_utc)
            if record[16] is not None:
                xid = _binary_number(record[16], _INT8_MAX)
            lsn = _lsn(record[17])
            seq = _binary_number(record[18], _INT4_MAX)
            _put_be(&out, 23 if chained else 19, 2)
            _put_int8(&out, occurred)
            if chained:
                position += 1
                canon.size = 0
                _put(&canon, PyBytes_AS_STRING(prev), len(prev))  # hashed: prev + canonical
                _canonical(&canon, when, occurred_utc)
                _canonical(&canon, when, recorded_utc)
            for field in range(1, 11):  # source ... actor_id
                _binary_text(&out, &canon, text, record[field], chained, False)
            for field in range(11, 15):  # context, old, new, changes
                _binary_text(&out, &canon, text, record[field], chained, jsonb >> (field - 11) & 1)
            _binary_text(&out, &canon, text, record[15], chained, False)  # summary
            if record[16] is None:
                _put_be(&out, 0xFFFFFFFF, 4)
                if chained:
                    _put_char(&canon, b"-")
            else:
                _put_int8(&out, <int64_t>xid)
                if chained:
                    _canonical_number(&canon, xid)
            _put_int8(&out, lsn)
            _put_be(&out, 4, 4)
            _put_be(&out, seq, 4)
            if chained:
                _canonical(&canon, when, record[17])  # commit_lsn as sent
                _canonical_number(&canon, seq)
                _canonical_number(&canon, <unsigned long long>position)
                _put_int8(&out, recorded)
                _put_int8(&out, position)
                _put_bytea(&out, prev)
                hashed = _SHA256.copy()  # not sha256() per record: see _copy_lines.pyx
                hashed.update(PyBytes_FromStringAndSize(canon.data, canon.size))
                digest = hashed.digest()
                _put_bytea(&out, digest)
                prev = digest
        _put(&out, b"\xff\xff", 2)
        data = PyBytes_FromStringAndSize(out.data, out.size)
    except _NotBinary:
        return None
    finally:
        PyMem_Free(out.data)
        PyMem_Free(canon.data)
    return data, prev, position
