"""Decode pgoutput logical replication messages: bytes in, typed immutable messages out.

:func:`decode_message` takes the payload of one pgoutput message -- the bytes after the
XLogData header of a CopyData ``'w'`` message on a replication connection, or one ``data``
value of ``pg_logical_slot_peek_binary_changes`` -- and returns one frozen message. It does no
I/O and keeps no state; :class:`Decoder` is the one stateful convenience: it remembers whether
it is between a Stream Start and a Stream Stop, which changes the layout of seven message kinds.

The layouts follow the PostgreSQL documentation, "Logical Replication Message Formats", for
protocol versions 1 to 4. Integers are big-endian; LSNs and xids are returned as plain ``int``;
timestamps (Int64 microseconds since 2000-01-01 UTC) become timezone-aware UTC ``datetime``;
strings are NUL-terminated UTF-8. Relation and Type names are returned as sent: the namespace
of ``pg_catalog`` arrives as the empty string.

The package, in the order a message goes through it:

- ``messages``: one type per message, named as that page names it, with its checked decoding
  beside it (``read``: every field checked, a :class:`~cdc.errors.DecodeError` naming the
  message, the field and the byte offset);
- ``tuple_data``: the column values of a row (TupleData) and their checked decoding;
- ``reader``: the checked cursor both of them read with;
- ``fast``: Insert, Update, Delete, Begin and Commit (nearly all the traffic) decoded without
  per-field checks; anything it rejects goes to the checked decoding, the reference it must
  agree with, so the fast path can only be slower, never wrong;
- ``decode``: :func:`decode_message` (fast path, then checked) and :class:`Decoder`.

Nothing but ``DecodeError`` leaves the package for malformed input, and nothing is allocated
from an unchecked length.
"""

from cdc.pipeline.pgoutput.decode import Decoder, decode_checked, decode_message
from cdc.pipeline.pgoutput.messages import (
    Begin,
    BeginPrepare,
    Commit,
    CommitPrepared,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputMessage,
    Prepare,
    Relation,
    RelationColumn,
    RollbackPrepared,
    StreamAbort,
    StreamCommit,
    StreamPrepare,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
)
from cdc.pipeline.pgoutput.tuple_data import (
    UNCHANGED_TOAST,
    ColumnValue,
    TupleData,
    UnchangedToast,
)

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
    "decode_checked",
    "decode_message",
]
