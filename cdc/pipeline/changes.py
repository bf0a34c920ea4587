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

Transactions arrive in commit order. An ordinary one (Begin … Commit) is committed work, so its
row changes are passed on the moment they are decoded. A *streamed* one (protocol 2+: blocks of
Stream Start … Stream Stop while it still runs, then Stream Commit or Stream Abort) is spilled
to disk (cdc.pipeline.spill) and replayed at its Stream Commit, so only committed work is ever
yielded
and memory does not grow with the transaction. Aborted subtransactions are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from cdc.errors import DecodeError
from cdc.pipeline.change_values import (
    Change,
    KeyLookup,
    RelationInfo,
    RowChange,
    TableTruncate,
    TransactionEnd,
    TransactionInfo,
    TransactionMessage,
    relation_info,
)
from cdc.pipeline.core import compiled
from cdc.pipeline.pgoutput import (
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
    decode_message,
)
from cdc.pipeline.spill import SpilledTransaction, SpillStore

# The stage's values (cdc.pipeline.change_values) are imported from here too.
__all__ = [
    "IN_MEMORY_MESSAGES",
    "Change",
    "ChangeAssembler",
    "KeyLookup",
    "RelationInfo",
    "RowChange",
    "TableTruncate",
    "TransactionEnd",
    "TransactionInfo",
    "TransactionMessage",
    "relation_info",
    "resolve_unchanged_toast",
]


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


# Decoded messages of an open ordinary transaction kept in memory; the rest go to disk. The
# server streams large transactions itself (decoding_work_mem), but may not (a transaction it
# cannot stream yet, an older server): memory must not depend on it.
IN_MEMORY_MESSAGES = 10_000


@dataclass(slots=True)
class _OpenTransaction:
    xid: int
    commit_lsn: int
    commit_time: datetime
    messages: list[PgOutputMessage] = field(default_factory=list)
    overflow: SpilledTransaction | None = None  # raw payloads after IN_MEMORY_MESSAGES

    def add(self, message: PgOutputMessage, payload: bytes, spill_dir: str | None) -> None:
        if len(self.messages) < IN_MEMORY_MESSAGES or not payload:
            self.messages.append(message)
            return
        if self.overflow is None:
            self.overflow = SpilledTransaction(spill_dir)
        self.overflow.append(self.xid, payload)

    def all_messages(self, only: frozenset[int] | None = None) -> Iterator[PgOutputMessage]:
        """In arrival order; ``only``: type bytes to decode from the overflow (a pre-scan)."""
        yield from self.messages
        if self.overflow is not None:
            for payload in self.overflow.replay():
                if only is None or payload[0] in only:
                    yield decode_message(payload)

    def close(self) -> None:
        if self.overflow is not None:
            self.overflow.close()


# The messages that make changes, and those that only describe a transaction.
_DATA = (Insert, Update, Delete, Truncate, Relation, Message, Origin, Type)
_ROWS = frozenset((Insert, Update, Delete))


class ChangeAssembler:
    """Feed decoded messages in stream order with :meth:`feed`; iterate the changes it yields.

    A transaction's changes are yielded when it commits, after everything in it has been seen:
    so its logical messages (transaction context, cutover markers) are known before its first
    change is mapped, whichever statement emitted them. Ordinary transactions are held in memory
    until their Commit; the replication session's ``logical_decoding_work_mem`` (see
    cdc.pipeline.stream) makes the server stream anything larger, and streamed transactions are
    held on
    disk (cdc.pipeline.spill). Either way memory stays bounded.

    ``skip_through_lsn``: transactions whose commit LSN is at or below it are skipped (they were
    recorded before a restart; see the checkpoint in cdc.pipeline.sink).
    """

    def __init__(
        self,
        key_lookup: KeyLookup,
        *,
        skip_through_lsn: int = 0,
        spill: SpillStore | None = None,
    ) -> None:
        self.relations: dict[int, RelationInfo] = {}
        self._key_lookup = key_lookup
        self.skip_through_lsn = skip_through_lsn
        self._open: _OpenTransaction | None = None
        self._skipping = False
        self._seq = 0
        self._stream_xid: int | None = None  # inside Stream Start … Stream Stop
        self.spill = spill if spill is not None else SpillStore()
        self.skipped_transactions = 0
        self.streamed_transactions = 0

    @property
    def in_transaction(self) -> bool:
        """Inside a transaction or a stream block: not a point where nothing is in flight."""
        return self._open is not None or self._skipping or self._stream_xid is not None

    @property
    def open_streamed_transactions(self) -> int:
        return len(self.spill)

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

    def feed(self, message: PgOutputMessage, payload: bytes = b"") -> Iterable[Change]:
        """The changes a message completes. ``payload`` (the message's bytes) is needed only
        inside a stream block, where messages are spilled rather than decoded into changes.

        The Commit of a transaction held in memory gives its changes as a list, made at once
        (the messages are in memory already: no generator resumed per change); any other
        message gives a generator, run as it is iterated."""
        open_txn = self._open
        if (
            type(message) is Commit
            and open_txn is not None
            and open_txn.overflow is None
            and self._stream_xid is None
        ):
            assert isinstance(message, Commit)
            return self._commit_in_memory(open_txn, message)
        return self._feed(message, payload)

    def _feed(self, message: PgOutputMessage, payload: bytes) -> Iterator[Change]:
        kind = type(message)
        if self._stream_xid is not None and kind is not StreamStop:
            self._spill(message, payload)
            return
        open_txn = self._open
        if open_txn is not None:
            if kind is Commit:
                assert isinstance(message, Commit)
                yield from self._commit(open_txn, message)
            elif kind in _DATA:
                open_txn.add(message, payload, self.spill.spill_dir)
            else:
                raise DecodeError(kind.__name__, "(message)", 0, "inside an open transaction")
            return
        if self._skipping:
            if kind is Commit:
                self._skipping = False
            elif kind is Relation:
                # Not sent again for later transactions: the cache must follow it anyway.
                assert isinstance(message, Relation)
                self._describe(message)
            return
        if kind is Begin:
            assert isinstance(message, Begin)
            if message.final_lsn <= self.skip_through_lsn:
                self._skipping = True
                self.skipped_transactions += 1
            else:
                self._open = _OpenTransaction(message.xid, message.final_lsn, message.commit_time)
        elif kind is Relation:
            assert isinstance(message, Relation)
            self._describe(message)
        elif kind is Message:
            assert isinstance(message, Message)
            if message.transactional:
                raise DecodeError(
                    "Message", "flags", 1, "transactional message outside a transaction"
                )
            if message.lsn > self.skip_through_lsn:
                yield TransactionMessage(None, 0, message.prefix, message.content, message.lsn)
        elif kind is StreamStart:
            assert isinstance(message, StreamStart)
            self._stream_xid = message.xid
            self.spill.start(message.xid, message.first_segment)
        elif kind is StreamStop:
            if self._stream_xid is None:
                raise DecodeError(
                    "StreamStop", "(message)", 0, "Stream Stop outside a stream block"
                )
            self._stream_xid = None
        elif kind is StreamCommit:
            assert isinstance(message, StreamCommit)
            yield from self._stream_commit(message)
        elif kind is StreamAbort:
            assert isinstance(message, StreamAbort)
            self.spill.abort(message.xid, message.subxid)
        elif kind is Type or kind is Origin:
            pass
        elif kind is Insert or kind is Update or kind is Delete or kind is Truncate:
            raise DecodeError(kind.__name__, "(message)", 0, "row change outside a transaction")
        elif kind is Commit:
            raise DecodeError("Commit", "(message)", 0, "Commit outside a transaction")
        else:
            raise DecodeError(
                kind.__name__, "(message)", 0, "two-phase messages were not requested"
            )

    def _py_feed_quiet(self, message: PgOutputMessage, payload: bytes) -> bool:
        """The messages that complete nothing, taken without a generator: an Insert, Update
        or Delete of an open ordinary transaction joins it (its change is made at the
        Commit); a Begin with nothing open, outside a stream block, of a transaction not yet
        recorded (past ``skip_through_lsn``) opens it. False, nothing done, for any other
        message (:meth:`feed` takes it, as it takes these when given them). The reference of
        the compiled one (_assembly.pxi), bound below as ``feed_quiet``."""
        if self._stream_xid is not None:
            return False
        open_txn, kind = self._open, type(message)
        if open_txn is None:
            if kind is not Begin or self._skipping:
                return False
            assert isinstance(message, Begin)
            if message.final_lsn <= self.skip_through_lsn:
                return False
            self._open = _OpenTransaction(message.xid, message.final_lsn, message.commit_time)
            return True
        if kind not in _ROWS:
            return False
        open_txn.add(message, payload, self.spill.spill_dir)
        return True

    feed_quiet = _py_feed_quiet

    def _describe(self, message: Relation) -> None:
        self.relations[message.relation_id] = relation_info(message, self._key_lookup)

    def _commit_in_memory(self, open_txn: _OpenTransaction, message: Commit) -> list[Change]:
        """All in memory: the changes and the TransactionEnd, compiled where built."""
        self._open = None
        _same_commit_lsn(open_txn, message)
        messages = open_txn.messages
        txn = _info_in_memory(open_txn.xid, message.commit_lsn, message.commit_time, messages)
        return _replay_in_memory(self, txn, messages, message.end_lsn)

    def _commit(self, open_txn: _OpenTransaction, message: Commit) -> Iterator[Change]:
        """A transaction that overflowed to disk (feed takes the others' Commit)."""
        self._open = None
        try:
            _same_commit_lsn(open_txn, message)  # failing, it still closes the overflow
            txn = _transaction_info(
                open_txn.xid,
                message.commit_lsn,
                message.commit_time,
                open_txn.all_messages(_DESCRIBING),
            )
            yield from self._replay(txn, open_txn.all_messages())
            yield TransactionEnd(txn, message.end_lsn, self._seq)
        finally:
            open_txn.close()

    def _spill(self, message: PgOutputMessage, payload: bytes) -> None:
        stream_xid = self._stream_xid
        assert stream_xid is not None
        kind = type(message)
        if kind is StreamStart or kind is StreamCommit or kind is StreamAbort or kind is Begin:
            raise DecodeError(kind.__name__, "(message)", 0, "inside an unfinished stream block")
        if not payload:
            raise AssertionError("a message inside a stream block needs its payload to spill")
        subxid = getattr(message, "xid", None)
        self.spill.append(stream_xid, stream_xid if subxid is None else subxid, payload)

    def _stream_commit(self, message: StreamCommit) -> Iterator[Change]:
        if self._open is not None or self._skipping:
            raise DecodeError("StreamCommit", "(message)", 0, "Stream Commit inside a transaction")
        spilled = self.spill.take(message.xid)
        try:
            if message.commit_lsn <= self.skip_through_lsn:
                self.skipped_transactions += 1
                return
            self.streamed_transactions += 1
            if spilled is None:
                txn = TransactionInfo(message.xid, message.commit_lsn, message.commit_time)
            else:
                # First pass: only the few messages that describe the transaction.
                described = (
                    decode_message(payload, in_stream=True)
                    for payload in spilled.replay()
                    if payload[0] in _DESCRIBING
                )
                txn = _transaction_info(
                    message.xid, message.commit_lsn, message.commit_time, described
                )
                # Second pass: everything, as if the transaction were an ordinary one; Relation
                # messages update the cache here, in commit order, not when they were streamed.
                yield from self._replay(
                    txn,
                    (decode_message(payload, in_stream=True) for payload in spilled.replay()),
                )
            yield TransactionEnd(txn, message.end_lsn, self._seq)
        finally:
            if spilled is not None:
                spilled.close()

    def _replay(
        self, txn: TransactionInfo, messages: Iterable[PgOutputMessage]
    ) -> Iterator[Change]:
        """The changes of one committed transaction, from its messages in order."""
        self._seq = 0
        for message in messages:
            kind = type(message)
            if kind is Insert or kind is Update or kind is Delete:
                yield self._row_change(txn, message)  # type: ignore[arg-type]
            elif kind is Relation:
                assert isinstance(message, Relation)
                self._describe(message)
            elif kind is Truncate:
                assert isinstance(message, Truncate)
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
                yield TransactionMessage(
                    txn, self._seq, message.prefix, message.content, message.lsn
                )
                self._seq += 1

    def _py_replay_in_memory(
        self, txn: TransactionInfo, messages: list[PgOutputMessage], end_lsn: int
    ) -> list[Change]:
        """:meth:`_replay` of a transaction held in memory and its end, as a list; the
        reference of cdc/pipeline/_core.pyx's ``replay`` (bounded like its messages)."""
        return [*self._replay(txn, messages), TransactionEnd(txn, end_lsn, self._seq)]

    def _row_change(self, txn: TransactionInfo, message: Insert | Update | Delete) -> RowChange:
        relation = self._relation(message.relation_id, type(message).__name__)
        seq = self._seq
        self._seq = seq + 1
        if type(message) is Insert:
            new = message.new
            if _has_unchanged_toast(new):  # cannot happen for inserts, but never store it
                new, unavailable = resolve_unchanged_toast(relation, new, None, False)
                return RowChange(txn, seq, relation, "insert", None, new, None, unavailable)
            return RowChange(txn, seq, relation, "insert", None, new)
        if type(message) is Update:
            assert isinstance(message, Update)
            new = message.new
            if _has_unchanged_toast(new):
                new, unavailable = resolve_unchanged_toast(
                    relation, new, message.old, message.old_kind == "O"
                )
                return RowChange(
                    txn, seq, relation, "update", message.old, new, message.old_kind, unavailable
                )
            return RowChange(txn, seq, relation, "update", message.old, new, message.old_kind)
        assert isinstance(message, Delete)
        return RowChange(txn, seq, relation, "delete", message.old, None, message.old_kind)


def _same_commit_lsn(open_txn: _OpenTransaction, message: Commit) -> None:
    if message.commit_lsn != open_txn.commit_lsn:
        raise DecodeError(
            "Commit",
            "commit_lsn",
            2,
            f"commit LSN {message.commit_lsn:X} does not match Begin's {open_txn.commit_lsn:X}",
        )


def _py_has_unchanged_toast(values: TupleData) -> bool:
    return UNCHANGED_TOAST in values


# ``in`` compares each column with the placeholder (~1 µs for a 20-column row); the compiled
# core (cdc.pipeline.core) tests identity only.
_has_unchanged_toast: Callable[[TupleData], bool] = (
    compiled.has_unchanged_toast if compiled is not None else _py_has_unchanged_toast
)

if compiled is not None:  # a change joins its transaction (a Begin opens one) in C
    ChangeAssembler.feed_quiet = compiled.feed_quiet

_replay_in_memory: Callable[
    [ChangeAssembler, TransactionInfo, list[PgOutputMessage], int], list[Change]
] = compiled.replay if compiled is not None else ChangeAssembler._py_replay_in_memory

# Type bytes of the messages that describe a transaction rather than change rows.
_DESCRIBING = frozenset(b"MO")


def _transaction_info(
    xid: int, commit_lsn: int, commit_time: datetime, messages: Iterable[PgOutputMessage]
) -> TransactionInfo:
    origin = None
    logical: list[Message] = []
    for message in messages:
        kind = type(message)
        if kind is Message:
            assert isinstance(message, Message)
            logical.append(message)
        elif kind is Origin:
            assert isinstance(message, Origin)
            origin = message.name
    return TransactionInfo(xid, commit_lsn, commit_time, origin, tuple(logical))


_Info = Callable[[int, int, datetime, list[PgOutputMessage]], TransactionInfo]
# _transaction_info over a transaction held in memory (cdc/pipeline/_core.pyx where built)
_info_in_memory: _Info = compiled.transaction_info if compiled is not None else _transaction_info
