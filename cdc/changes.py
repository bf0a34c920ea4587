"""Changes: pgoutput messages grouped into committed transactions of row changes.

This stage is pure: it receives decoded messages and yields :class:`RowChange`,
:class:`TableTruncate`, :class:`TransactionMessage` and :class:`TransactionEnd` values.
It owns

* the relation cache: a Relation message replaces the cached definition, so each change is
  read with the column set that was current when it was written (ALTER TABLE mid-stream);
* transaction boundaries and the skip rule: a transaction whose commit LSN is at or below the
  checkpoint was recorded before a restart and is skipped whole;
* unchanged TOAST values: a new row's ``'u'`` column takes the old row's value when the old
  row carries it (REPLICA IDENTITY FULL); otherwise the column is reported as unavailable and
  never stored as if the placeholder were its value.

Without streaming (protocol version 1) pgoutput only sends committed transactions, so every
row change can be passed on the moment it is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from cdc.errors import DecodeError
from cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputMessage,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    Type,
    Update,
)

# (schema, table) -> primary key column names, from the catalog (None: no primary key)
KeyLookup = Callable[[str, str], tuple[str, ...] | None]


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
    key = key_lookup(message.namespace, message.relation_name)
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


@dataclass(frozen=True, slots=True)
class RowChange:
    """One committed INSERT, UPDATE or DELETE of one row."""

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


def resolve_unchanged_toast(
    relation: RelationInfo, new: TupleData, old: TupleData | None, old_is_full_row: bool
) -> tuple[TupleData, tuple[str, ...]]:
    """Replace 'u' placeholders of the new row with old-row values where the old row has them."""
    values = list(new)
    unavailable = []
    for index, value in enumerate(values):
        if value is UNCHANGED_TOAST:
            old_value = old[index] if old is not None and old_is_full_row else UNCHANGED_TOAST
            if old_value is UNCHANGED_TOAST:
                unavailable.append(relation.column_names[index])
            else:
                values[index] = old_value
    return tuple(values), tuple(unavailable)


class ChangeAssembler:
    """Feed decoded messages in stream order with :meth:`feed`; iterate the changes it yields.

    ``skip_through_lsn``: transactions whose commit LSN is at or below it are skipped (they were
    recorded before a restart; see the checkpoint in cdc.sink).
    """

    def __init__(self, key_lookup: KeyLookup, *, skip_through_lsn: int = 0) -> None:
        self.relations: dict[int, RelationInfo] = {}
        self._key_lookup = key_lookup
        self.skip_through_lsn = skip_through_lsn
        self._transaction: TransactionInfo | None = None
        self._skipping = False
        self._seq = 0
        self.skipped_transactions = 0

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None or self._skipping

    def _relation(self, relation_id: int, kind: str) -> RelationInfo:
        try:
            return self.relations[relation_id]
        except KeyError:
            raise DecodeError(
                kind,
                "relation_id",
                1,
                f"relation {relation_id} was never described by a Relation message in this stream",
            ) from None

    def _current(self, kind: str) -> TransactionInfo:
        if self._transaction is None:
            raise DecodeError(kind, "(message)", 0, "row change outside a transaction")
        return self._transaction

    def feed(self, message: PgOutputMessage) -> Iterator[Change]:
        # Ordered by frequency: row changes first.
        kind = type(message)
        if kind is Insert or kind is Update or kind is Delete:
            if self._skipping:
                return
            yield self._row_change(message)  # type: ignore[arg-type]
        elif kind is Begin:
            assert isinstance(message, Begin)
            if self.in_transaction:
                raise DecodeError("Begin", "(message)", 0, "Begin inside an open transaction")
            if message.final_lsn <= self.skip_through_lsn:
                self._skipping = True
                self.skipped_transactions += 1
            else:
                self._transaction = TransactionInfo(
                    message.xid, message.final_lsn, message.commit_time
                )
            self._seq = 0
        elif kind is Commit:
            assert isinstance(message, Commit)
            if self._skipping:
                self._skipping = False
                return
            txn = self._current("Commit")
            if message.commit_lsn != txn.commit_lsn:
                raise DecodeError(
                    "Commit",
                    "commit_lsn",
                    2,
                    f"commit LSN {message.commit_lsn:X} does not match Begin's {txn.commit_lsn:X}",
                )
            self._transaction = None
            yield TransactionEnd(txn, message.end_lsn, self._seq)
        elif kind is Relation:
            assert isinstance(message, Relation)
            self.relations[message.relation_id] = relation_info(message, self._key_lookup)
        elif kind is Truncate:
            assert isinstance(message, Truncate)
            if self._skipping:
                return
            txn = self._current("Truncate")
            for relation_id in message.relation_ids:
                yield TableTruncate(
                    txn,
                    self._seq,
                    self._relation(relation_id, "Truncate"),
                    message.cascade,
                    message.restart_identity,
                )
                self._seq += 1
        elif kind is Message:
            assert isinstance(message, Message)
            if message.transactional:
                if self._skipping:
                    return
                txn = self._current("Message")
                yield TransactionMessage(
                    txn, self._seq, message.prefix, message.content, message.lsn
                )
                self._seq += 1
            else:
                yield TransactionMessage(None, 0, message.prefix, message.content, message.lsn)
        elif kind is Origin:
            assert isinstance(message, Origin)
            if self._transaction is not None:
                txn = self._transaction
                self._transaction = TransactionInfo(
                    txn.xid, txn.commit_lsn, txn.commit_time, message.name
                )
        elif kind is Type:
            pass  # type names are not needed: values arrive in their text form
        elif kind in (StreamStart, StreamStop, StreamCommit, StreamAbort):
            raise DecodeError(
                kind.__name__,
                "(message)",
                0,
                "streamed transactions were not requested (protocol version 1)",
            )
        else:
            raise DecodeError(
                kind.__name__, "(message)", 0, "two-phase messages were not requested"
            )

    def _row_change(self, message: Insert | Update | Delete) -> RowChange:
        txn = self._transaction
        if txn is None:
            raise DecodeError(
                type(message).__name__, "(message)", 0, "row change outside a transaction"
            )
        relation = self._relation(message.relation_id, type(message).__name__)
        seq = self._seq
        self._seq = seq + 1
        if type(message) is Insert:
            new = message.new
            if UNCHANGED_TOAST in new:  # cannot happen for inserts, but never store it
                new, unavailable = resolve_unchanged_toast(relation, new, None, False)
                return RowChange(txn, seq, relation, "insert", None, new, None, unavailable)
            return RowChange(txn, seq, relation, "insert", None, new)
        if type(message) is Update:
            assert isinstance(message, Update)
            new = message.new
            if UNCHANGED_TOAST in new:
                new, unavailable = resolve_unchanged_toast(
                    relation, new, message.old, message.old_kind == "O"
                )
                return RowChange(
                    txn, seq, relation, "update", message.old, new, message.old_kind, unavailable
                )
            return RowChange(txn, seq, relation, "update", message.old, new, message.old_kind)
        assert isinstance(message, Delete)
        return RowChange(txn, seq, relation, "delete", message.old, None, message.old_kind)
