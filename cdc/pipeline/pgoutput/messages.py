"""The pgoutput messages: one frozen type per message of PostgreSQL's "Logical Replication
Message Formats" page, named as the page names it, each with its checked decoding beside it.

Each type carries its type byte (``TYPE``), the page's name for it (``NAME``, used in errors),
and ``read``: the fields in wire order, every one checked by the :class:`Reader` before it is
read. Field order is the wire order, except that the leading streamed-transaction xid of the
seven stream-capable kinds (Relation, Type, Insert, Update, Delete, Truncate, Message) comes
last, as an optional field: it is present only between a Stream Start and a Stream Stop.

Strictness: replica identity must be one of ``d n f i``, old-tuple markers ``K``/``O``, the
new-tuple marker ``N``, and the two boolean bytes (Message flags, Stream Start first_segment)
must be 0 or 1: a value these types cannot represent means a protocol this module does not
know, and a CDC daemon must stop rather than guess. Flag bytes carried as ``int`` (Commit,
Prepare, Relation columns, Truncate options) are passed through unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, TypeAlias

from cdc.pipeline.pgoutput.reader import Reader
from cdc.pipeline.pgoutput.tuple_data import TupleData, read_tuple

# Protocol 4 Stream Abort, with streaming = parallel: Int64 abort_lsn + Int64 abort_time.
ABORT_TAIL: Final = 16


@dataclass(frozen=True, slots=True)
class Begin:
    TYPE: ClassVar[int] = ord("B")
    NAME: ClassVar[str] = "Begin"

    final_lsn: int
    commit_time: datetime
    xid: int

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Begin:
        return cls(r.u64("final_lsn"), r.time("commit_time"), r.u32("xid"))


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[int] = ord("M")
    NAME: ClassVar[str] = "Message"

    transactional: bool
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Message:
        xid = r.xid_if(in_stream)
        transactional = r.flag("flags")
        lsn = r.u64("lsn")
        prefix = r.string("prefix")
        content = r.raw(r.length("content.length"))
        return cls(transactional, lsn, prefix, content, xid)


@dataclass(frozen=True, slots=True)
class Commit:
    TYPE: ClassVar[int] = ord("C")
    NAME: ClassVar[str] = "Commit"

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Commit:
        return cls(r.u8("flags"), r.u64("commit_lsn"), r.u64("end_lsn"), r.time("commit_time"))


@dataclass(frozen=True, slots=True)
class Origin:
    TYPE: ClassVar[int] = ord("O")
    NAME: ClassVar[str] = "Origin"

    commit_lsn: int
    name: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Origin:
        return cls(r.u64("commit_lsn"), r.string("name"))


@dataclass(frozen=True, slots=True)
class RelationColumn:
    """One column of a Relation message."""

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
    TYPE: ClassVar[int] = ord("R")
    NAME: ClassVar[str] = "Relation"

    relation_id: int
    namespace: str  # as sent: pg_catalog's arrives as the empty string
    relation_name: str
    replica_identity: str
    columns: tuple[RelationColumn, ...]
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Relation:
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
        return cls(relation_id, namespace, relation_name, replica_identity, columns, xid)


@dataclass(frozen=True, slots=True)
class Type:
    TYPE: ClassVar[int] = ord("Y")
    NAME: ClassVar[str] = "Type"

    type_oid: int
    namespace: str
    name: str
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Type:
        xid = r.xid_if(in_stream)
        return cls(r.u32("type_oid"), r.string("namespace"), r.string("name"), xid)


@dataclass(frozen=True, slots=True)
class Insert:
    TYPE: ClassVar[int] = ord("I")
    NAME: ClassVar[str] = "Insert"

    relation_id: int
    new: TupleData
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Insert:
        xid = r.xid_if(in_stream)
        relation_id = r.u32("relation_id")
        r.char("new marker", "N")
        return cls(relation_id, read_tuple(r, "new"), xid)


@dataclass(frozen=True, slots=True)
class Update:
    TYPE: ClassVar[int] = ord("U")
    NAME: ClassVar[str] = "Update"

    relation_id: int
    new: TupleData
    old: TupleData | None = None
    old_kind: str | None = None  # 'K': replica identity key columns only; 'O': the whole row
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Update:
        xid = r.xid_if(in_stream)
        relation_id = r.u32("relation_id")
        marker = r.char("old_kind", "KON")
        old: TupleData | None = None
        old_kind: str | None = None
        if marker != "N":
            old_kind = marker
            old = read_tuple(r, "old")
            r.char("new marker", "N")
        return cls(relation_id, read_tuple(r, "new"), old, old_kind, xid)


@dataclass(frozen=True, slots=True)
class Delete:
    TYPE: ClassVar[int] = ord("D")
    NAME: ClassVar[str] = "Delete"

    relation_id: int
    old: TupleData
    old_kind: str
    xid: int | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Delete:
        xid = r.xid_if(in_stream)
        relation_id = r.u32("relation_id")
        old_kind = r.char("old_kind", "KO")
        return cls(relation_id, read_tuple(r, "old"), old_kind, xid)


@dataclass(frozen=True, slots=True)
class Truncate:
    TYPE: ClassVar[int] = ord("T")
    NAME: ClassVar[str] = "Truncate"

    relation_ids: tuple[int, ...]
    options: int
    xid: int | None = None

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Truncate:
        xid = r.xid_if(in_stream)
        start = r.pos
        count = r.i32("relation_ids.count")
        if count < 0:
            r.fail("relation_ids.count", f"negative count {count}", start)
        # The options byte sits between the count and the ids it counts.
        if count * 4 + 1 > r.left():
            r.fail(
                "relation_ids.count", f"{count} relation ids cannot fit in {r.left()} left", start
            )
        options = r.u8("options")
        relation_ids = tuple(r.u32(f"relation_ids[{i}]") for i in range(count))
        return cls(relation_ids, options, xid)


@dataclass(frozen=True, slots=True)
class StreamStart:
    TYPE: ClassVar[int] = ord("S")
    NAME: ClassVar[str] = "Stream Start"

    xid: int
    first_segment: bool

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> StreamStart:
        return cls(r.u32("xid"), r.flag("first_segment"))


@dataclass(frozen=True, slots=True)
class StreamStop:
    TYPE: ClassVar[int] = ord("E")
    NAME: ClassVar[str] = "Stream Stop"

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> StreamStop:
        return cls()


@dataclass(frozen=True, slots=True)
class StreamCommit:
    TYPE: ClassVar[int] = ord("c")
    NAME: ClassVar[str] = "Stream Commit"

    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> StreamCommit:
        return cls(
            r.u32("xid"),
            r.u8("flags"),
            r.u64("commit_lsn"),
            r.u64("end_lsn"),
            r.time("commit_time"),
        )


@dataclass(frozen=True, slots=True)
class StreamAbort:
    TYPE: ClassVar[int] = ord("A")
    NAME: ClassVar[str] = "Stream Abort"

    xid: int
    subxid: int  # equals xid when the whole streamed transaction aborted
    abort_lsn: int | None = None  # protocol 4 with streaming = parallel only
    abort_time: datetime | None = None

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> StreamAbort:
        xid = r.u32("xid")
        subxid = r.u32("subxid")
        # Protocol 4 appends abort_lsn and abort_time, but only when streaming = parallel;
        # nothing in the message says which, so the remaining length decides.
        left = r.left()
        if left == 0:
            return cls(xid, subxid)
        if left != ABORT_TAIL:
            r.fail(
                "abort_lsn",
                f"expected 0 or 16 bytes after subxid (abort_lsn, abort_time), found {left}",
                r.pos,
            )
        return cls(xid, subxid, r.u64("abort_lsn"), r.time("abort_time"))


@dataclass(frozen=True, slots=True)
class BeginPrepare:
    TYPE: ClassVar[int] = ord("b")
    NAME: ClassVar[str] = "Begin Prepare"

    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> BeginPrepare:
        return cls(
            r.u64("prepare_lsn"),
            r.u64("end_lsn"),
            r.time("prepare_time"),
            r.u32("xid"),
            r.string("gid"),
        )


@dataclass(frozen=True, slots=True)
class Prepare:
    TYPE: ClassVar[int] = ord("P")
    NAME: ClassVar[str] = "Prepare"

    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> Prepare:
        return cls(
            r.u8("flags"),
            r.u64("prepare_lsn"),
            r.u64("end_lsn"),
            r.time("prepare_time"),
            r.u32("xid"),
            r.string("gid"),
        )


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    TYPE: ClassVar[int] = ord("K")
    NAME: ClassVar[str] = "Commit Prepared"

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime
    xid: int
    gid: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> CommitPrepared:
        return cls(
            r.u8("flags"),
            r.u64("commit_lsn"),
            r.u64("end_lsn"),
            r.time("commit_time"),
            r.u32("xid"),
            r.string("gid"),
        )


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    TYPE: ClassVar[int] = ord("r")
    NAME: ClassVar[str] = "Rollback Prepared"

    flags: int
    prepare_end_lsn: int
    rollback_end_lsn: int
    prepare_time: datetime
    rollback_time: datetime
    xid: int
    gid: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> RollbackPrepared:
        return cls(
            r.u8("flags"),
            r.u64("prepare_end_lsn"),
            r.u64("rollback_end_lsn"),
            r.time("prepare_time"),
            r.time("rollback_time"),
            r.u32("xid"),
            r.string("gid"),
        )


@dataclass(frozen=True, slots=True)
class StreamPrepare:
    TYPE: ClassVar[int] = ord("p")
    NAME: ClassVar[str] = "Stream Prepare"

    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str

    @classmethod
    def read(cls, r: Reader, in_stream: bool) -> StreamPrepare:
        return cls(
            r.u8("flags"),
            r.u64("prepare_lsn"),
            r.u64("end_lsn"),
            r.time("prepare_time"),
            r.u32("xid"),
            r.string("gid"),
        )


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

# Every message type by its type byte.
MESSAGE_TYPES: Final[dict[int, type[PgOutputMessage]]] = {
    kind.TYPE: kind
    for kind in (
        Begin,
        Message,
        Commit,
        Origin,
        Relation,
        Type,
        Insert,
        Update,
        Delete,
        Truncate,
        StreamStart,
        StreamStop,
        StreamCommit,
        StreamAbort,
        BeginPrepare,
        Prepare,
        CommitPrepared,
        RollbackPrepared,
        StreamPrepare,
    )
}
