"""The replication stream's CopyData messages into frames (cdc.pipeline.stream): the compiled
XLogData reader (cdc/pipeline/_frames.pxi) against its reference, and what a poll gives.

No server: ``get_copy_data`` is a list of what psycopg's ``PGconn.get_copy_data(1)`` returns
(``(nbytes, memoryview)`` per message, ``(0, b"")`` when nothing more is buffered, ``(-1,
b"")`` at the end of the stream), as the daemon's stream reads it after ``consume_input``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.errors import ConnectError, DecodeError
from cdc.pipeline import core
from cdc.pipeline.stream import Frame, Keepalive, ReplicationStream, _py_read_xlogdata

_HEADER = struct.Struct("!cQQq")
_KEEPALIVE = struct.Struct("!cQqB")

compiled_read = core.compiled.read_xlogdata if core.compiled is not None else None


def xlogdata(wal_start: int, wal_end: int, payload: bytes) -> bytes:
    return _HEADER.pack(b"w", wal_start, wal_end, 0) + payload


def keepalive(wal_end: int, reply: bool) -> bytes:
    return _KEEPALIVE.pack(b"k", wal_end, 0, 1 if reply else 0)


class FakePgconn:
    """What the stream calls of psycopg's PGconn between two polls."""

    def __init__(self, messages: list[bytes], *, ended: bool = False) -> None:
        self._given = [(len(m), memoryview(m)) for m in messages]
        self._given.append((-1, b"") if ended else (0, b""))
        self.calls = 0

    def consume_input(self) -> None:
        pass

    def get_copy_data(self, async_: int) -> tuple[int, Any]:
        assert async_ == 1
        self.calls += 1
        return self._given.pop(0) if len(self._given) > 1 else self._given[0]

    def get_result(self) -> None:
        return None

    error_message = b"server closed the connection"


def read(function: Callable[..., Any], messages: list[bytes]) -> tuple[list[Frame], Any, int]:
    pgconn = FakePgconn(messages)
    payloads: list[Frame] = []
    nbytes, data, wal_end = function(pgconn.get_copy_data, payloads)
    return payloads, (nbytes, bytes(data)), wal_end


def test_the_compiled_reader_is_the_one_in_use() -> None:
    import cdc.pipeline.stream as stream

    assert compiled_read is not None and stream._read_xlogdata is compiled_read


lsns = st.integers(0, 2**64 - 1)
messages = st.one_of(
    st.builds(xlogdata, lsns, lsns, st.binary(max_size=60)),
    st.builds(keepalive, lsns, st.booleans()),
    st.binary(max_size=30),  # short, unknown, or a 'w' shorter than its header
)


@given(st.lists(messages, max_size=12))
def test_the_compiled_reader_takes_what_the_reference_takes(given_messages: list[bytes]) -> None:
    assert compiled_read is not None
    assert read(compiled_read, given_messages) == read(_py_read_xlogdata, given_messages)


def test_xlogdata_payloads_are_taken_until_a_keepalive_with_the_highest_wal_end() -> None:
    for function in (f for f in (compiled_read, _py_read_xlogdata) if f is not None):
        taken = read(
            function,
            [xlogdata(10, 30, b"B1"), xlogdata(31, 20, b"I2"), keepalive(40, True), b"after"],
        )
        assert taken == ([b"B1", b"I2"], (18, keepalive(40, True)), 30)


def stream() -> ReplicationStream:
    return ReplicationStream("host=unused", slot="s", publication="p")


def test_a_poll_gives_payloads_and_keepalives_in_order_and_moves_received_lsn() -> None:
    s = stream()
    pgconn = FakePgconn(
        [xlogdata(1, 0x100, b"B"), keepalive(0x180, False), xlogdata(0x100, 0x120, b"C")]
    )
    frames = s._read_available(pgconn)
    assert frames == [b"B", Keepalive(0x180, False), b"C"]
    assert s.received_lsn == 0x180, "the highest WAL end seen, never moved back"


def test_an_xlogdata_shorter_than_its_header_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="need 25 bytes, got 24"):
        stream()._read_available(FakePgconn([xlogdata(1, 2, b"")[:24]]))


def test_an_unknown_replication_message_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unknown replication message"):
        stream()._read_available(FakePgconn([xlogdata(1, 2, b"B"), b"x123"]))


def test_the_end_of_the_stream_after_payloads_is_a_lost_connection() -> None:
    s = stream()
    with pytest.raises(ConnectError, match="server closed the connection"):
        s._read_available(FakePgconn([xlogdata(1, 0x50, b"B")], ended=True))
    assert s.received_lsn == 0x50
