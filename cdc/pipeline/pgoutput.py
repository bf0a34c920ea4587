"""Decode pgoutput logical replication messages: bytes in, typed immutable messages out.

Shape
=====

:func:`decode_message` takes the payload of one pgoutput message -- the bytes after the
XLogData header of a CopyData ``'w'`` message on a replication connection, or one ``data``
value of ``pg_logical_slot_peek_binary_changes`` -- and returns one frozen dataclass. It does no
I/O and keeps no state; :class:`Decoder` is the one stateful convenience: it remembers whether
it is between a Stream Start and a Stream Stop, which changes the layout of seven message kinds.

The layouts follow the PostgreSQL documentation, "Logical Replication Message Formats", for
protocol versions 1 to 4. Integers are big-endian; LSNs and xids are returned as plain ``int``;
timestamps (Int64 microseconds since 2000-01-01 UTC) become timezone-aware UTC ``datetime``;
strings are NUL-terminated UTF-8. Relation and Type names are returned as sent: the namespace
of ``pg_catalog`` arrives as the empty string. Tuple columns become ``str`` (kind ``'t'``),
``bytes`` (``'b'``), ``None`` (``'n'``) or :data:`UNCHANGED_TOAST` (``'u'``).

Two decoders, one result
========================

Insert, Update and Delete (and their tuples) arrive ~100k times a second, Begin and Commit once
per transaction. Those five kinds have a *fast* decoder: precompiled ``struct.Struct`` unpackers
with ``unpack_from`` at integer offsets, no bounds checks, no per-field calls. Its only defence
is that Python itself refuses out-of-range reads (``IndexError``, ``struct.error``), and a final
"did we end exactly at the last byte" test that catches lengths that ran past the end (a slice
past the end is silently short, so a bad length can only surface there or on the next read).

Every other kind, and every message on which the fast decoder raised anything, goes through
the *checked* decoder: a small reader object that checks each field before it reads it and
raises :class:`~cdc.errors.DecodeError` naming the message kind, the field and the byte offset
where that field starts. Because it re-walks from the first byte, the fast decoder never needs
to know where it failed. The checked decoder is complete on its own (the tests assert both give
equal results on every vector), so a message the fast path rejects for a reason the checked
path accepts still decodes correctly -- the fast path can only be slower, never wrong.

Nothing but ``DecodeError`` leaves this module for malformed input, and nothing is allocated
from an unchecked length: the checked reader compares every length and count with the bytes
left before using it, and the fast path only ever slices, which is bounded by the input.

Strictness: replica identity must be one of ``d n f i``, old-tuple markers ``K``/``O``, the
new-tuple marker ``N``, and the two boolean bytes (Message flags, Stream Start first_segment)
must be 0 or 1 -- a value this module cannot represent means a protocol it does not know, and a
CDC daemon must stop rather than guess. Flag bytes the dataclasses carry as ``int`` (Commit,
Prepare, Relation columns, Truncate options) are passed through unchecked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn, TypeAlias, final

from cdc.errors import DecodeError

__all__ = [
    "UNCHANGED_TOAST",
    "Begin",
    "BeginPrepare",
    "ColumnValue",
    "Commit",
    "CommitPrepared",
    "Decoder",
    "Delete",
    "Insert",
    "Message",
    "Origin",
    "PgOutputMessage",
    "Prepare",
    "Relation",
    "RelationColumn",
    "RollbackPrepared",
    "StreamAbort",
    "StreamCommit",
    "StreamPrepare",
    "StreamStart",
    "StreamStop",
    "Truncate",
    "TupleData",
    "Type",
    "UnchangedToast",
    "Update",
    "decode_message",
]


@final
class UnchangedToast:
    """The value of a TOASTed column that an UPDATE did not change; the server omits it.

    There is exactly one instance, :data:`UNCHANGED_TOAST`; compare with ``is``.
    """

    __slots__ = ()

    def __new__(cls) -> UnchangedToast:
        return UNCHANGED_TOAST

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        # Pickle and copy by reference to the module global, keeping the singleton single.
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final[UnchangedToast] = object.__new__(UnchangedToast)

ColumnValue: TypeAlias = str | bytes | UnchangedToast | None
TupleData: TypeAlias = tuple[ColumnValue, ...]


# --- messages -------------------------------------------------------------------------------
# Field order is the wire order, except that the leading streamed-transaction xid of the seven
# stream-capable kinds comes last, as an optional field (it is absent outside streams).


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    flags: int
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        """Part of the replica identity (every column is, under REPLICA IDENTITY FULL)."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    relation_name: str
    replica_identity: str
    columns: tuple[RelationColumn, ...]
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Type:
    type_oid: int
    namespace: str
    name: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: TupleData
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    new: TupleData
    old: TupleData | None = None
    old_kind: str | None = None  # 'K': replica identity key columns only; 'O': the whole row
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old: TupleData
    old_kind: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    options: int
    xid: int | None = None

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int
    subxid: int  # equals xid when the whole streamed transaction aborted
    abort_lsn: int | None = None  # protocol 4 with streaming = parallel only
    abort_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class BeginPrepare:
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class Prepare:
    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    flags: int
    prepare_end_lsn: int
    rollback_end_lsn: int
    prepare_time: datetime
    rollback_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class StreamPrepare:
    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


PgOutputMessage: TypeAlias = (
    Begin
    | Message
    | Commit
    | Origin
    | Relation
    | Type
    | Insert
    | Update
    | Delete
    | Truncate
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
    | BeginPrepare
    | Prepare
    | CommitPrepared
    | RollbackPrepared
    | StreamPrepare
)


# --- shared constants -----------------------------------------------------------------------

_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_I32: Final = struct.Struct("!i")
_U64: Final = struct.Struct("!Q")
_I64: Final = struct.Struct("!q")
# Fixed prefixes of the hot messages, so each costs one unpack call.
_REL_MARKER: Final = struct.Struct("!IB")  # relation id, tuple marker
_XID_REL_MARKER: Final = struct.Struct("!IIB")  # streamed: xid, relation id, tuple marker
_BEGIN: Final = struct.Struct("!QqI")  # final_lsn, commit_time, xid
_COMMIT: Final = struct.Struct("!BQQq")  # flags, commit_lsn, end_lsn, commit_time
_ABORT_TAIL: Final = 16  # protocol 4 Stream Abort: Int64 abort_lsn + Int64 abort_time

# Byte values of the markers, compared as ints because indexing bytes yields ints.
_N: Final = ord("N")
_K: Final = ord("K")
_O: Final = ord("O")
_KIND_TEXT: Final = ord("t")
_KIND_NULL: Final = ord("n")
_KIND_UNCHANGED: Final = ord("u")
_KIND_BINARY: Final = ord("b")

_MESSAGE_NAMES: Final[dict[int, str]] = {
    ord("B"): "Begin",
    ord("M"): "Message",
    ord("C"): "Commit",
    ord("O"): "Origin",
    ord("R"): "Relation",
    ord("Y"): "Type",
    ord("I"): "Insert",
    ord("U"): "Update",
    ord("D"): "Delete",
    ord("T"): "Truncate",
    ord("S"): "Stream Start",
    ord("E"): "Stream Stop",
    ord("c"): "Stream Commit",
    ord("A"): "Stream Abort",
    ord("b"): "Begin Prepare",
    ord("P"): "Prepare",
    ord("K"): "Commit Prepared",
    ord("r"): "Rollback Prepared",
    ord("p"): "Stream Prepare",
}


def _pg_time(micros: int) -> datetime:
    # Raises OverflowError outside datetime's range; both decoders turn that into DecodeError.
    return _PG_EPOCH + timedelta(microseconds=micros)


# --- fast decoder (hot kinds only) ----------------------------------------------------------


class _FastPathError(Exception):
    """Raised by the fast decoder on a check Python does not do for it; never escapes."""


def _fast_tuple(data: bytes, offset: int) -> tuple[TupleData, int]:
    (count,) = _U16.unpack_from(data, offset)
    offset += 2
    values: list[ColumnValue] = []
    append = values.append
    for _ in range(count):
        kind = data[offset]
        if kind == _KIND_TEXT:
            # Unsigned, so a negative Int32 becomes huge and runs past the end like any
            # oversized length: the slice is then short and the end-of-message test fails.
            (length,) = _U32.unpack_from(data, offset + 1)
            offset += 5 + length
            append(data[offset - length : offset].decode())
        elif kind == _KIND_NULL:
            append(None)
            offset += 1
        elif kind == _KIND_UNCHANGED:
            append(UNCHANGED_TOAST)
            offset += 1
        elif kind == _KIND_BINARY:
            (length,) = _U32.unpack_from(data, offset + 1)
            offset += 5 + length
            append(data[offset - length : offset])
        else:
            raise _FastPathError
    return tuple(values), offset


def _fast_insert(data: bytes, in_stream: bool) -> Insert:
    xid: int | None
    if in_stream:
        xid, relation_id, marker = _XID_REL_MARKER.unpack_from(data, 1)
        offset = 10
    else:
        xid = None
        relation_id, marker = _REL_MARKER.unpack_from(data, 1)
        offset = 6
    if marker != _N:
        raise _FastPathError
    new, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise _FastPathError
    return Insert(relation_id, new, xid)


def _fast_update(data: bytes, in_stream: bool) -> Update:
    xid: int | None
    if in_stream:
        xid, relation_id, marker = _XID_REL_MARKER.unpack_from(data, 1)
        offset = 10
    else:
        xid = None
        relation_id, marker = _REL_MARKER.unpack_from(data, 1)
        offset = 6
    old: TupleData | None
    old_kind: str | None
    if marker == _N:
        old = old_kind = None
    elif marker in (_O, _K):
        old, offset = _fast_tuple(data, offset)
        old_kind = "O" if marker == _O else "K"
        if data[offset] != _N:
            raise _FastPathError
        offset += 1
    else:
        raise _FastPathError
    new, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise _FastPathError
    return Update(relation_id, new, old, old_kind, xid)


def _fast_delete(data: bytes, in_stream: bool) -> Delete:
    xid: int | None
    if in_stream:
        xid, relation_id, marker = _XID_REL_MARKER.unpack_from(data, 1)
        offset = 10
    else:
        xid = None
        relation_id, marker = _REL_MARKER.unpack_from(data, 1)
        offset = 6
    if marker == _O:
        old_kind = "O"
    elif marker == _K:
        old_kind = "K"
    else:
        raise _FastPathError
    old, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise _FastPathError
    return Delete(relation_id, old, old_kind, xid)


def _fast_begin(data: bytes, in_stream: bool) -> Begin:
    if len(data) != _BEGIN.size + 1:
        raise _FastPathError
    final_lsn, commit_time, xid = _BEGIN.unpack_from(data, 1)
    return Begin(final_lsn, _pg_time(commit_time), xid)


def _fast_commit(data: bytes, in_stream: bool) -> Commit:
    if len(data) != _COMMIT.size + 1:
        raise _FastPathError
    flags, commit_lsn, end_lsn, commit_time = _COMMIT.unpack_from(data, 1)
    return Commit(flags, commit_lsn, end_lsn, _pg_time(commit_time))


_FAST: Final[dict[int, Callable[[bytes, bool], PgOutputMessage]]] = {
    ord("I"): _fast_insert,
    ord("U"): _fast_update,
    ord("D"): _fast_delete,
    ord("B"): _fast_begin,
    ord("C"): _fast_commit,
}

# Everything the fast decoder can raise on bad input (UnicodeDecodeError is a ValueError,
# OverflowError comes from timestamps outside datetime's range).
_FAST_ERRORS: Final = (
    IndexError,
    struct.error,
    ValueError,
    OverflowError,
    _FastPathError,
)


# --- checked decoder ------------------------------------------------------------------------


def _show_byte(value: int) -> str:
    text = chr(value)
    if text.isascii() and text.isprintable():
        return f"0x{value:02x} ({text!r})"
    return f"0x{value:02x}"


class _Reader:
    """Cursor over one message that checks every field before reading it."""

    __slots__ = ("data", "kind", "pos")

    def __init__(self, data: bytes, kind: str) -> None:
        self.data = data
        self.pos = 1  # after the type byte
        self.kind = kind

    def fail(self, field: str, detail: str, offset: int) -> NoReturn:
        raise DecodeError(self.kind, field, offset, detail)

    def left(self) -> int:
        return len(self.data) - self.pos

    def _take(self, field: str, size: int) -> int:
        start = self.pos
        left = len(self.data) - start
        if left < size:
            self.fail(field, f"truncated: needs {size} bytes, {left} left", start)
        self.pos = start + size
        return start

    def u8(self, field: str) -> int:
        return self.data[self._take(field, 1)]

    def u16(self, field: str) -> int:
        return int(_U16.unpack_from(self.data, self._take(field, 2))[0])

    def u32(self, field: str) -> int:
        return int(_U32.unpack_from(self.data, self._take(field, 4))[0])

    def i32(self, field: str) -> int:
        return int(_I32.unpack_from(self.data, self._take(field, 4))[0])

    def u64(self, field: str) -> int:
        return int(_U64.unpack_from(self.data, self._take(field, 8))[0])

    def flag(self, field: str) -> bool:
        start = self.pos
        value = self.u8(field)
        if value > 1:
            self.fail(field, f"expected 0 or 1, got {_show_byte(value)}", start)
        return value == 1

    def char(self, field: str, allowed: str) -> str:
        start = self.pos
        value = self.u8(field)
        text = chr(value)
        if text not in allowed:
            expected = ", ".join(repr(c) for c in allowed)
            self.fail(field, f"expected one of {expected}, got {_show_byte(value)}", start)
        return text

    def time(self, field: str) -> datetime:
        start = self.pos
        micros = int(_I64.unpack_from(self.data, self._take(field, 8))[0])
        try:
            return _pg_time(micros)
        except OverflowError:
            self.fail(field, f"timestamp {micros} (µs since 2000-01-01) is out of range", start)

    def string(self, field: str) -> str:
        start = self.pos
        end = self.data.find(0, start)
        if end < 0:
            self.fail(field, "missing NUL terminator", start)
        self.pos = end + 1
        return self._utf8(field, start, end)

    def _utf8(self, field: str, start: int, end: int) -> str:
        try:
            return self.data[start:end].decode()
        except UnicodeDecodeError as exc:
            self.fail(field, f"invalid UTF-8 at byte {start + exc.start}", start)

    def length(self, field: str) -> int:
        """An Int32 length of bytes that must follow; checked before anything is sliced."""
        start = self.pos
        length = self.i32(field)
        if length < 0:
            self.fail(field, f"negative length {length}", start)
        left = self.left()
        if length > left:
            self.fail(field, f"length {length} exceeds the {left} bytes left", start)
        return length

    def count(self, field: str, size: int) -> int:
        """An Int16 count of items of at least ``size`` bytes each; fails fast if they can't fit."""
        start = self.pos
        count = self.u16(field)
        left = self.left()
        if count * size > left:
            self.fail(
                field, f"{count} items of at least {size} bytes cannot fit in {left} left", start
            )
        return count

    def raw(self, length: int) -> bytes:
        # Only called with a length already checked by length().
        start = self.pos
        self.pos = start + length
        return self.data[start : self.pos]

    def xid_if(self, in_stream: bool) -> int | None:
        return self.u32("xid") if in_stream else None

    def done(self) -> None:
        extra = self.left()
        if extra:
            self.fail("end of message", f"{extra} unexpected trailing byte(s)", self.pos)


def _read_tuple(r: _Reader, name: str) -> TupleData:
    count = r.count(f"{name}.count", 1)  # every column has at least its kind byte
    values: list[ColumnValue] = []
    for i in range(count):
        start = r.pos
        kind = r.u8(f"{name}[{i}].kind")
        if kind == _KIND_TEXT:
            length = r.length(f"{name}[{i}].length")
            value_start = r.pos
            r.pos += length
            values.append(r._utf8(f"{name}[{i}].value", value_start, r.pos))
        elif kind == _KIND_NULL:
            values.append(None)
        elif kind == _KIND_UNCHANGED:
            values.append(UNCHANGED_TOAST)
        elif kind == _KIND_BINARY:
            values.append(r.raw(r.length(f"{name}[{i}].length")))
        else:
            r.fail(
                f"{name}[{i}].kind",
                f"expected one of 'n', 'u', 't', 'b', got {_show_byte(kind)}",
                start,
            )
    return tuple(values)


def _read_begin(r: _Reader, in_stream: bool) -> Begin:
    return Begin(r.u64("final_lsn"), r.time("commit_time"), r.u32("xid"))


def _read_message(r: _Reader, in_stream: bool) -> Message:
    xid = r.xid_if(in_stream)
    transactional = r.flag("flags")
    lsn = r.u64("lsn")
    prefix = r.string("prefix")
    content = r.raw(r.length("content.length"))
    return Message(transactional, lsn, prefix, content, xid)


def _read_commit(r: _Reader, in_stream: bool) -> Commit:
    return Commit(r.u8("flags"), r.u64("commit_lsn"), r.u64("end_lsn"), r.time("commit_time"))


def _read_origin(r: _Reader, in_stream: bool) -> Origin:
    return Origin(r.u64("commit_lsn"), r.string("name"))


def _read_relation(r: _Reader, in_stream: bool) -> Relation:
    xid = r.xid_if(in_stream)
    relation_id = r.u32("relation_id")
    namespace = r.string("namespace")
    relation_name = r.string("relation_name")
    replica_identity = r.char("replica_identity", "dnfi")
    # Each column is at least flags + empty name NUL + type oid + type modifier = 10 bytes.
    count = r.count("columns.count", 10)
    columns = tuple(
        RelationColumn(
            r.u8(f"columns[{i}].flags"),
            r.string(f"columns[{i}].name"),
            r.u32(f"columns[{i}].type_oid"),
            r.i32(f"columns[{i}].type_modifier"),
        )
        for i in range(count)
    )
    return Relation(relation_id, namespace, relation_name, replica_identity, columns, xid)


def _read_type(r: _Reader, in_stream: bool) -> Type:
    xid = r.xid_if(in_stream)
    return Type(r.u32("type_oid"), r.string("namespace"), r.string("name"), xid)


def _read_insert(r: _Reader, in_stream: bool) -> Insert:
    xid = r.xid_if(in_stream)
    relation_id = r.u32("relation_id")
    r.char("new marker", "N")
    return Insert(relation_id, _read_tuple(r, "new"), xid)


def _read_update(r: _Reader, in_stream: bool) -> Update:
    xid = r.xid_if(in_stream)
    relation_id = r.u32("relation_id")
    marker = r.char("old_kind", "KON")
    old: TupleData | None = None
    old_kind: str | None = None
    if marker != "N":
        old_kind = marker
        old = _read_tuple(r, "old")
        r.char("new marker", "N")
    return Update(relation_id, _read_tuple(r, "new"), old, old_kind, xid)


def _read_delete(r: _Reader, in_stream: bool) -> Delete:
    xid = r.xid_if(in_stream)
    relation_id = r.u32("relation_id")
    old_kind = r.char("old_kind", "KO")
    return Delete(relation_id, _read_tuple(r, "old"), old_kind, xid)


def _read_truncate(r: _Reader, in_stream: bool) -> Truncate:
    xid = r.xid_if(in_stream)
    start = r.pos
    count = r.i32("relation_ids.count")
    if count < 0:
        r.fail("relation_ids.count", f"negative count {count}", start)
    # The options byte sits between the count and the ids it counts.
    if count * 4 + 1 > r.left():
        r.fail("relation_ids.count", f"{count} relation ids cannot fit in {r.left()} left", start)
    options = r.u8("options")
    relation_ids = tuple(r.u32(f"relation_ids[{i}]") for i in range(count))
    return Truncate(relation_ids, options, xid)


def _read_stream_start(r: _Reader, in_stream: bool) -> StreamStart:
    return StreamStart(r.u32("xid"), r.flag("first_segment"))


def _read_stream_stop(r: _Reader, in_stream: bool) -> StreamStop:
    return StreamStop()


def _read_stream_commit(r: _Reader, in_stream: bool) -> StreamCommit:
    return StreamCommit(
        r.u32("xid"), r.u8("flags"), r.u64("commit_lsn"), r.u64("end_lsn"), r.time("commit_time")
    )


def _read_stream_abort(r: _Reader, in_stream: bool) -> StreamAbort:
    xid = r.u32("xid")
    subxid = r.u32("subxid")
    # Protocol 4 appends abort_lsn and abort_time, but only when streaming = parallel; nothing
    # in the message says which, so the remaining length decides.
    left = r.left()
    if left == 0:
        return StreamAbort(xid, subxid)
    if left != _ABORT_TAIL:
        r.fail(
            "abort_lsn",
            f"expected 0 or 16 bytes after subxid (abort_lsn, abort_time), found {left}",
            r.pos,
        )
    return StreamAbort(xid, subxid, r.u64("abort_lsn"), r.time("abort_time"))


def _read_begin_prepare(r: _Reader, in_stream: bool) -> BeginPrepare:
    return BeginPrepare(
        r.u64("prepare_lsn"),
        r.u64("end_lsn"),
        r.time("prepare_time"),
        r.u32("xid"),
        r.string("gid"),
    )


def _read_prepare(r: _Reader, in_stream: bool) -> Prepare:
    return Prepare(
        r.u8("flags"),
        r.u64("prepare_lsn"),
        r.u64("end_lsn"),
        r.time("prepare_time"),
        r.u32("xid"),
        r.string("gid"),
    )


def _read_commit_prepared(r: _Reader, in_stream: bool) -> CommitPrepared:
    return CommitPrepared(
        r.u8("flags"),
        r.u64("commit_lsn"),
        r.u64("end_lsn"),
        r.time("commit_time"),
        r.u32("xid"),
        r.string("gid"),
    )


def _read_rollback_prepared(r: _Reader, in_stream: bool) -> RollbackPrepared:
    return RollbackPrepared(
        r.u8("flags"),
        r.u64("prepare_end_lsn"),
        r.u64("rollback_end_lsn"),
        r.time("prepare_time"),
        r.time("rollback_time"),
        r.u32("xid"),
        r.string("gid"),
    )


def _read_stream_prepare(r: _Reader, in_stream: bool) -> StreamPrepare:
    return StreamPrepare(
        r.u8("flags"),
        r.u64("prepare_lsn"),
        r.u64("end_lsn"),
        r.time("prepare_time"),
        r.u32("xid"),
        r.string("gid"),
    )


_CHECKED: Final[dict[int, Callable[[_Reader, bool], PgOutputMessage]]] = {
    ord("B"): _read_begin,
    ord("M"): _read_message,
    ord("C"): _read_commit,
    ord("O"): _read_origin,
    ord("R"): _read_relation,
    ord("Y"): _read_type,
    ord("I"): _read_insert,
    ord("U"): _read_update,
    ord("D"): _read_delete,
    ord("T"): _read_truncate,
    ord("S"): _read_stream_start,
    ord("E"): _read_stream_stop,
    ord("c"): _read_stream_commit,
    ord("A"): _read_stream_abort,
    ord("b"): _read_begin_prepare,
    ord("P"): _read_prepare,
    ord("K"): _read_commit_prepared,
    ord("r"): _read_rollback_prepared,
    ord("p"): _read_stream_prepare,
}


def _decode_checked(data: bytes, in_stream: bool) -> PgOutputMessage:
    """Decode with every field checked; the reference the fast decoder must agree with."""
    if not data:
        raise DecodeError("unknown", "type", 0, "empty message: no type byte")
    type_byte = data[0]
    read = _CHECKED.get(type_byte)
    if read is None:
        raise DecodeError("unknown", "type", 0, f"unknown message type {_show_byte(type_byte)}")
    reader = _Reader(data, _MESSAGE_NAMES[type_byte])
    message = read(reader, in_stream)
    reader.done()
    return message


# --- public entry points --------------------------------------------------------------------


def decode_message(
    data: bytes | bytearray | memoryview, *, in_stream: bool = False
) -> PgOutputMessage:
    """Decode one pgoutput message.

    ``in_stream`` says the message arrived between a Stream Start and a Stream Stop: then
    Relation, Type, Insert, Update, Delete, Truncate and Message start with the Int32 xid of
    the (sub)transaction they belong to. Raises :class:`~cdc.errors.DecodeError`, and nothing
    else, for any input that is not exactly one well-formed message.
    """
    # A memoryview of a receive buffer is copied once: the fast path needs bytes.decode().
    buf = data if data.__class__ is bytes else bytes(data)
    try:
        fast = _FAST.get(buf[0])
        if fast is not None:
            return fast(buf, in_stream)
    except _FAST_ERRORS:
        pass  # re-walk with the checked decoder, which names the field and offset
    return _decode_checked(buf, in_stream)


class Decoder:
    """Decodes a sequence of messages, tracking Stream Start / Stream Stop for ``in_stream``.

    Still pure: no I/O, and a message that fails to decode leaves the state unchanged.
    """

    __slots__ = ("_in_stream",)

    def __init__(self) -> None:
        self._in_stream = False

    @property
    def in_stream(self) -> bool:
        """True between a decoded Stream Start and the next Stream Stop."""
        return self._in_stream

    def decode(self, data: bytes | bytearray | memoryview) -> PgOutputMessage:
        message = decode_message(data, in_stream=self._in_stream)
        kind = message.__class__
        if kind is StreamStart:
            self._in_stream = True
        elif kind is StreamStop:
            self._in_stream = False
        return message
