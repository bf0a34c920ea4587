"""Change assembly (cdc.pipeline.changes): decoded pgoutput messages → committed row changes.

Messages are built with the dataclasses of cdc.pipeline.pgoutput (tests/unit/messages.py) and fed
to a
ChangeAssembler in stream order; results are compared as whole values.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.config import settings_from_mapping
from cdc.errors import DecodeError
from cdc.pipeline.activity import ActivityMapper
from cdc.pipeline.changes import (
    ChangeAssembler,
    RowChange,
    TableTruncate,
    TransactionEnd,
    TransactionInfo,
    TransactionMessage,
    relation_info,
)
from cdc.pipeline.pgoutput import (
    UNCHANGED_TOAST,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputMessage,
    Relation,
    RelationColumn,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
)
from tests.unit.messages import (
    INT4,
    T0,
    begin,
    commit,
    feed_all,
    no_keys,
    relation,
    transaction,
)
from tests.unit.pgoutput_encoder import encode

USERS = relation(16401, "users", [("id", INT4), "email", "bio"])
ORDERS = relation(16402, "orders", [("id", INT4), "total"])
PK = {("public", "users"): ("id",), ("public", "orders"): ("id",)}


def pk_lookup(relation_id: int, schema: str, table: str) -> tuple[str, ...] | None:
    return PK.get((schema, table))


def assembler(skip_through_lsn: int = 0) -> ChangeAssembler:
    return ChangeAssembler(pk_lookup, skip_through_lsn=skip_through_lsn)


def run(*messages: PgOutputMessage, skip_through_lsn: int = 0) -> list[object]:
    return list(feed_all(assembler(skip_through_lsn), messages))


# -- transactions of row changes ----------------------------------------------------------------


def test_insert_update_delete_become_row_changes_in_order_then_the_transaction_end() -> None:
    changes = run(
        USERS,
        *transaction(
            0x1000,
            Insert(USERS.relation_id, ("1", "a@x", "hi")),
            Update(USERS.relation_id, ("1", "b@x", "hi"), ("1", "a@x", "hi"), "O"),
            Delete(USERS.relation_id, ("1", "b@x", "hi"), "O"),
            xid=901,
            end_lsn=0x1040,
        ),
    )
    users = relation_info(USERS, pk_lookup)
    txn = TransactionInfo(xid=901, commit_lsn=0x1000, commit_time=T0)
    assert changes == [
        RowChange(txn, 0, users, "insert", None, ("1", "a@x", "hi")),
        RowChange(txn, 1, users, "update", ("1", "a@x", "hi"), ("1", "b@x", "hi"), "O"),
        RowChange(txn, 2, users, "delete", ("1", "b@x", "hi"), None, "O"),
        TransactionEnd(txn, end_lsn=0x1040, changes=3),
    ]


def test_seq_starts_again_at_zero_in_the_next_transaction() -> None:
    changes = run(
        USERS,
        *transaction(0x1000, Insert(USERS.relation_id, ("1", "a", None))),
        *transaction(0x2000, Insert(USERS.relation_id, ("2", "b", None)), xid=702),
    )
    rows = [c for c in changes if isinstance(c, RowChange)]
    assert [(r.transaction.commit_lsn, r.seq) for r in rows] == [(0x1000, 0), (0x2000, 0)]
    ends = [c for c in changes if isinstance(c, TransactionEnd)]
    assert [(e.transaction.xid, e.changes) for e in ends] == [(700, 1), (702, 1)]


def test_empty_transaction_yields_only_its_end() -> None:
    assert run(*transaction(0x500, end_lsn=0x530)) == [
        TransactionEnd(TransactionInfo(700, 0x500, T0), 0x530, 0)
    ]


def test_insert_reads_with_the_relation_columns_and_key() -> None:
    (change, _end) = run(USERS, *transaction(0x10, Insert(USERS.relation_id, ("7", "e", "b"))))
    assert isinstance(change, RowChange)
    assert change.relation.column_names == ("id", "email", "bio")
    assert change.relation.type_oids == (INT4, 25, 25)
    assert change.relation.key_columns == ("id",)
    assert change.relation.key_positions == (0,)


# -- relation cache ---------------------------------------------------------------------------


def test_new_relation_message_replaces_the_definition_for_later_changes_only() -> None:
    altered = relation(USERS.relation_id, "users", [("id", INT4), "email", "bio", "phone"])
    changes = run(
        USERS,
        *transaction(0x100, Insert(USERS.relation_id, ("1", "a", "b"))),
        altered,
        *transaction(0x200, Insert(USERS.relation_id, ("2", "c", "d", "555"))),
    )
    first, second = (c for c in changes if isinstance(c, RowChange))
    assert first.relation.column_names == ("id", "email", "bio")
    assert second.relation.column_names == ("id", "email", "bio", "phone")


def test_relation_replaced_inside_a_transaction_applies_from_that_point() -> None:
    renamed = relation(USERS.relation_id, "users", [("id", INT4), "mail", "bio"])
    changes = run(
        USERS,
        *transaction(
            0x100,
            Insert(USERS.relation_id, ("1", "a", "b")),
            renamed,
            Insert(USERS.relation_id, ("2", "c", "d")),
        ),
    )
    first, second = (c for c in changes if isinstance(c, RowChange))
    assert first.relation.column_names[1] == "email"
    assert second.relation.column_names[1] == "mail"
    assert (first.seq, second.seq) == (0, 1)


def test_relation_sent_inside_a_skipped_transaction_is_still_remembered() -> None:
    changes = run(
        *transaction(0x100, USERS, Insert(USERS.relation_id, ("1", "a", "b"))),
        *transaction(0x200, Insert(USERS.relation_id, ("2", "c", "d"))),
        skip_through_lsn=0x100,
    )
    (row,) = (c for c in changes if isinstance(c, RowChange))
    assert row.new == ("2", "c", "d")
    assert row.relation.table == "users"


# -- unchanged TOAST ----------------------------------------------------------------------------


def test_update_with_unchanged_toast_takes_value_from_old_row() -> None:
    old = ("1", "a@x", "a very long biography")
    (change, _end) = run(
        USERS,
        *transaction(0x10, Update(USERS.relation_id, ("1", "b@x", UNCHANGED_TOAST), old, "O")),
    )
    assert isinstance(change, RowChange)
    assert change.new == ("1", "b@x", "a very long biography")
    assert change.unavailable == ()


@pytest.mark.parametrize(
    ("old", "old_kind"),
    [
        (None, None),  # REPLICA IDENTITY DEFAULT, key unchanged: no old row
        (("1", None, None), "K"),  # key changed: only key columns carry values
        (("1", "a@x", UNCHANGED_TOAST), "O"),  # even the old row lacks it
    ],
    ids=["no-old-row", "key-only-old-row", "old-row-without-it"],
)
def test_update_with_unchanged_toast_and_no_old_value_lists_the_column_as_unavailable(
    old: tuple[object, ...] | None, old_kind: str | None
) -> None:
    update = Update(USERS.relation_id, ("1", "b@x", UNCHANGED_TOAST), old, old_kind)  # type: ignore[arg-type]
    (change, _end) = run(USERS, *transaction(0x10, update))
    assert isinstance(change, RowChange)
    assert change.unavailable == ("bio",)
    assert change.new is not None and change.new[:2] == ("1", "b@x")


def test_unavailable_toast_column_never_reaches_the_record_json() -> None:
    settings = settings_from_mapping(
        {"source": {"dsn": "host=x"}, "tables": [{"name": "public.users"}]}, env={}
    )
    (change, _end) = run(
        USERS, *transaction(0x10, Update(USERS.relation_id, ("1", "b@x", UNCHANGED_TOAST)))
    )
    record = ActivityMapper(settings).map(change)  # type: ignore[arg-type]
    assert record is not None and record.new is not None and record.context is not None
    assert json.loads(record.new) == {"id": 1, "email": "b@x"}
    assert json.loads(record.context) == {"unavailable_columns": ["bio"]}
    assert "UNCHANGED_TOAST" not in "".join(str(field) for field in record)


# -- skipping what was recorded before a restart --------------------------------------------------


def test_transactions_at_or_below_the_checkpoint_are_skipped_whole_and_counted() -> None:
    a = assembler(skip_through_lsn=0x200)
    changes = feed_all(
        a,
        [
            USERS,
            ORDERS,
            *transaction(0x100, Insert(USERS.relation_id, ("1", "a", "b")), xid=1),
            *transaction(
                0x200,
                Origin(0x200, "node_b"),
                Insert(USERS.relation_id, ("2", "a", "b")),
                Truncate((ORDERS.relation_id,), 0),
                Message(True, 0x1F0, "app", b"ctx"),
                xid=2,
            ),
            *transaction(0x201, Insert(USERS.relation_id, ("3", "a", "b")), xid=3),
        ],
    )
    assert a.skipped_transactions == 2
    assert [(type(c).__name__, c.transaction.xid) for c in changes] == [  # type: ignore[union-attr]
        ("RowChange", 3),
        ("TransactionEnd", 3),
    ]
    assert not a.in_transaction


@given(
    commit_lsns=st.lists(st.integers(1, 10_000), unique=True, max_size=12).map(sorted),
    skip_through=st.integers(0, 10_000),
)
def test_exactly_the_transactions_above_the_checkpoint_are_passed_on(
    commit_lsns: list[int], skip_through: int
) -> None:
    a = assembler(skip_through_lsn=skip_through)
    messages: list[PgOutputMessage] = [USERS]
    for xid, lsn in enumerate(commit_lsns):
        messages += transaction(lsn, Insert(USERS.relation_id, (str(xid), "e", "b")), xid=xid)
    ends = [c for c in feed_all(a, messages) if isinstance(c, TransactionEnd)]
    assert [e.transaction.commit_lsn for e in ends] == [n for n in commit_lsns if n > skip_through]
    assert a.skipped_transactions == sum(1 for n in commit_lsns if n <= skip_through)


# -- truncate, origin, logical messages ---------------------------------------------------------


def test_truncate_of_several_relations_yields_one_table_truncate_each_with_next_seq() -> None:
    changes = run(
        USERS,
        ORDERS,
        *transaction(
            0x300,
            Insert(USERS.relation_id, ("1", "a", "b")),
            Truncate((USERS.relation_id, ORDERS.relation_id), options=3),
            end_lsn=0x340,
        ),
    )
    txn = TransactionInfo(700, 0x300, T0)
    users, orders = relation_info(USERS, pk_lookup), relation_info(ORDERS, pk_lookup)
    assert changes[1:] == [
        TableTruncate(txn, 1, users, cascade=True, restart_identity=True),
        TableTruncate(txn, 2, orders, cascade=True, restart_identity=True),
        TransactionEnd(txn, 0x340, changes=3),
    ]


@pytest.mark.parametrize(
    ("options", "flags"), [(0, (False, False)), (1, (True, False)), (2, (False, True))]
)
def test_truncate_options_become_cascade_and_restart_identity(
    options: int, flags: tuple[bool, bool]
) -> None:
    (truncate, _end) = run(USERS, *transaction(0x10, Truncate((USERS.relation_id,), options)))
    assert isinstance(truncate, TableTruncate)
    assert (truncate.cascade, truncate.restart_identity) == flags


def test_origin_sets_the_origin_of_the_transaction() -> None:
    changes = run(
        USERS,
        begin(0x400, xid=5),
        Origin(0x3F0, "replica_eu"),
        Insert(USERS.relation_id, ("1", "a", "b")),
        commit(0x400, 0x440),
    )
    txn = TransactionInfo(5, 0x400, T0, origin="replica_eu")
    assert [c.transaction for c in changes] == [txn, txn]  # type: ignore[attr-defined]


def test_transactional_message_takes_a_seq_and_counts_as_a_change() -> None:
    changes = run(
        USERS,
        *transaction(
            0x500,
            Message(True, 0x4F0, "app.context", b'{"user": 1}'),
            Insert(USERS.relation_id, ("1", "a", "b")),
        ),
    )
    message = Message(True, 0x4F0, "app.context", b'{"user": 1}')
    txn = TransactionInfo(700, 0x500, T0, messages=(message,))
    assert changes[0] == TransactionMessage(txn, 0, "app.context", b'{"user": 1}', 0x4F0)
    assert isinstance(changes[1], RowChange) and changes[1].seq == 1
    assert changes[2] == TransactionEnd(txn, 0x530, changes=2)


def test_non_transactional_message_outside_a_transaction_has_no_transaction() -> None:
    assert run(Message(False, 0x600, "heartbeat", b"")) == [
        TransactionMessage(None, 0, "heartbeat", b"", 0x600)
    ]


def test_type_messages_are_ignored() -> None:
    assert run(Type(16500, "public", "mood")) == []


# -- keys -------------------------------------------------------------------------------------


def test_key_comes_from_the_key_lookup_under_replica_identity_full() -> None:
    full = relation(1, "users", [("id", INT4), "email"], identity="f")
    info = relation_info(full, lambda oid, s, t: ("id",) if (s, t) == ("public", "users") else None)
    assert (info.key_columns, info.key_positions) == (("id",), (0,))


def test_full_identity_without_a_primary_key_has_no_key_although_every_column_is_flagged() -> None:
    full = relation(1, "log", ["a", "b"], identity="f")
    assert all(column.is_key for column in full.columns)
    info = relation_info(full, no_keys)
    assert (info.key_columns, info.key_positions) == (None, None)


@pytest.mark.parametrize("identity", ["d", "i"])
def test_key_comes_from_the_flagged_columns_when_the_lookup_has_none(identity: str) -> None:
    rel = relation(
        1, "m", ["note", ("org", INT4), ("user", INT4)], identity=identity, key=("org", "user")
    )
    info = relation_info(rel, no_keys)
    assert (info.key_columns, info.key_positions) == (("org", "user"), (1, 2))


def test_key_lookup_naming_a_column_the_relation_lacks_gives_no_key() -> None:
    info = relation_info(relation(1, "users", ["email"]), lambda oid, s, t: ("id",))
    assert (info.key_columns, info.key_positions) == (None, None)


def test_key_lookup_is_asked_with_relation_id_schema_and_table_name() -> None:
    asked: list[tuple[int, str, str]] = []

    def lookup(relation_id: int, schema: str, table: str) -> tuple[str, ...] | None:
        asked.append((relation_id, schema, table))
        return None

    relation_info(relation(1, "t", ["a"], schema="sales"), lookup)
    assert asked == [(1, "sales", "t")]


# -- protocol violations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Insert(99, ("1",)),
        Update(99, ("1",)),
        Delete(99, ("1",), "K"),
        Truncate((USERS.relation_id, 99), 0),
    ],
    ids=["insert", "update", "delete", "truncate"],
)
def test_change_for_an_unknown_relation_id_raises_decode_error(message: PgOutputMessage) -> None:
    with pytest.raises(DecodeError, match="relation 99"):
        run(USERS, begin(0x10), message, commit(0x10))


def test_a_transaction_is_yielded_at_its_commit_with_all_its_messages_known() -> None:
    """Context messages apply to the changes made before them in the same transaction."""
    asm = assembler()
    before = list(feed_all(asm, [USERS, begin(0x700), Insert(16401, ("1", "a", None))]))
    context = Message(True, 0x6F0, "cdc.context", b'{"actor_id": "42"}')
    after = list(feed_all(asm, [context, commit(0x700)]))
    assert before == []
    row = after[0]
    assert isinstance(row, RowChange) and row.transaction.messages == (context,)


@pytest.mark.parametrize(
    "message",
    [
        Insert(USERS.relation_id, ("1", "a", "b")),
        Update(USERS.relation_id, ("1", "a", "b")),
        Delete(USERS.relation_id, ("1", None, None), "K"),
        Truncate((USERS.relation_id,), 0),
        Message(True, 0x10, "p", b""),
        Commit(0, 0x10, 0x20, T0),
    ],
    ids=["insert", "update", "delete", "truncate", "message", "commit"],
)
def test_change_outside_a_transaction_raises_decode_error(message: PgOutputMessage) -> None:
    with pytest.raises(DecodeError, match="outside a transaction"):
        run(USERS, message)


def test_row_change_after_the_commit_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        run(USERS, *transaction(0x10), Insert(USERS.relation_id, ("1", "a", "b")))


def test_begin_inside_an_open_transaction_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="Begin"):
        run(begin(0x10), begin(0x20))


def test_commit_with_another_lsn_than_its_begin_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="commit_lsn"):
        run(begin(0x10), commit(0x20))


def test_stream_stop_outside_a_stream_block_is_a_protocol_violation() -> None:
    with pytest.raises(DecodeError, match="StreamStop"):
        run(StreamStop())


# -- streamed transactions (protocol 2+) ----------------------------------------------------------


def streamed(asm: ChangeAssembler, *messages: PgOutputMessage) -> list[object]:
    """Feed messages with their encoded bytes, as the daemon does (spilling needs the bytes)."""
    out: list[object] = []
    in_stream = False
    for message in messages:
        if isinstance(message, StreamStart):
            in_stream = True
        payload = encode(message) if in_stream else b""
        if isinstance(message, StreamStop):
            in_stream = False
        out.extend(asm.feed(message, payload))
    return out


def in_stream(xid: int, *rows: PgOutputMessage, first: bool = True) -> list[PgOutputMessage]:
    return [StreamStart(xid, first), *rows, StreamStop()]


def stream_commit(xid: int, commit_lsn: int) -> StreamCommit:
    return StreamCommit(xid, 0, commit_lsn, commit_lsn + 0x30, T0)


STREAM_USERS = Relation(USERS.relation_id, USERS.namespace, USERS.relation_name,
                        USERS.replica_identity, USERS.columns, xid=900)  # fmt: skip


def test_streamed_transaction_is_yielded_only_at_its_stream_commit() -> None:
    asm = assembler()
    before_commit = streamed(
        asm,
        *in_stream(900, STREAM_USERS, Insert(16401, ("1", "a", "x"), xid=900)),
        *in_stream(900, Insert(16401, ("2", "b", "y"), xid=900), first=False),
    )
    assert before_commit == []
    assert asm.open_streamed_transactions == 1
    changes = streamed(asm, stream_commit(900, 0x5000))
    rows = [c for c in changes if isinstance(c, RowChange)]
    assert [(r.seq, r.new) for r in rows] == [(0, ("1", "a", "x")), (1, ("2", "b", "y"))]
    assert rows[0].transaction == TransactionInfo(900, 0x5000, T0)
    assert changes[-1] == TransactionEnd(TransactionInfo(900, 0x5000, T0), 0x5030, 2)
    assert asm.open_streamed_transactions == 0


def test_streamed_transaction_aborted_whole_yields_nothing() -> None:
    asm = assembler()
    out = streamed(
        asm,
        *in_stream(901, STREAM_USERS, Insert(16401, ("1", "a", "x"), xid=901)),
        StreamAbort(901, 901),
    )
    assert out == [] and asm.open_streamed_transactions == 0


def test_rolled_back_subtransaction_inside_a_committed_stream_is_left_out() -> None:
    asm = assembler()
    out = streamed(
        asm,
        *in_stream(
            902,
            STREAM_USERS,
            Insert(16401, ("1", "kept", None), xid=902),
            Insert(16401, ("2", "rolled back", None), xid=903),  # savepoint 903
            Insert(16401, ("3", "kept after", None), xid=904),  # a later subtransaction
        ),
        StreamAbort(902, 903),
        stream_commit(902, 0x6000),
    )
    assert [c.new[1] for c in out if isinstance(c, RowChange)] == ["kept", "kept after"]


def test_ordinary_transactions_between_stream_blocks_come_out_in_commit_order() -> None:
    asm = assembler()
    out = streamed(
        asm,
        USERS,
        *in_stream(905, STREAM_USERS, Insert(16401, ("10", "streamed", None), xid=905)),
        begin(0x7000, xid=906),
        Insert(16401, ("20", "ordinary", None)),
        commit(0x7000),
        *in_stream(905, Insert(16401, ("11", "streamed", None), xid=905), first=False),
        stream_commit(905, 0x8000),
    )
    ends = [c.transaction.xid for c in out if isinstance(c, TransactionEnd)]
    rows = [c.new[0] for c in out if isinstance(c, RowChange)]
    assert ends == [906, 905]
    assert rows == ["20", "10", "11"]


def test_streamed_transaction_at_or_below_the_checkpoint_is_skipped_and_its_spill_freed() -> None:
    asm = assembler(skip_through_lsn=0x9000)
    out = streamed(
        asm,
        *in_stream(907, STREAM_USERS, Insert(16401, ("1", "a", None), xid=907)),
        stream_commit(907, 0x9000),
    )
    assert out == [] and asm.skipped_transactions == 1
    assert asm.open_streamed_transactions == 0


def test_relation_sent_inside_a_stream_applies_from_the_stream_commit_on() -> None:
    asm = assembler()
    altered = Relation(16401, "public", "users", "f",
                       (*USERS.columns, RelationColumn(0, "extra", 25, -1)), xid=908)  # fmt: skip
    out = streamed(
        asm,
        USERS,
        *in_stream(908, altered, Insert(16401, ("1", "a", "x", "e"), xid=908)),
        begin(0x7100, xid=909),
        Insert(16401, ("2", "b", "y")),  # still the old definition: the stream has not committed
        commit(0x7100),
        stream_commit(908, 0x7200),
    )
    rows = [c for c in out if isinstance(c, RowChange)]
    assert rows[0].relation.column_names == ("id", "email", "bio")
    assert rows[1].relation.column_names == ("id", "email", "bio", "extra")


def test_a_first_segment_again_restarts_the_spilled_copy() -> None:
    asm = assembler()
    streamed(asm, *in_stream(910, STREAM_USERS, Insert(16401, ("1", "old", None), xid=910)))
    out = streamed(
        asm,
        *in_stream(910, STREAM_USERS, Insert(16401, ("1", "new", None), xid=910)),
        stream_commit(910, 0xA000),
    )
    assert [c.new[1] for c in out if isinstance(c, RowChange)] == ["new"]


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=30))
def test_streamed_changes_survive_exactly_unless_their_subtransaction_aborted(
    plan: list[tuple[int, bool]],
) -> None:
    """Random changes spread over subtransactions 0-3, each subtransaction aborted or not."""
    top = 1000
    aborted = {sub for sub, abort in plan if abort and sub != 0}
    asm = assembler()
    rows = [Insert(16401, (str(i), f"s{sub}", None), xid=top + sub)
            for i, (sub, _abort) in enumerate(plan)]  # fmt: skip
    out = streamed(
        asm,
        *in_stream(top, STREAM_USERS, *rows),
        *[StreamAbort(top, top + sub) for sub in sorted(aborted)],
        stream_commit(top, 0xB000),
    )
    expected = [str(i) for i, (sub, _abort) in enumerate(plan) if sub not in aborted]
    assert [c.new[0] for c in out if isinstance(c, RowChange)] == expected


def test_a_large_ordinary_transaction_overflows_to_disk_and_replays_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cdc.pipeline.changes

    monkeypatch.setattr(cdc.pipeline.changes, "IN_MEMORY_MESSAGES", 3)
    asm = assembler()
    context = Message(True, 0x6F0, "cdc.context", b'{"actor_id": "7"}')
    messages: list[PgOutputMessage] = [
        USERS,
        begin(0x800),
        *[Insert(16401, (str(i), "x", None)) for i in range(10)],
        context,  # lands in the overflow: still known before the first change is mapped
        commit(0x800),
    ]
    out = [c for m in messages for c in asm.feed(m, encode(m))]
    rows = [c for c in out if isinstance(c, RowChange)]
    assert [r.new[0] for r in rows] == [str(i) for i in range(10)]
    assert rows[0].transaction.messages == (context,)
    assert isinstance(out[-1], TransactionEnd) and out[-1].changes == 11


def test_the_commit_of_a_transaction_in_memory_gives_its_changes_as_a_list() -> None:
    asm = assembler()
    for message in (USERS, begin(0x900), Insert(16401, ("1", "a", None))):
        assert list(asm.feed(message)) == []
    changes = asm.feed(commit(0x900))
    assert type(changes) is list  # made at once: nothing to resume per change
    assert [type(c) for c in changes] == [RowChange, TransactionEnd]
    assert not asm.in_transaction


def test_a_commit_that_does_not_match_its_begin_fails_when_it_is_fed() -> None:
    asm = assembler()
    feed_all(asm, [USERS, begin(0x900), Insert(16401, ("1", "a", None))])
    with pytest.raises(DecodeError, match="does not match Begin's 900"):
        asm.feed(commit(0x901))
    assert not asm.in_transaction
