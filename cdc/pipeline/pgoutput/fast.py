"""The fast path: Insert, Update, Delete, Begin and Commit without per-field checks.

Those five kinds arrive ~100k times a second (Begin and Commit once per transaction); every
other kind is rare. Here each is decoded with precompiled ``struct.Struct`` unpackers and
``unpack_from`` at integer offsets: no bounds checks, no per-field calls. Its only defences are
that Python itself refuses out-of-range reads (``IndexError``, ``struct.error``) and a final
"did we end exactly at the last byte" test that catches lengths that ran past the end (a slice
past the end is silently short, so a bad length can only surface there or on the next read).

Any of :data:`FAST_ERRORS` sends the message to the checked decoding of
:mod:`~cdc.pipeline.pgoutput.messages`, which re-walks it from the first byte and names the
field and offset: so this path never needs to know where it failed, and it can only be slower
than the checked one, never wrong (the tests assert both give equal results on every vector).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from cdc.pipeline.pgoutput.messages import Begin, Commit, Delete, Insert, PgOutputMessage, Update
from cdc.pipeline.pgoutput.reader import pg_time
from cdc.pipeline.pgoutput.tuple_data import (
    KIND_BINARY,
    KIND_NULL,
    KIND_TEXT,
    KIND_UNCHANGED,
    UNCHANGED_TOAST,
    ColumnValue,
    TupleData,
)

# The unpackers are this module's own, not imported: CPython compiles ``name.method()`` on an
# imported name as an attribute load plus a call (a bound method object per call), which costs
# ~15% on this path; on a module-level name it is a direct method call.
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
# Fixed prefixes of the hot messages, so each costs one unpack call.
_REL_MARKER: Final = struct.Struct("!IB")  # relation id, tuple marker
_XID_REL_MARKER: Final = struct.Struct("!IIB")  # streamed: xid, relation id, tuple marker
_BEGIN: Final = struct.Struct("!QqI")  # final_lsn, commit_time, xid
_COMMIT: Final = struct.Struct("!BQQq")  # flags, commit_lsn, end_lsn, commit_time

_N: Final = ord("N")
_K: Final = ord("K")
_O: Final = ord("O")


class FastPathError(Exception):
    """Raised by the fast path on a check Python does not do for it; never escapes the package."""


def _fast_tuple(data: bytes, offset: int) -> tuple[TupleData, int]:
    (count,) = _U16.unpack_from(data, offset)
    offset += 2
    values: list[ColumnValue] = []
    append = values.append
    for _ in range(count):
        kind = data[offset]
        if kind == KIND_TEXT:
            # Unsigned, so a negative Int32 becomes huge and runs past the end like any
            # oversized length: the slice is then short and the end-of-message test fails.
            (length,) = _U32.unpack_from(data, offset + 1)
            offset += 5 + length
            append(data[offset - length : offset].decode())
        elif kind == KIND_NULL:
            append(None)
            offset += 1
        elif kind == KIND_UNCHANGED:
            append(UNCHANGED_TOAST)
            offset += 1
        elif kind == KIND_BINARY:
            (length,) = _U32.unpack_from(data, offset + 1)
            offset += 5 + length
            append(data[offset - length : offset])
        else:
            raise FastPathError
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
        raise FastPathError
    new, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise FastPathError
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
            raise FastPathError
        offset += 1
    else:
        raise FastPathError
    new, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise FastPathError
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
        raise FastPathError
    old, offset = _fast_tuple(data, offset)
    if offset != len(data):
        raise FastPathError
    return Delete(relation_id, old, old_kind, xid)


def _fast_begin(data: bytes, in_stream: bool) -> Begin:
    if len(data) != _BEGIN.size + 1:
        raise FastPathError
    final_lsn, commit_time, xid = _BEGIN.unpack_from(data, 1)
    return Begin(final_lsn, pg_time(commit_time), xid)


def _fast_commit(data: bytes, in_stream: bool) -> Commit:
    if len(data) != _COMMIT.size + 1:
        raise FastPathError
    flags, commit_lsn, end_lsn, commit_time = _COMMIT.unpack_from(data, 1)
    return Commit(flags, commit_lsn, end_lsn, pg_time(commit_time))


# The fast decoding of each hot kind, by type byte.
FAST: Final[dict[int, Callable[[bytes, bool], PgOutputMessage]]] = {
    Insert.TYPE: _fast_insert,
    Update.TYPE: _fast_update,
    Delete.TYPE: _fast_delete,
    Begin.TYPE: _fast_begin,
    Commit.TYPE: _fast_commit,
}


def fast_decode(data: bytes, in_stream: bool) -> PgOutputMessage | None:
    """A hot kind, or None for the others; raises one of FAST_ERRORS on anything malformed.
    The reference of the compiled core's decode_fast (cdc/pipeline/_core.pyx)."""
    fast = FAST.get(data[0])
    return None if fast is None else fast(data, in_stream)


# Everything the fast path can raise on bad input (UnicodeDecodeError is a ValueError,
# OverflowError comes from timestamps outside datetime's range).
FAST_ERRORS: Final = (IndexError, struct.error, ValueError, OverflowError, FastPathError)
