"""Builders shared by the unit tests: pgoutput messages, whole transactions, activity records.

Everything here builds plain values with the dataclasses of cdc.pipeline.pgoutput and the record
type
of cdc.pipeline.activity; nothing decodes bytes or touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.changes import Change, ChangeAssembler
from cdc.pipeline.pgoutput import Begin, Commit, PgOutputMessage, Relation, RelationColumn

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

TEXT = 25
INT4 = 23
TIMESTAMPTZ = 1184

# A column is either a bare name (text) or (name, type OID).
ColumnSpec = str | tuple[str, int]


def relation(
    relation_id: int,
    table: str,
    columns: Sequence[ColumnSpec],
    *,
    schema: str = "public",
    identity: str = "f",
    key: Sequence[str] = (),
) -> Relation:
    """A Relation message. Under identity 'f' every column carries the key flag, as the server
    sends it; otherwise only the columns named in ``key``."""
    built = []
    for spec in columns:
        name, oid = (spec, TEXT) if isinstance(spec, str) else spec
        flagged = identity == "f" or name in key
        built.append(
            RelationColumn(flags=1 if flagged else 0, name=name, type_oid=oid, type_modifier=-1)
        )
    return Relation(relation_id, schema, table, identity, tuple(built))


def begin(final_lsn: int, xid: int = 700, commit_time: datetime = T0) -> Begin:
    return Begin(final_lsn=final_lsn, commit_time=commit_time, xid=xid)


def commit(commit_lsn: int, end_lsn: int | None = None, commit_time: datetime = T0) -> Commit:
    end = commit_lsn + 0x30 if end_lsn is None else end_lsn
    return Commit(flags=0, commit_lsn=commit_lsn, end_lsn=end, commit_time=commit_time)


def transaction(
    final_lsn: int, *body: PgOutputMessage, xid: int = 700, end_lsn: int | None = None
) -> list[PgOutputMessage]:
    """Begin, the body, Commit: one committed transaction as pgoutput sends it."""
    return [begin(final_lsn, xid), *body, commit(final_lsn, end_lsn)]


def feed_all(assembler: ChangeAssembler, messages: Iterable[PgOutputMessage]) -> list[Change]:
    changes: list[Change] = []
    for message in messages:
        changes.extend(assembler.feed(message))
    return changes


def no_keys(_relation_id: int, _schema: str, _table: str) -> tuple[str, ...] | None:
    return None


def record(number: int, *, xid: int | None = 1, text: str = "") -> ActivityRecord:
    """A distinct activity record; ``number`` makes it unique (it is the seq and entity id)."""
    return ActivityRecord(
        occurred_at=T0.isoformat(),
        source="database",
        operation="insert",
        action="user.insert",
        category="data_change",
        severity="info",
        schema_name="public",
        table_name="users",
        entity_type="user",
        entity_id=str(number),
        actor_id=None,
        context=None,
        old=None,
        new='{"id":' + str(number) + "}",
        changes=None,
        summary=f"user {number} created{text}",
        xid=xid,
        commit_lsn="0/16B3748",
        seq=number,
    )
