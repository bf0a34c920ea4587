"""The checked reader: a cursor over one message that checks each field before reading it.

Every field a message's ``read`` takes goes through :class:`Reader`, which raises
:class:`~cdc.errors.DecodeError` naming the message kind, the field and the byte offset where
the field starts. Nothing is allocated from an unchecked length: every length and count is
compared with the bytes left before it is used.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn

from cdc.errors import DecodeError

PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

U16: Final = struct.Struct("!H")
U32: Final = struct.Struct("!I")
I32: Final = struct.Struct("!i")
U64: Final = struct.Struct("!Q")
I64: Final = struct.Struct("!q")


# The last timestamp converted: a transaction's Begin and Commit carry the same commit time,
# so every second conversion is this one (one tuple, replaced whole: safe to share).
_last_time: tuple[int, datetime] = (0, PG_EPOCH)


def pg_time(micros: int) -> datetime:
    """Int64 microseconds since 2000-01-01 UTC. Raises OverflowError outside datetime's range;
    both decoders turn that into DecodeError."""
    global _last_time
    last = _last_time
    if last[0] == micros:
        return last[1]
    moment = PG_EPOCH + timedelta(microseconds=micros)
    _last_time = (micros, moment)
    return moment


def show_byte(value: int) -> str:
    text = chr(value)
    if text.isascii() and text.isprintable():
        return f"0x{value:02x} ({text!r})"
    return f"0x{value:02x}"


class Reader:
    """Cursor over one message that checks every field before reading it."""

    __slots__ = ("data", "kind", "pos")

    def __init__(self, data: bytes, kind: str) -> None:
        self.data = data
        self.pos = 1  # after the type byte
        self.kind = kind

    def fail(self, field: str, detail: str, offset: int) -> NoReturn:
        raise DecodeError(self.kind, field, offset, detail)

    def left(self) -> int:
        return len(self.data) - self.pos

    def _take(self, field: str, size: int) -> int:
        start = self.pos
        left = len(self.data) - start
        if left < size:
            self.fail(field, f"truncated: needs {size} bytes, {left} left", start)
        self.pos = start + size
        return start

    def u8(self, field: str) -> int:
        return self.data[self._take(field, 1)]

    def u16(self, field: str) -> int:
        return int(U16.unpack_from(self.data, self._take(field, 2))[0])

    def u32(self, field: str) -> int:
        return int(U32.unpack_from(self.data, self._take(field, 4))[0])

    def i32(self, field: str) -> int:
        return int(I32.unpack_from(self.data, self._take(field, 4))[0])

    def u64(self, field: str) -> int:
        return int(U64.unpack_from(self.data, self._take(field, 8))[0])

    def flag(self, field: str) -> bool:
        start = self.pos
        value = self.u8(field)
        if value > 1:
            self.fail(field, f"expected 0 or 1, got {show_byte(value)}", start)
        return value == 1

    def char(self, field: str, allowed: str) -> str:
        start = self.pos
        value = self.u8(field)
        text = chr(value)
        if text not in allowed:
            expected = ", ".join(repr(c) for c in allowed)
            self.fail(field, f"expected one of {expected}, got {show_byte(value)}", start)
        return text

    def time(self, field: str) -> datetime:
        start = self.pos
        micros = int(I64.unpack_from(self.data, self._take(field, 8))[0])
        try:
            return pg_time(micros)
        except OverflowError:
            self.fail(field, f"timestamp {micros} (µs since 2000-01-01) is out of range", start)

    def string(self, field: str) -> str:
        start = self.pos
        end = self.data.find(0, start)
        if end < 0:
            self.fail(field, "missing NUL terminator", start)
        self.pos = end + 1
        return self.utf8(field, start, end)

    def utf8(self, field: str, start: int, end: int) -> str:
        try:
            return self.data[start:end].decode()
        except UnicodeDecodeError as exc:
            self.fail(field, f"invalid UTF-8 at byte {start + exc.start}", start)

    def length(self, field: str) -> int:
        """An Int32 length of bytes that must follow; checked before anything is sliced."""
        start = self.pos
        length = self.i32(field)
        if length < 0:
            self.fail(field, f"negative length {length}", start)
        left = self.left()
        if length > left:
            self.fail(field, f"length {length} exceeds the {left} bytes left", start)
        return length

    def count(self, field: str, size: int) -> int:
        """An Int16 count of items of at least ``size`` bytes each; fails fast if they can't fit."""
        start = self.pos
        count = self.u16(field)
        left = self.left()
        if count * size > left:
            self.fail(
                field, f"{count} items of at least {size} bytes cannot fit in {left} left", start
            )
        return count

    def raw(self, length: int) -> bytes:
        # Only called with a length already checked by length().
        start = self.pos
        self.pos = start + length
        return self.data[start : self.pos]

    def xid_if(self, in_stream: bool) -> int | None:
        return self.u32("xid") if in_stream else None

    def done(self) -> None:
        extra = self.left()
        if extra:
            self.fail("end of message", f"{extra} unexpected trailing byte(s)", self.pos)
