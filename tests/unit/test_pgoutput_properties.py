"""Property tests of cdc.pipeline.pgoutput: garbage in gives DecodeError out, and encode/decode
round-trip.

The encoder here is test-only and written from the protocol documentation, independently of
the decoder, so a round trip checks both the field order and the value mapping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import DecodeError
from cdc.pipeline.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BeginPrepare,
    ColumnValue,
    Commit,
    CommitPrepared,
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
    TupleData,
    Type,
    Update,
    decode_checked,
    decode_message,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "pgoutput_pg15.json"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TYPE_BYTES = b"BMCORYIUDTSEcAbPKrp"


@cache
def captured() -> tuple[tuple[bytes, bool], ...]:
    return tuple(
        (bytes.fromhex(v["hex"]), bool(v["in_stream"]))
        for v in json.loads(VECTORS_FILE.read_text())
    )


def decodes_or_raises_decode_error(data: bytes, in_stream: bool) -> None:
    """The property: a message, or DecodeError; never another exception."""
    try:
        message = decode_message(data, in_stream=in_stream)
    except DecodeError as error:
        assert 0 <= error.offset <= len(data)
        return
    # Whatever the fast path accepts, the checked decoder must accept identically.
    assert decode_checked(data, in_stream) == message


# --- garbage in ----------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes, in_stream: bool) -> None:
    decodes_or_raises_decode_error(data, in_stream)


@settings(max_examples=1500)
@given(st.sampled_from(TYPE_BYTES), st.binary(max_size=120), st.booleans())
def test_arbitrary_bodies_after_each_valid_type_byte_decode_or_raise_decode_error(
    type_byte: int, body: bytes, in_stream: bool
) -> None:
    decodes_or_raises_decode_error(bytes([type_byte]) + body, in_stream)


MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for action, position, value in mutations:
        if action == "insert":
            buffer.insert(position % (len(buffer) + 1), value)
        elif not buffer:
            continue
        elif action == "delete":
            del buffer[position % len(buffer)]
        elif action == "flip":
            buffer[position % len(buffer)] ^= 1 << (value % 8)
        else:
            buffer[position % len(buffer)] = value
    return bytes(buffer)


@settings(max_examples=1500)
@given(st.data(), st.lists(MUTATION, min_size=1, max_size=4), st.booleans())
def test_mutated_captured_vectors_decode_or_raise_decode_error(
    data: st.DataObject, mutations: list[tuple[str, int, int]], flip_stream: bool
) -> None:
    original, in_stream = data.draw(st.sampled_from(captured()))
    decodes_or_raises_decode_error(mutate(original, mutations), in_stream ^ flip_stream)


# --- round trip ----------------------------------------------------------------------------------

from tests.unit.pgoutput_encoder import encode  # noqa: E402

u8 = st.integers(min_value=0, max_value=2**8 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
i32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
# Every datetime Python can hold is within PostgreSQL's Int64 microsecond range.
times = st.datetimes(timezones=st.just(UTC))
# NUL ends a C string and surrogates have no UTF-8 form; everything else must survive.
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
column_values: st.SearchStrategy[ColumnValue] = st.one_of(
    st.none(),
    st.just(UNCHANGED_TOAST),
    st.text(st.characters(codec="utf-8")),
    st.binary(),
)
tuples: st.SearchStrategy[TupleData] = st.lists(column_values, max_size=12).map(tuple)
stream_xids = st.one_of(st.none(), u32)


@st.composite
def updates(draw: st.DrawFn) -> Update:
    old_kind = draw(st.sampled_from([None, "K", "O"]))
    old = None if old_kind is None else draw(tuples)
    return Update(draw(u32), draw(tuples), old, old_kind, draw(stream_xids))


@st.composite
def stream_aborts(draw: st.DrawFn) -> StreamAbort:
    if draw(st.booleans()):
        return StreamAbort(draw(u32), draw(u32), draw(u64), draw(times))
    return StreamAbort(draw(u32), draw(u32))


messages: st.SearchStrategy[PgOutputMessage] = st.one_of(
    st.builds(Begin, u64, times, u32),
    st.builds(Message, st.booleans(), u64, names, st.binary(), stream_xids),
    st.builds(Commit, u8, u64, u64, times),
    st.builds(Origin, u64, names),
    st.builds(
        Relation,
        u32,
        names,
        names,
        st.sampled_from("dnfi"),
        st.lists(st.builds(RelationColumn, u8, names, u32, i32), max_size=8).map(tuple),
        stream_xids,
    ),
    st.builds(Type, u32, names, names, stream_xids),
    st.builds(Insert, u32, tuples, stream_xids),
    updates(),
    st.builds(Delete, u32, tuples, st.sampled_from("KO"), stream_xids),
    st.builds(Truncate, st.lists(u32, max_size=8).map(tuple), u8, stream_xids),
    st.builds(StreamStart, u32, st.booleans()),
    st.just(StreamStop()),
    st.builds(StreamCommit, u32, u8, u64, u64, times),
    stream_aborts(),
    st.builds(BeginPrepare, u64, u64, times, u32, names),
    st.builds(Prepare, u8, u64, u64, times, u32, names),
    st.builds(CommitPrepared, u8, u64, u64, times, u32, names),
    st.builds(RollbackPrepared, u8, u64, u64, times, times, u32, names),
    st.builds(StreamPrepare, u8, u64, u64, times, u32, names),
)

STREAMABLE = (Relation, Type, Insert, Update, Delete, Truncate, Message)


@settings(max_examples=1000)
@given(messages, st.booleans())
def test_encoded_messages_round_trip_through_decode_message(
    message: PgOutputMessage, in_stream_for_others: bool
) -> None:
    # Stream-capable kinds carry an xid exactly when they are in a stream; the layout of the
    # other kinds does not depend on the stream state at all.
    in_stream = in_stream_for_others
    if isinstance(message, STREAMABLE):
        in_stream = message.xid is not None
    data = encode(message)
    assert decode_message(data, in_stream=in_stream) == message
    assert decode_checked(data, in_stream) == message


@settings(max_examples=300)
@given(messages, st.data())
def test_every_truncation_of_an_encoded_message_raises_decode_error(
    message: PgOutputMessage, data: st.DataObject
) -> None:
    in_stream = isinstance(message, STREAMABLE) and message.xid is not None
    encoded = encode(message)
    length = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    if isinstance(message, StreamAbort) and message.abort_lsn is not None and length == 9:
        return  # the protocol 2 Stream Abort is a valid prefix of the protocol 4 one
    try:
        decode_message(encoded[:length], in_stream=in_stream)
    except DecodeError:
        return
    raise AssertionError(f"prefix of length {length} of {message!r} decoded")
