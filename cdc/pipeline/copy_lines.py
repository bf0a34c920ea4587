"""The activity records as COPY data: plain (:data:`~cdc.pipeline.activity.RECORD_COLUMNS`)
or chained (:data:`CHAINED_COLUMNS`: each row carries its position in the hash chain, the
hash of the row before and its own, over exactly the canonical text of what it sends;
cdc.store.chain).

Two formats. PostgreSQL's binary COPY (:func:`encode_binary_rows`), what the sink sends
whenever it can: the server reads each field's binary form instead of parsing its text (no
field splitting, no ``timestamptz_in``, ``int8in``, ``pg_lsn_in``, ``byteain``). The text
format (:func:`encode_chained_rows`, :func:`encode_copy_rows`) for a flush the binary one does
not take: an ``occurred_at`` only the server can read (an application event's own time), a
number out of its column's range, an LSN ``pg_lsn`` would refuse; the server then reads, or
refuses by its line, exactly what it did before. The hash is over the same canonical text
either way.

:func:`encode_chained_rows` and :func:`encode_binary_rows` are compiled
(cdc/pipeline/_copy_lines.pyx) where they were built; :func:`_py_encode_chained_rows` and
:func:`_py_encode_binary_rows` are the references of the formats. Pure: no I/O; the sink
(cdc.pipeline.sink) sends what these return, made ahead of its write in a :class:`PreparedFlush`.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.core import copy_lines
from cdc.store.chain import canonical_text, iso_utc_text, utc_text

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # Fast path: most values hold none of the four characters COPY text format escapes.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _record_fields(r: ActivityRecord) -> tuple[str, ...]:
    """The record's fields from ``occurred_at`` to ``summary`` as COPY text: the part of the
    line that the plain and the chained format share."""
    return (
        r.occurred_at,
        r.source,
        r.operation,
        _copy_text(r.action),
        _copy_text(r.category),
        r.severity,
        "\\N" if r.schema_name is None else _copy_text(r.schema_name),
        "\\N" if r.table_name is None else _copy_text(r.table_name),
        "\\N" if r.entity_type is None else _copy_text(r.entity_type),
        "\\N" if r.entity_id is None else _copy_text(r.entity_id),
        "\\N" if r.actor_id is None else _copy_text(r.actor_id),
        "\\N" if r.context is None else _copy_text(r.context),
        "\\N" if r.old is None else _copy_text(r.old),
        "\\N" if r.new is None else _copy_text(r.new),
        "\\N" if r.changes is None else _copy_text(r.changes),
        "\\N" if r.summary is None else _copy_text(r.summary),
    )


def encode_copy_rows(records: list[ActivityRecord]) -> str:
    """The records in COPY text format, one line each."""
    lines = []
    for r in records:
        lines.append(
            "\t".join(
                (
                    *_record_fields(r),
                    "\\N" if r.xid is None else str(r.xid),
                    r.commit_lsn,
                    str(r.seq),
                )
            )
        )
    lines.append("")
    return "\n".join(lines)


CHAINED_COLUMNS: tuple[str, ...] = (
    *RECORD_COLUMNS,
    "recorded_at",
    "chain_position",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last chained record: its hash and position (the next record links to it)."""

    hash: bytes
    position: int


def encode_chained_rows(
    records: list[ActivityRecord],
    head: ChainHead,
    recorded_at: datetime,
    server_times: dict[str, str] | None = None,
) -> tuple[bytes, ChainHead]:
    """The records in COPY text format (:data:`CHAINED_COLUMNS`) as UTF-8, each chained to the
    one before from ``head`` on; and the new head. The hash is over the canonical text of
    exactly what the line sends (cdc.store.chain).

    ``server_times`` gives the canonical UTC text of an ``occurred_at`` that only the server
    can read (:func:`cdc.store.chain.iso_utc_text` returns None for it). Compiled
    (cdc/pipeline/_copy_lines.pyx) where it was built; :func:`_py_encode_chained_rows`, the
    reference, otherwise or for a record the compiled one does not take."""
    if copy_lines is not None:
        times = server_times or {}

        def occurred_utc(at: str) -> str:
            found = iso_utc_text(at)
            return times.get(at, "") if found is None else found

        recorded_utc = utc_text(recorded_at)
        try:
            data, last, position = copy_lines.encode_chained_rows(
                records, head.hash, head.position, recorded_utc, recorded_utc + "+00", occurred_utc
            )
        except TypeError:  # a field of a shape only the reference takes
            return _py_encode_chained_rows(records, head, recorded_at, server_times)
        return data, ChainHead(last, position)
    return _py_encode_chained_rows(records, head, recorded_at, server_times)


def _py_encode_chained_rows(
    records: list[ActivityRecord],
    head: ChainHead,
    recorded_at: datetime,
    server_times: dict[str, str] | None = None,
) -> tuple[bytes, ChainHead]:
    """:func:`encode_chained_rows` in Python: the reference of the row format."""
    recorded_utc = utc_text(recorded_at)
    recorded_copy = recorded_utc + "+00"
    sha256 = hashlib.sha256
    prev = head.hash
    position = head.position
    last_at: str | None = None
    occurred_utc = ""
    lines = []
    for r in records:
        position += 1
        if r.occurred_at != last_at:  # one commit time for every record of a transaction
            last_at = r.occurred_at
            found = iso_utc_text(last_at)
            if found is None:
                found = (server_times or {}).get(last_at, "")
            occurred_utc = found
        xid = None if r.xid is None else str(r.xid)
        seq = str(r.seq)
        chain_position = str(position)
        digest = sha256(
            prev
            + canonical_text(
                (
                    occurred_utc,
                    recorded_utc,
                    r.source,
                    r.operation,
                    r.action,
                    r.category,
                    r.severity,
                    r.schema_name,
                    r.table_name,
                    r.entity_type,
                    r.entity_id,
                    r.actor_id,
                    r.context,
                    r.old,
                    r.new,
                    r.changes,
                    r.summary,
                    xid,
                    r.commit_lsn,
                    seq,
                    chain_position,
                )
            )
        ).digest()
        lines.append(
            "\t".join(
                (
                    *_record_fields(r),
                    "\\N" if xid is None else xid,
                    r.commit_lsn,
                    seq,
                    recorded_copy,
                    chain_position,
                    "\\\\x" + prev.hex(),
                    "\\\\x" + digest.hex(),
                )
            )
        )
        prev = digest
    lines.append("")
    return "\n".join(lines).encode(), ChainHead(prev, position)


# --- binary COPY -------------------------------------------------------------------------------

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the signature, flags 0, no extension
BINARY_TRAILER = b"\xff\xff"  # a field count of -1

DOCUMENTS = ("context", "old", "new", "changes")  # bit 0, 1, 2, 3 of a jsonb mask

# The type each COPY column must have for :func:`encode_binary_rows`' fields (the store's,
# sql/migrations): text but for these; the documents are json or jsonb (jsonb's binary form is
# a version byte, 1, then the text; json's is the text).
_NOT_TEXT: dict[str, tuple[str, ...]] = {
    "occurred_at": ("timestamp with time zone",),
    **{name: ("json", "jsonb") for name in DOCUMENTS},
    "xid": ("bigint",),
    "commit_lsn": ("pg_lsn",),
    "seq": ("integer",),
    "recorded_at": ("timestamp with time zone",),
    "chain_position": ("bigint",),
    "prev_hash": ("bytea",),
    "hash": ("bytea",),
}
BINARY_COLUMN_TYPES: dict[str, tuple[str, ...]] = {
    name: _NOT_TEXT.get(name, ("text",)) for name in CHAINED_COLUMNS
}


def jsonb_mask(column_types: dict[str, str], columns: tuple[str, ...]) -> int | None:
    """The documents stored as jsonb (a bit per :data:`DOCUMENTS` entry), from the store's
    ``format_type`` of each column; None when a column is not of the type the binary rows
    send (the sink then sends text, which the server converts to whatever the column is)."""
    for name in columns:
        if column_types.get(name) not in BINARY_COLUMN_TYPES[name]:
            return None
    return sum(1 << i for i, name in enumerate(DOCUMENTS) if column_types[name] == "jsonb")


_EPOCH_2000 = datetime(2000, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_UTC_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")
_LSN_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_INT4 = struct.Struct(">ii")  # a field: its length, 4, and the value
_INT8 = struct.Struct(">iq")  # a field: its length, 8, and the value
_UINT8 = struct.Struct(">iQ")  # pg_lsn: 64 bits, unsigned
_LENGTH = struct.Struct(">i")
_NULL = _LENGTH.pack(-1)
_INT4_MAX = 2**31 - 1
_INT8_MAX = 2**63 - 1


class _NotBinary(Exception):
    """A value the binary rows do not carry: the flush goes as text."""


def _utc_micros(utc: str | None) -> int:
    """A canonical UTC text as timestamptz's binary value: microseconds since 2000-01-01."""
    if utc is None or not _UTC_TEXT.fullmatch(utc):
        raise _NotBinary
    try:
        return (datetime.fromisoformat(utc) - _EPOCH_2000) // _MICROSECOND
    except ValueError:  # not a date (February 30th), a leap second, 24:00
        raise _NotBinary from None


def _binary_number(value: object, limit: int) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise _NotBinary
    return value


def _binary_text(value: object, jsonb: bool = False) -> bytes:
    if value is None:
        return _NULL
    if type(value) is not str:
        raise _NotBinary
    data = value.encode()
    if len(data) + jsonb > _INT4_MAX:
        raise _NotBinary
    if jsonb:
        return _LENGTH.pack(len(data) + 1) + b"\x01" + data
    return _LENGTH.pack(len(data)) + data


def encode_binary_rows(
    records: list[ActivityRecord],
    head: ChainHead | None,
    recorded_at: datetime,
    jsonb: int,
) -> tuple[bytes, ChainHead | None] | None:
    """The records in PostgreSQL's binary COPY format, whole (signature, one tuple each,
    trailer): chained from ``head`` (:data:`CHAINED_COLUMNS`), with the new head; or, with
    ``head`` None, plain (:data:`RECORD_COLUMNS`). ``jsonb`` says which documents are jsonb
    (:func:`jsonb_mask`). None when a record holds a value the binary rows do not carry (see
    the module's docstring): the caller sends text instead.

    The hashes are the ones :func:`encode_chained_rows` makes: over the canonical text of
    the same values. Compiled (cdc/pipeline/_copy_lines.pyx) where it was built;
    :func:`_py_encode_binary_rows`, the reference, otherwise."""
    if copy_lines is not None:
        found = copy_lines.encode_binary_rows(
            records,
            None if head is None else head.hash,
            0 if head is None else head.position,
            utc_text(recorded_at),
            iso_utc_text,
            jsonb,
        )
        if found is None:
            return None
        data, last, position = found
        return data, None if head is None else ChainHead(last, position)
    return _py_encode_binary_rows(records, head, recorded_at, jsonb)


def _py_encode_binary_rows(
    records: list[ActivityRecord],
    head: ChainHead | None,
    recorded_at: datetime,
    jsonb: int,
) -> tuple[bytes, ChainHead | None] | None:
    """:func:`encode_binary_rows` in Python: the reference of the binary format."""
    try:
        return _binary_rows(records, head, recorded_at, jsonb)
    except _NotBinary:
        return None


def _binary_rows(
    records: list[ActivityRecord],
    head: ChainHead | None,
    recorded_at: datetime,
    jsonb: int,
) -> tuple[bytes, ChainHead | None]:
    recorded_utc = utc_text(recorded_at)
    recorded = _INT8.pack(8, _utc_micros(recorded_utc))
    field_count = struct.pack(">h", len(CHAINED_COLUMNS if head is not None else RECORD_COLUMNS))
    sha256 = hashlib.sha256
    prev = b"" if head is None else head.hash
    position = 0 if head is None else head.position
    last_at: str | None = None
    occurred_utc: str | None = None
    parts = [BINARY_SIGNATURE]
    for r in records:
        if r.occurred_at != last_at:  # one commit time for every record of a transaction
            last_at = r.occurred_at
            occurred_utc = iso_utc_text(last_at) if type(last_at) is str else None
        occurred = _utc_micros(occurred_utc)
        xid = None if r.xid is None else _binary_number(r.xid, _INT8_MAX)
        if type(r.commit_lsn) is not str or not (lsn := _LSN_TEXT.fullmatch(r.commit_lsn)):
            raise _NotBinary
        seq = _binary_number(r.seq, _INT4_MAX)
        row = [
            field_count,
            _INT8.pack(8, occurred),
            *(_binary_text(value) for value in r[1:11]),  # source ... actor_id
            *(
                _binary_text(value, bool(jsonb >> i & 1))
                for i, value in enumerate(r[11:15])  # the documents
            ),
            _binary_text(r.summary),
            _NULL if xid is None else _INT8.pack(8, xid),
            _UINT8.pack(8, int(lsn[1], 16) << 32 | int(lsn[2], 16)),
            _INT4.pack(4, seq),
        ]
        if head is not None:
            position += 1
            assert occurred_utc is not None
            digest = sha256(
                prev
                + canonical_text(
                    (
                        occurred_utc,
                        recorded_utc,
                        *r[1:16],
                        None if xid is None else str(xid),
                        r.commit_lsn,
                        str(seq),
                        str(position),
                    )
                )
            ).digest()
            row += (
                recorded,
                _INT8.pack(8, position),
                _LENGTH.pack(len(prev)) + prev,
                _LENGTH.pack(len(digest)) + digest,
            )
            prev = digest
        parts += row
    parts.append(BINARY_TRAILER)
    return b"".join(parts), None if head is None else ChainHead(prev, position)


@dataclass(frozen=True, slots=True)
class PreparedFlush:
    """A flush with its COPY data encoded (and chained from ``head``) and its rollup counts
    made ahead of the write, by the writer's encoder thread
    (:meth:`cdc.pipeline.sink.Sink.prepare`)."""

    flush: Flush
    # None: encoded at the write (dead letters, a time only the server reads)
    copy_data: str | bytes | None
    head: ChainHead | None  # the head the rows are chained from (None: chain off)
    moved: ChainHead | None  # the head after them
    rollups: dict[str, str] | None  # the rollup counts as array literals (rollups.py)
    binary: bool = False  # copy_data is binary COPY (encode_binary_rows), not text
