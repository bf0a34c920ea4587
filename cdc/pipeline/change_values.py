"""The values the change assembly (cdc.pipeline.changes) passes on: a table's definition as
the stream described it (:class:`RelationInfo`), a committed transaction
(:class:`TransactionInfo`), and the changes it yields for each: :class:`RowChange`,
:class:`TableTruncate`, :class:`TransactionMessage`, :class:`TransactionEnd`.

Plain slots dataclasses, made in the hot path once per change (cdc/pipeline/_core.pyx builds
``RowChange`` slot by slot, as its ``__init__`` would).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cdc.pipeline.pgoutput import Message, Relation, TupleData

# (relation id, schema, table) -> primary key column names, from the catalog (None: no primary
# key). By relation id first, so that a renamed table keeps its key.
KeyLookup = Callable[[int, str, str], tuple[str, ...] | None]


@dataclass(frozen=True, slots=True)
class RelationInfo:
    """One version of a table's definition, as the stream described it."""

    relation_id: int
    schema: str
    table: str
    replica_identity: str
    column_names: tuple[str, ...]
    type_oids: tuple[int, ...]
    key_columns: tuple[str, ...] | None
    # positions of key_columns in column_names (None: no key)
    key_positions: tuple[int, ...] | None = field(default=None)


def relation_info(message: Relation, key_lookup: KeyLookup) -> RelationInfo:
    names = tuple(column.name for column in message.columns)
    key = key_lookup(message.relation_id, message.namespace, message.relation_name)
    if key is None and message.replica_identity != "f":
        # Under DEFAULT/INDEX identity the flagged columns are the identity key; under FULL
        # every column is flagged, which is not a key.
        flagged = tuple(column.name for column in message.columns if column.is_key)
        key = flagged or None
    positions = None
    if key is not None and all(name in names for name in key):
        positions = tuple(names.index(name) for name in key)
    else:
        key = None
    return RelationInfo(
        relation_id=message.relation_id,
        schema=message.namespace,
        table=message.relation_name,
        replica_identity=message.replica_identity,
        column_names=names,
        type_oids=tuple(column.type_oid for column in message.columns),
        key_columns=key,
        key_positions=positions,
    )


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    xid: int
    commit_lsn: int
    commit_time: datetime
    origin: str | None = None
    # Every transactional logical message of the transaction, in order: known before the
    # first change is mapped (transaction context, cutover markers, application events).
    messages: tuple[Message, ...] = ()


@dataclass(slots=True)
class RowChange:
    """One committed INSERT, UPDATE or DELETE of one row.

    Read-only by convention but not ``frozen``: one is built per row change, and a frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` per field) cost 1.5 µs of the ~7 µs
    the assembler spends per change (bench/hot_path.py)."""

    transaction: TransactionInfo
    seq: int  # order of the change within its transaction, from 0
    relation: RelationInfo
    operation: str  # 'insert' | 'update' | 'delete'
    old: TupleData | None
    new: TupleData | None
    # 'O': old is the whole old row (REPLICA IDENTITY FULL); 'K': only its key columns carry
    # values; None: no old row was sent
    old_kind: str | None = None
    # columns whose value the stream did not carry (unchanged TOAST without an old row)
    unavailable: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TableTruncate:
    transaction: TransactionInfo
    seq: int
    relation: RelationInfo
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class TransactionMessage:
    """A logical message (pg_logical_emit_message); ``transaction`` is None when it is not
    transactional."""

    transaction: TransactionInfo | None
    seq: int
    prefix: str
    content: bytes
    lsn: int


@dataclass(frozen=True, slots=True)
class TransactionEnd:
    """The commit of a transaction whose changes were all yielded before it."""

    transaction: TransactionInfo
    end_lsn: int
    changes: int  # how many changes and messages the transaction yielded


Change = RowChange | TableTruncate | TransactionMessage | TransactionEnd
