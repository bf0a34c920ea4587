"""Unit tests of cdc.pipeline.pgoutput against bytes captured from PostgreSQL 15 and hand-built
bytes.

The captured vectors (tests/vectors/pgoutput_pg15.json, written by capture_pgoutput.py) carry
LSNs, xids, OIDs and times of the capture run. Tests compare whole dataclasses, taking those
values either from the relationships the protocol guarantees (a Commit's LSN is its Begin's
final LSN, an Insert names the relation id its Relation announced) or from the vector's own
bytes at the offsets the protocol documentation gives, so that a re-capture needs no edits.
"""

from __future__ import annotations

import copy
import json
import pickle
import struct
import tracemalloc
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import CdcError, DecodeError
from cdc.pipeline.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BeginPrepare,
    Commit,
    CommitPrepared,
    Decoder,
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
    UnchangedToast,
    Update,
    decode_checked,
    decode_message,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "pgoutput_pg15.json"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@cache
def _vectors() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(VECTORS_FILE.read_text()))


def _vector_names() -> list[str]:
    return [v["name"] for v in _vectors()]


def raw(name: str) -> bytes:
    for vector in _vectors():
        if vector["name"] == name:
            return bytes.fromhex(vector["hex"])
    raise KeyError(name)


def in_stream(name: str) -> bool:
    return bool(next(v["in_stream"] for v in _vectors() if v["name"] == name))


def decoded(name: str) -> PgOutputMessage:
    return decode_message(raw(name), in_stream=in_stream(name))


# Independent readers for fields at fixed documented offsets (not the decoder under test).
def u32_at(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def u64_at(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "big")


def time_at(data: bytes, offset: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=int.from_bytes(data[offset : offset + 8], "big"))


def lsn_bytes(value: int) -> bytes:
    return value.to_bytes(8, "big")


def pg_time_bytes(value: datetime) -> bytes:
    return ((value - PG_EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)


def text_column(value: str) -> bytes:
    encoded = value.encode()
    return b"t" + struct.pack("!i", len(encoded)) + encoded


KIND_CLASSES: dict[str, type] = {
    "begin": Begin,
    "commit": Commit,
    "origin": Origin,
    "relation": Relation,
    "type": Type,
    "insert": Insert,
    "update": Update,
    "update_old_key": Update,
    "update_old_row": Update,
    "delete_old_key": Delete,
    "delete_old_row": Delete,
    "truncate": Truncate,
    "message_transactional": Message,
    "message_non_transactional": Message,
    "stream_start": StreamStart,
    "stream_start_first": StreamStart,
    "stream_stop": StreamStop,
    "stream_commit": StreamCommit,
    "stream_abort_subtransaction": StreamAbort,
    "stream_abort_toplevel": StreamAbort,
    "begin_prepare": BeginPrepare,
    "prepare": Prepare,
    "commit_prepared": CommitPrepared,
    "rollback_prepared": RollbackPrepared,
    "stream_prepare": StreamPrepare,
}


def kind_of(name: str) -> str:
    return name.split("/")[2].split("#")[0]


# Hand-built messages PostgreSQL 15 cannot send, for the truncation and trailing-byte sweeps.
PROTO4_STREAM_ABORT = (
    b"A"
    + struct.pack("!II", 1000, 1001)
    + lsn_bytes(0x16_B374_D848)
    + pg_time_bytes(datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
)
HAND_BUILT: dict[str, bytes] = {
    "proto4_stream_abort": PROTO4_STREAM_ABORT,
    "binary_and_empty_columns": (
        b"I"
        + struct.pack("!I", 42)
        + b"N"
        + struct.pack("!H", 5)
        + b"b\x00\x00\x00\x00"
        + b"b\x00\x00\x00\x03\x00\xff\x00"
        + b"t\x00\x00\x00\x00"
        + b"n"
        + b"u"
    ),
}


# --- every captured vector -------------------------------------------------------------------


def test_the_captured_vectors_cover_every_kind_postgres_15_can_send() -> None:
    kinds = {kind_of(name) for name in _vector_names()}
    assert kinds == set(KIND_CLASSES)


@pytest.mark.parametrize("name", _vector_names())
def test_every_captured_vector_decodes_to_the_class_its_name_says(name: str) -> None:
    assert type(decoded(name)) is KIND_CLASSES[kind_of(name)]


@pytest.mark.parametrize("name", _vector_names())
def test_fast_and_checked_decoders_give_equal_results_on_every_vector(name: str) -> None:
    assert decoded(name) == decode_checked(raw(name), in_stream(name))


@pytest.mark.parametrize("name", _vector_names())
def test_every_truncation_of_a_captured_vector_raises_decode_error(name: str) -> None:
    data = raw(name)
    for length in range(len(data)):
        with pytest.raises(DecodeError) as caught:
            decode_message(data[:length], in_stream=in_stream(name))
        assert caught.value.offset <= length


@pytest.mark.parametrize("name", _vector_names())
def test_a_trailing_byte_after_a_captured_vector_raises_decode_error(name: str) -> None:
    data = raw(name)
    with pytest.raises(DecodeError) as caught:
        decode_message(data + b"\x00", in_stream=in_stream(name))
    if data[0] == ord("A"):
        # One byte after subxid is neither the protocol 2 nor the protocol 4 layout.
        assert (caught.value.field, caught.value.offset) == ("abort_lsn", 9)
    else:
        assert (caught.value.field, caught.value.offset) == ("end of message", len(data))


def test_a_decoder_fed_the_streamed_capture_in_order_tracks_the_stream_itself() -> None:
    decoder = Decoder()
    names = [n for n in _vector_names() if n.startswith("v2_stream/")]
    assert len(names) > 10
    for name in names:
        # Every vector was recorded with the stream state the server was in.
        assert decoder.in_stream == in_stream(name), name
        assert decoder.decode(raw(name)) == decoded(name)
    assert not decoder.in_stream


# --- transaction framing ----------------------------------------------------------------------


def test_begin_and_commit_of_one_transaction_agree_on_lsn_and_time() -> None:
    data = raw("v1/full_identity/begin")
    begin = decoded("v1/full_identity/begin")
    assert begin == Begin(
        final_lsn=u64_at(data, 1), commit_time=time_at(data, 9), xid=u32_at(data, 17)
    )
    commit = decoded("v1/full_identity/commit")
    assert commit == Commit(
        flags=0,
        commit_lsn=begin.final_lsn,
        end_lsn=u64_at(raw("v1/full_identity/commit"), 10),
        commit_time=begin.commit_time,
    )
    assert commit.end_lsn > commit.commit_lsn
    assert begin.commit_time.tzinfo is not None
    assert begin.commit_time.utcoffset() == timedelta(0)


def test_origin_follows_begin_and_carries_the_origin_lsn_and_name() -> None:
    assert decoded("v1/origin/origin") == Origin(commit_lsn=0x1234ABCD, name="cdc_vectors_origin")
    # pg_replication_origin_xact_setup's timestamp becomes the transaction's commit time.
    origin_time = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    begin = decoded("v1/origin/begin")
    assert isinstance(begin, Begin)
    assert begin.commit_time == origin_time
    commit = decoded("v1/origin/commit")
    assert isinstance(commit, Commit)
    assert commit.commit_time == origin_time


# --- schema -------------------------------------------------------------------------------------


def test_type_message_names_the_enum_that_the_relation_column_uses() -> None:
    data = raw("v1/insert_all_types/type")
    mood = decoded("v1/insert_all_types/type")
    assert mood == Type(type_oid=u32_at(data, 1), namespace="cdc_vectors", name="mood")
    relation = decoded("v1/insert_all_types/relation")
    assert isinstance(relation, Relation)
    assert relation.columns[-1].type_oid == mood.type_oid


def test_relation_with_default_identity_lists_live_columns_with_types_and_modifiers() -> None:
    data = raw("v1/insert_all_types/relation")
    mood = decoded("v1/insert_all_types/type")
    assert isinstance(mood, Type)

    def column(name: str, type_oid: int, type_modifier: int = -1) -> RelationColumn:
        return RelationColumn(flags=0, name=name, type_oid=type_oid, type_modifier=type_modifier)

    # The dropped column and the generated column are not sent.
    assert decoded("v1/insert_all_types/relation") == Relation(
        relation_id=u32_at(data, 1),
        namespace="cdc_vectors",
        relation_name="all_types",
        replica_identity="d",
        columns=(
            RelationColumn(flags=1, name="id", type_oid=23, type_modifier=-1),
            column("c_int2", 21),
            column("c_int8", 20),
            column("c_numeric", 1700, ((10 << 16) | 2) + 4),  # numeric(10, 2)
            column("c_text", 25),
            column("c_varchar", 1043, 20 + 4),  # varchar(20)
            column("c_bool", 16),
            column("c_ts", 1184),
            column("c_date", 1082),
            column("c_bytea", 17),
            column("c_jsonb", 3802),
            column("c_uuid", 2950),
            column("c_float8", 701),
            column("c_int_array", 1007),
            column("c_mood", mood.type_oid),
        ),
    )


def test_relation_with_full_identity_marks_every_column_as_key() -> None:
    data = raw("v1/full_identity/relation")
    relation = decoded("v1/full_identity/relation")
    assert relation == Relation(
        relation_id=u32_at(data, 1),
        namespace="cdc_vectors",
        relation_name="full_identity",
        replica_identity="f",
        columns=(
            RelationColumn(flags=1, name="id", type_oid=23, type_modifier=-1),
            RelationColumn(flags=1, name="name", type_oid=25, type_modifier=-1),
            RelationColumn(flags=1, name="note", type_oid=25, type_modifier=-1),
        ),
    )
    assert isinstance(relation, Relation)
    assert all(c.is_key for c in relation.columns)


def test_relation_column_is_key_reads_bit_zero_of_the_flags() -> None:
    assert RelationColumn(1, "id", 23, -1).is_key
    assert not RelationColumn(0, "x", 23, -1).is_key
    assert not RelationColumn(2, "x", 23, -1).is_key


# --- row changes --------------------------------------------------------------------------------


def test_insert_decodes_every_text_column_as_str_with_utf8() -> None:
    relation = decoded("v1/insert_all_types/relation")
    assert isinstance(relation, Relation)
    assert decoded("v1/insert_all_types/insert") == Insert(
        relation_id=relation.relation_id,
        new=(
            "1",
            "32767",
            "9007199254740993",
            "12345.67",
            "héllo wörld ✓",
            "short",
            "t",
            "2024-01-02 03:04:05.123456+00",
            "2024-02-29",
            "\\xdeadbeef",
            '{"a": [1, 2]}',
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "1.5",
            "{1,2,3}",
            "happy",
        ),
    )


def test_insert_decodes_null_columns_as_none() -> None:
    relation = decoded("v1/insert_all_types/relation")
    assert isinstance(relation, Relation)
    assert decoded("v1/insert_all_types/insert#2") == Insert(
        relation_id=relation.relation_id, new=("2",) + (None,) * 14
    )


def test_insert_with_binary_option_decodes_binary_columns_as_bytes() -> None:
    relation = decoded("v1_binary/insert_all_types/relation")
    assert isinstance(relation, Relation)
    ts = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    int_array = struct.pack("!iiI", 1, 0, 23) + struct.pack("!ii", 3, 1)
    int_array += b"".join(struct.pack("!ii", 4, n) for n in (1, 2, 3))
    assert decoded("v1_binary/insert_all_types/insert") == Insert(
        relation_id=relation.relation_id,
        new=(
            struct.pack("!i", 1),
            struct.pack("!h", 32767),
            struct.pack("!q", 9007199254740993),
            struct.pack("!hhhhhh", 3, 1, 0, 2, 1, 2345) + struct.pack("!h", 6700),
            "héllo wörld ✓".encode(),
            b"short",
            b"\x01",
            pg_time_bytes(ts),
            struct.pack("!i", (datetime(2024, 2, 29) - datetime(2000, 1, 1)).days),
            b"\xde\xad\xbe\xef",
            b'\x01{"a": [1, 2]}',  # jsonb binary: version byte 1, then the text
            bytes.fromhex("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            struct.pack("!d", 1.5),
            int_array,
            b"happy",
        ),
    )


def test_update_without_old_tuple_has_no_old_and_no_old_kind() -> None:
    message = decoded("v1/update_default_identity/update")
    assert isinstance(message, Update)
    assert message == Update(
        relation_id=u32_at(raw("v1/update_default_identity/update"), 1),
        new=(
            "1",
            "32767",
            "9007199254740993",
            "12345.67",
            "changed",
            "short",
            "t",
            "2024-01-02 03:04:05.123456+00",
            "2024-02-29",
            "\\xdeadbeef",
            '{"a": [1, 2]}',
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "1.5",
            "{1,2,3}",
            "happy",
        ),
        old=None,
        old_kind=None,
    )


def test_update_of_the_key_under_default_identity_sends_the_old_key_only() -> None:
    assert decoded("v1/update_key_change/update_old_key") == Update(
        relation_id=u32_at(raw("v1/update_key_change/update_old_key"), 1),
        new=("3",) + (None,) * 14,
        old=("2",) + (None,) * 14,
        old_kind="K",
    )


def test_update_with_old_row_decodes_old_and_new_tuples() -> None:
    relation = decoded("v1/full_identity/relation")
    assert isinstance(relation, Relation)
    assert decoded("v1/full_identity/update_old_row") == Update(
        relation_id=relation.relation_id,
        new=("1", "bob", "first"),
        old=("1", "alice", "first"),
        old_kind="O",
    )


def test_update_that_leaves_a_toasted_column_alone_marks_it_unchanged() -> None:
    message = decoded("v1/unchanged_toast/update")
    assert message == Update(
        relation_id=u32_at(raw("v1/unchanged_toast/update"), 1),
        new=("1", "2", UNCHANGED_TOAST),
    )
    assert isinstance(message, Update)
    assert message.new[2] is UNCHANGED_TOAST


def test_delete_under_default_identity_sends_the_key_with_other_columns_null() -> None:
    assert decoded("v1/delete_default_identity/delete_old_key") == Delete(
        relation_id=u32_at(raw("v1/delete_default_identity/delete_old_key"), 1),
        old=("3",) + (None,) * 14,
        old_kind="K",
    )


def test_delete_under_full_identity_sends_the_whole_old_row() -> None:
    relation = decoded("v1/full_identity/relation")
    assert isinstance(relation, Relation)
    assert decoded("v1/full_identity/delete_old_row") == Delete(
        relation_id=relation.relation_id, old=("1", "bob", "first"), old_kind="O"
    )


def test_truncate_lists_every_truncated_relation_and_the_cascade_and_restart_options() -> None:
    relation_ids = []
    for name in ("v1/truncate/relation", "v1/truncate/relation#2", "v1/truncate/relation#3"):
        relation = decoded(name)
        assert isinstance(relation, Relation)
        relation_ids.append(relation.relation_id)
    message = decoded("v1/truncate/truncate")
    assert message == Truncate(relation_ids=tuple(relation_ids), options=3)
    assert isinstance(message, Truncate)
    assert message.cascade
    assert message.restart_identity


def test_truncate_options_map_to_cascade_and_restart_identity() -> None:
    assert (Truncate((), 0).cascade, Truncate((), 0).restart_identity) == (False, False)
    assert (Truncate((), 1).cascade, Truncate((), 1).restart_identity) == (True, False)
    assert (Truncate((), 2).cascade, Truncate((), 2).restart_identity) == (False, True)


# --- logical decoding messages -------------------------------------------------------------------


def test_transactional_messages_keep_prefix_and_content_bytes() -> None:
    first = raw("v1/message_transactional/message_transactional")
    assert decoded("v1/message_transactional/message_transactional") == Message(
        transactional=True,
        lsn=u64_at(first, 2),
        prefix="cdc-test",
        content=b"transactional payload",
    )
    second = raw("v1/message_transactional/message_transactional#2")
    assert decoded("v1/message_transactional/message_transactional#2") == Message(
        transactional=True, lsn=u64_at(second, 2), prefix="cdc-test", content=b"\x00\xff\x01"
    )


def test_non_transactional_message_decodes_outside_any_transaction() -> None:
    data = raw("v1/message_non_transactional/message_non_transactional")
    assert decoded("v1/message_non_transactional/message_non_transactional") == Message(
        transactional=False, lsn=u64_at(data, 2), prefix="cdc-test", content=b"non-transactional"
    )


# --- streamed transactions -----------------------------------------------------------------------


def test_streamed_transaction_messages_carry_the_xid_announced_by_stream_start() -> None:
    start = decoded("v2_stream/streamed_commit/stream_start_first")
    xid = u32_at(raw("v2_stream/streamed_commit/stream_start_first"), 1)
    assert start == StreamStart(xid=xid, first_segment=True)
    assert decoded("v2_stream/streamed_commit/stream_start") == StreamStart(
        xid=xid, first_segment=False
    )
    mood = decoded("v2_stream/streamed_commit/type")
    assert mood == Type(
        type_oid=u32_at(raw("v2_stream/streamed_commit/type"), 5),
        namespace="cdc_vectors",
        name="mood",
        xid=xid,
    )
    assert isinstance(mood, Type)
    relation = decoded("v2_stream/streamed_commit/relation")
    assert relation == Relation(
        relation_id=u32_at(raw("v2_stream/streamed_commit/relation"), 5),
        namespace="cdc_vectors",
        relation_name="stream_rows",
        replica_identity="d",
        columns=(
            RelationColumn(flags=1, name="id", type_oid=23, type_modifier=-1),
            RelationColumn(flags=0, name="mood", type_oid=mood.type_oid, type_modifier=-1),
            RelationColumn(flags=0, name="payload", type_oid=25, type_modifier=-1),
        ),
        xid=xid,
    )
    assert isinstance(relation, Relation)
    assert decoded("v2_stream/streamed_commit/insert") == Insert(
        relation_id=relation.relation_id,
        new=("1", "ok", "streamed payload " * 8),
        xid=xid,
    )
    assert decoded("v2_stream/streamed_commit/message_transactional") == Message(
        transactional=True,
        lsn=u64_at(raw("v2_stream/streamed_commit/message_transactional"), 6),
        prefix="cdc-test",
        content=b"inside a stream",
        xid=xid,
    )
    assert decoded("v2_stream/streamed_commit/stream_stop") == StreamStop()
    commit_data = raw("v2_stream/streamed_commit/stream_commit")
    assert decoded("v2_stream/streamed_commit/stream_commit") == StreamCommit(
        xid=xid,
        flags=0,
        commit_lsn=u64_at(commit_data, 6),
        end_lsn=u64_at(commit_data, 14),
        commit_time=time_at(commit_data, 22),
    )


def test_a_rolled_back_savepoint_in_a_stream_aborts_its_subtransaction() -> None:
    start = decoded("v2_stream/streamed_commit/stream_start_first")
    assert isinstance(start, StreamStart)
    abort = decoded("v2_stream/streamed_commit/stream_abort_subtransaction")
    assert abort == StreamAbort(
        xid=start.xid,
        subxid=u32_at(raw("v2_stream/streamed_commit/stream_abort_subtransaction"), 5),
    )
    assert isinstance(abort, StreamAbort)
    assert abort.subxid != abort.xid


def test_changes_after_a_rolled_back_savepoint_carry_the_new_subtransaction_xid() -> None:
    # pgoutput sends the xid of the (sub)transaction that made the change, not the top xid.
    start = decoded("v2_stream/streamed_commit/stream_start_first")
    abort = decoded("v2_stream/streamed_commit/stream_abort_subtransaction")
    relation = decoded("v2_stream/streamed_commit/relation")
    aux = decoded("v2_stream/streamed_commit/relation#3")
    assert isinstance(start, StreamStart)
    assert isinstance(abort, StreamAbort)
    assert isinstance(relation, Relation)
    assert isinstance(aux, Relation)
    subxid = u32_at(raw("v2_stream/streamed_commit/update"), 1)
    assert subxid not in (start.xid, abort.subxid)
    assert decoded("v2_stream/streamed_commit/update") == Update(
        relation_id=relation.relation_id,
        new=("1", "happy", "streamed payload " * 8),
        xid=subxid,
    )
    assert decoded("v2_stream/streamed_commit/delete_old_key") == Delete(
        relation_id=relation.relation_id, old=("3", None, None), old_kind="K", xid=subxid
    )
    assert decoded("v2_stream/streamed_commit/truncate") == Truncate(
        relation_ids=(aux.relation_id,), options=0, xid=subxid
    )


def test_a_rolled_back_streamed_transaction_aborts_with_subxid_equal_to_xid() -> None:
    start = decoded("v2_stream/streamed_rollback/stream_start_first")
    assert isinstance(start, StreamStart)
    assert decoded("v2_stream/streamed_rollback/stream_abort_toplevel") == StreamAbort(
        xid=start.xid, subxid=start.xid
    )


def test_protocol_4_stream_abort_carries_abort_lsn_and_time() -> None:
    assert decode_message(PROTO4_STREAM_ABORT) == StreamAbort(
        xid=1000,
        subxid=1001,
        abort_lsn=0x16_B374_D848,
        abort_time=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    )
    assert decode_message(PROTO4_STREAM_ABORT[:9]) == StreamAbort(xid=1000, subxid=1001)


@pytest.mark.parametrize("tail", [1, 8, 15, 17, 24])
def test_stream_abort_with_neither_0_nor_16_bytes_after_subxid_is_rejected(tail: int) -> None:
    data = (PROTO4_STREAM_ABORT + b"\x00" * 8)[: 9 + tail]
    with pytest.raises(DecodeError) as caught:
        decode_message(data)
    assert (caught.value.message_type, caught.value.field, caught.value.offset) == (
        "Stream Abort",
        "abort_lsn",
        9,
    )


# --- two-phase commit ----------------------------------------------------------------------------


def test_prepared_then_committed_transaction_decodes_begin_prepare_prepare_and_commit() -> None:
    begin_data = raw("v3_two_phase/two_phase_commit/begin_prepare")
    xid = u32_at(begin_data, 25)
    begin = decoded("v3_two_phase/two_phase_commit/begin_prepare")
    assert begin == BeginPrepare(
        prepare_lsn=u64_at(begin_data, 1),
        end_lsn=u64_at(begin_data, 9),
        prepare_time=time_at(begin_data, 17),
        xid=xid,
        gid="cdc-gid-commit",
    )
    assert isinstance(begin, BeginPrepare)
    assert decoded("v3_two_phase/two_phase_commit/prepare") == Prepare(
        flags=0,
        prepare_lsn=begin.prepare_lsn,
        end_lsn=begin.end_lsn,
        prepare_time=begin.prepare_time,
        xid=xid,
        gid="cdc-gid-commit",
    )
    commit_data = raw("v3_two_phase/two_phase_commit/commit_prepared")
    commit = decoded("v3_two_phase/two_phase_commit/commit_prepared")
    assert commit == CommitPrepared(
        flags=0,
        commit_lsn=u64_at(commit_data, 2),
        end_lsn=u64_at(commit_data, 10),
        commit_time=time_at(commit_data, 18),
        xid=xid,
        gid="cdc-gid-commit",
    )
    assert isinstance(commit, CommitPrepared)
    assert commit.commit_lsn >= begin.end_lsn
    assert decoded("v3_two_phase/two_phase_commit/insert") == Insert(
        relation_id=u32_at(raw("v3_two_phase/two_phase_commit/insert"), 1),
        new=("10", "prepared", "commit me"),
    )


def test_rollback_prepared_refers_back_to_the_prepare() -> None:
    prepare = decoded("v3_two_phase/two_phase_rollback/prepare")
    assert isinstance(prepare, Prepare)
    assert prepare.gid == "cdc-gid-rollback"
    data = raw("v3_two_phase/two_phase_rollback/rollback_prepared")
    rollback = decoded("v3_two_phase/two_phase_rollback/rollback_prepared")
    assert rollback == RollbackPrepared(
        flags=0,
        prepare_end_lsn=prepare.end_lsn,
        rollback_end_lsn=u64_at(data, 10),
        prepare_time=prepare.prepare_time,
        rollback_time=time_at(data, 26),
        xid=prepare.xid,
        gid="cdc-gid-rollback",
    )
    assert isinstance(rollback, RollbackPrepared)
    assert rollback.rollback_time >= rollback.prepare_time


def test_a_streamed_transaction_that_is_prepared_ends_with_stream_prepare() -> None:
    start = decoded("v3_two_phase/stream_prepare/stream_start_first")
    assert isinstance(start, StreamStart)
    data = raw("v3_two_phase/stream_prepare/stream_prepare")
    prepare = decoded("v3_two_phase/stream_prepare/stream_prepare")
    assert prepare == StreamPrepare(
        flags=0,
        prepare_lsn=u64_at(data, 2),
        end_lsn=u64_at(data, 10),
        prepare_time=time_at(data, 18),
        xid=start.xid,
        gid="cdc-gid-stream",
    )
    assert isinstance(prepare, StreamPrepare)
    commit = decoded("v3_two_phase/stream_prepare/commit_prepared")
    assert isinstance(commit, CommitPrepared)
    assert (commit.xid, commit.gid, commit.commit_lsn) == (start.xid, prepare.gid, prepare.end_lsn)


# --- hand-built edge cases -----------------------------------------------------------------------


def test_binary_empty_text_null_and_unchanged_columns_are_told_apart() -> None:
    assert decode_message(HAND_BUILT["binary_and_empty_columns"]) == Insert(
        relation_id=42, new=(b"", b"\x00\xff\x00", "", None, UNCHANGED_TOAST)
    )


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_every_truncation_of_a_hand_built_vector_raises_decode_error(name: str) -> None:
    data = HAND_BUILT[name]
    for length in range(len(data)):
        if name == "proto4_stream_abort" and length == 9:
            continue  # the protocol 2 layout: a valid Stream Abort without the tail
        with pytest.raises(DecodeError):
            decode_message(data[:length])


def test_decode_accepts_memoryview_and_bytearray_input() -> None:
    data = raw("v1/full_identity/update_old_row")
    expected = decode_message(data)
    assert decode_message(memoryview(data)) == expected
    assert decode_message(bytearray(data)) == expected


def test_a_decoder_switches_to_stream_layout_between_stream_start_and_stop() -> None:
    streamed_insert = b"I" + struct.pack("!II", 77, 42) + b"N" + struct.pack("!H", 1) + b"n"
    decoder = Decoder()
    assert decoder.decode(b"S" + struct.pack("!I", 77) + b"\x01") == StreamStart(77, True)
    assert decoder.in_stream
    assert decoder.decode(streamed_insert) == Insert(42, (None,), xid=77)
    assert decoder.decode(b"E") == StreamStop()
    assert not decoder.in_stream
    # Outside the stream the same bytes are a malformed (too long) plain Insert.
    with pytest.raises(DecodeError):
        decoder.decode(streamed_insert)
    assert not decoder.in_stream


# --- errors --------------------------------------------------------------------------------------


def test_error_names_message_type_field_and_offset_of_an_overlong_column() -> None:
    data = b"I" + struct.pack("!I", 42) + b"N" + struct.pack("!H", 2) + b"t\x00\x00\x00\x0aabc"
    with pytest.raises(DecodeError) as caught:
        decode_message(data)
    assert str(caught.value) == (
        "malformed pgoutput Insert message: field 'new[0].length' at offset 9: "
        "length 10 exceeds the 3 bytes left"
    )
    assert isinstance(caught.value, CdcError)
    assert caught.value.exit_code == 7


def test_error_for_trailing_bytes_names_the_end_of_the_message() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_message(raw("v1/full_identity/begin") + b"xy")
    assert str(caught.value) == (
        "malformed pgoutput Begin message: field 'end of message' at offset 21: "
        "2 unexpected trailing byte(s)"
    )


def test_truncation_inside_a_column_names_that_column() -> None:
    data = raw("v1/full_identity/update_old_row")
    # Layout: 'U', relation id, 'O', count, then 't' + length + "1" as old[0] at offset 8.
    with pytest.raises(DecodeError) as caught:
        decode_message(data[:17])
    assert (caught.value.message_type, caught.value.field, caught.value.offset) == (
        "Update",
        "old[1].length",
        15,
    )


BAD_MESSAGES: list[tuple[str, bytes, bool, tuple[str, str, int]]] = [
    ("empty input", b"", False, ("unknown", "type", 0)),
    ("unknown type byte", b"Z\x00\x00", False, ("unknown", "type", 0)),
    (
        "bad column kind byte",
        b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 1) + b"x",
        False,
        ("Insert", "new[0].kind", 8),
    ),
    (
        "insert without the N marker",
        b"I" + struct.pack("!I", 1) + b"K" + struct.pack("!H", 0),
        False,
        ("Insert", "new marker", 5),
    ),
    (
        "update with a bad old-tuple marker",
        b"U" + struct.pack("!I", 1) + b"X" + struct.pack("!H", 0),
        False,
        ("Update", "old_kind", 5),
    ),
    (
        "update whose old tuple is not followed by N",
        b"U" + struct.pack("!I", 1) + b"O" + struct.pack("!H", 0) + b"O" + struct.pack("!H", 0),
        False,
        ("Update", "new marker", 8),
    ),
    (
        "delete with the N marker",
        b"D" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 0),
        False,
        ("Delete", "old_kind", 5),
    ),
    (
        "negative column length",
        b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 1) + b"t" + struct.pack("!i", -1),
        False,
        ("Insert", "new[0].length", 9),
    ),
    (
        "invalid utf-8 in a text column",
        b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 1) + b"t\x00\x00\x00\x02\xc3\x28",
        False,
        ("Insert", "new[0].value", 13),
    ),
    (
        "column count far beyond the bytes left",
        b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 65535) + b"nnn",
        False,
        ("Insert", "new.count", 6),
    ),
    (
        "missing NUL after the origin name",
        b"O" + lsn_bytes(1) + b"no terminator",
        False,
        ("Origin", "name", 9),
    ),
    (
        "invalid utf-8 in a relation name",
        b"R" + struct.pack("!I", 1) + b"public\x00\xff\x00d" + struct.pack("!H", 0),
        False,
        ("Relation", "relation_name", 12),
    ),
    (
        "unknown replica identity",
        b"R" + struct.pack("!I", 1) + b"public\x00t\x00x" + struct.pack("!H", 0),
        False,
        ("Relation", "replica_identity", 14),
    ),
    (
        "relation column count beyond the bytes left",
        b"R" + struct.pack("!I", 1) + b"public\x00t\x00d" + struct.pack("!H", 2) + b"\x01id\x00",
        False,
        ("Relation", "columns.count", 15),
    ),
    (
        "message content length of 2**31 - 1",
        b"M\x01" + lsn_bytes(1) + b"p\x00" + struct.pack("!i", 2**31 - 1) + b"abc",
        False,
        ("Message", "content.length", 12),
    ),
    (
        "message flags other than 0 or 1",
        b"M\x02" + lsn_bytes(1) + b"p\x00" + struct.pack("!i", 0),
        False,
        ("Message", "flags", 1),
    ),
    (
        "stream start first_segment other than 0 or 1",
        b"S" + struct.pack("!I", 1) + b"\x02",
        False,
        ("Stream Start", "first_segment", 5),
    ),
    (
        "truncate relation count of 2**31 - 1",
        b"T" + struct.pack("!i", 2**31 - 1) + b"\x00" + struct.pack("!I", 1),
        False,
        ("Truncate", "relation_ids.count", 1),
    ),
    (
        "negative truncate relation count",
        b"T" + struct.pack("!i", -1) + b"\x00",
        False,
        ("Truncate", "relation_ids.count", 1),
    ),
    (
        "commit time after year 9999",
        b"B" + lsn_bytes(1) + struct.pack("!q", 2**63 - 1) + struct.pack("!I", 1),
        False,
        ("Begin", "commit_time", 9),
    ),
    (
        "commit time before year 1",
        b"C\x00" + lsn_bytes(1) + lsn_bytes(2) + struct.pack("!q", -(2**63)),
        False,
        ("Commit", "commit_time", 18),
    ),
    (
        "streamed insert cut inside its xid",
        b"I\x00\x00",
        True,
        ("Insert", "xid", 1),
    ),
]


@pytest.mark.parametrize(
    ("data", "stream", "where"),
    [pytest.param(data, stream, where, id=label) for label, data, stream, where in BAD_MESSAGES],
)
def test_malformed_input_raises_decode_error_naming_type_field_and_offset(
    data: bytes, stream: bool, where: tuple[str, str, int]
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_message(data, in_stream=stream)
    error = caught.value
    assert (error.message_type, error.field, error.offset) == where
    assert where[0] in str(error)
    assert repr(where[1]) in str(error)
    assert f"offset {where[2]}" in str(error)


def test_huge_declared_lengths_allocate_nothing_before_failing() -> None:
    cases = [
        b"M\x01" + lsn_bytes(1) + b"p\x00" + struct.pack("!i", 2**31 - 1),
        b"I"
        + struct.pack("!I", 1)
        + b"N"
        + struct.pack("!H", 1)
        + b"b"
        + struct.pack("!i", 2**31 - 1),
        b"T" + struct.pack("!i", 2**31 - 1) + b"\x00",
    ]
    tracemalloc.start()
    try:
        for data in cases:
            with pytest.raises(DecodeError):
                decode_message(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


# --- values and dataclasses ----------------------------------------------------------------------


def test_unchanged_toast_is_a_singleton_that_survives_copy_and_pickle() -> None:
    assert UnchangedToast() is UNCHANGED_TOAST
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"
    assert copy.copy(UNCHANGED_TOAST) is UNCHANGED_TOAST
    assert copy.deepcopy(UNCHANGED_TOAST) is UNCHANGED_TOAST
    assert pickle.loads(pickle.dumps(UNCHANGED_TOAST)) is UNCHANGED_TOAST


def test_decoded_messages_are_immutable_and_picklable() -> None:
    message = decoded("v1/full_identity/update_old_row")
    assert isinstance(message, Update)
    with pytest.raises(FrozenInstanceError):
        message.relation_id = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(message)) == message
    toast = decoded("v1/unchanged_toast/update")
    assert pickle.loads(pickle.dumps(toast)) == toast
