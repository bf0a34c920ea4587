"""A test-only pgoutput encoder, written from the protocol documentation independently of the
decoder, so that round trips check field order and value mapping, and tests of later stages can
build exact message bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from cdc.pipeline.pgoutput import (
    UNCHANGED_TOAST,
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
    RollbackPrepared,
    StreamAbort,
    StreamCommit,
    StreamPrepare,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    Type,
    Update,
)

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_time(value: datetime) -> bytes:
    return struct.pack("!q", (value - PG_EPOCH) // timedelta(microseconds=1))


def cstring(value: str) -> bytes:
    return value.encode() + b"\x00"


def encode_tuple(values: TupleData) -> bytes:
    out = [struct.pack("!H", len(values))]
    for value in values:
        if value is None:
            out.append(b"n")
        elif value is UNCHANGED_TOAST:
            out.append(b"u")
        elif isinstance(value, bytes):
            out.append(b"b" + struct.pack("!i", len(value)) + value)
        else:
            assert isinstance(value, str)
            encoded = value.encode()
            out.append(b"t" + struct.pack("!i", len(encoded)) + encoded)
    return b"".join(out)


def stream_xid(xid: int | None) -> bytes:
    return b"" if xid is None else struct.pack("!I", xid)


def encode(message: PgOutputMessage) -> bytes:
    """Encode one message the way pgoutput's proto.c lays it out."""
    m = message
    if isinstance(m, Begin):
        return (
            b"B"
            + struct.pack("!Q", m.final_lsn)
            + pg_time(m.commit_time)
            + struct.pack("!I", m.xid)
        )
    if isinstance(m, Message):
        return (
            b"M"
            + stream_xid(m.xid)
            + struct.pack("!BQ", int(m.transactional), m.lsn)
            + cstring(m.prefix)
            + struct.pack("!i", len(m.content))
            + m.content
        )
    if isinstance(m, Commit):
        return b"C" + struct.pack("!BQQ", m.flags, m.commit_lsn, m.end_lsn) + pg_time(m.commit_time)
    if isinstance(m, Origin):
        return b"O" + struct.pack("!Q", m.commit_lsn) + cstring(m.name)
    if isinstance(m, Relation):
        columns = b"".join(
            struct.pack("!B", c.flags)
            + cstring(c.name)
            + struct.pack("!Ii", c.type_oid, c.type_modifier)
            for c in m.columns
        )
        return (
            b"R"
            + stream_xid(m.xid)
            + struct.pack("!I", m.relation_id)
            + cstring(m.namespace)
            + cstring(m.relation_name)
            + m.replica_identity.encode()
            + struct.pack("!H", len(m.columns))
            + columns
        )
    if isinstance(m, Type):
        return (
            b"Y"
            + stream_xid(m.xid)
            + struct.pack("!I", m.type_oid)
            + cstring(m.namespace)
            + cstring(m.name)
        )
    if isinstance(m, Insert):
        return (
            b"I" + stream_xid(m.xid) + struct.pack("!I", m.relation_id) + b"N" + encode_tuple(m.new)
        )
    if isinstance(m, Update):
        old = b"" if m.old is None else (m.old_kind or "").encode() + encode_tuple(m.old)
        return (
            b"U"
            + stream_xid(m.xid)
            + struct.pack("!I", m.relation_id)
            + old
            + b"N"
            + encode_tuple(m.new)
        )
    if isinstance(m, Delete):
        return (
            b"D"
            + stream_xid(m.xid)
            + struct.pack("!I", m.relation_id)
            + m.old_kind.encode()
            + encode_tuple(m.old)
        )
    if isinstance(m, Truncate):
        return (
            b"T"
            + stream_xid(m.xid)
            + struct.pack("!iB", len(m.relation_ids), m.options)
            + b"".join(struct.pack("!I", r) for r in m.relation_ids)
        )
    if isinstance(m, StreamStart):
        return b"S" + struct.pack("!IB", m.xid, int(m.first_segment))
    if isinstance(m, StreamStop):
        return b"E"
    if isinstance(m, StreamCommit):
        return (
            b"c"
            + struct.pack("!IBQQ", m.xid, m.flags, m.commit_lsn, m.end_lsn)
            + pg_time(m.commit_time)
        )
    if isinstance(m, StreamAbort):
        tail = b""
        if m.abort_lsn is not None and m.abort_time is not None:
            tail = struct.pack("!Q", m.abort_lsn) + pg_time(m.abort_time)
        return b"A" + struct.pack("!II", m.xid, m.subxid) + tail
    if isinstance(m, BeginPrepare):
        return (
            b"b"
            + struct.pack("!QQ", m.prepare_lsn, m.end_lsn)
            + pg_time(m.prepare_time)
            + struct.pack("!I", m.xid)
            + cstring(m.gid)
        )
    if isinstance(m, RollbackPrepared):
        return (
            b"r"
            + struct.pack("!BQQ", m.flags, m.prepare_end_lsn, m.rollback_end_lsn)
            + pg_time(m.prepare_time)
            + pg_time(m.rollback_time)
            + struct.pack("!I", m.xid)
            + cstring(m.gid)
        )
    # Prepare, Commit Prepared and Stream Prepare share one layout under three type bytes.
    type_byte = {Prepare: b"P", CommitPrepared: b"K", StreamPrepare: b"p"}[type(m)]
    lsn, end_lsn, when = (
        (m.commit_lsn, m.end_lsn, m.commit_time)
        if isinstance(m, CommitPrepared)
        else (m.prepare_lsn, m.end_lsn, m.prepare_time)
    )
    return (
        type_byte
        + struct.pack("!BQQ", m.flags, lsn, end_lsn)
        + pg_time(when)
        + struct.pack("!I", m.xid)
        + cstring(m.gid)
    )
