"""The activity records as COPY text lines: plain (:data:`~cdc.pipeline.activity.RECORD_COLUMNS`)
or chained (:data:`CHAINED_COLUMNS`: each line carries its position in the hash chain, the
hash of the line before and its own, over exactly the text it sends; cdc.store.chain).

:func:`encode_chained_rows` is compiled (cdc/pipeline/_copy_lines.pyx) where it was built;
:func:`_py_encode_chained_rows` is the reference of the row format. Pure: no I/O; the sink
(cdc.pipeline.sink) sends what these return, made ahead of its write in a :class:`PreparedFlush`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True, slots=True)
class PreparedFlush:
    """A flush with its COPY text encoded (and chained from ``head``) and its rollup counts
    made ahead of the write, by the writer's encoder thread
    (:meth:`cdc.pipeline.sink.Sink.prepare`)."""

    flush: Flush
    # None: encoded at the write (dead letters, a time only the server reads)
    copy_data: str | bytes | None
    head: ChainHead | None  # the head the lines are chained from (None: chain off)
    moved: ChainHead | None  # the head after them
    rollups: dict[str, str] | None  # the rollup counts as array literals (rollups.py)
