"""Decoding one message, and a stream of them: the fast path first, the checked one as the
reference and the fallback that names what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cdc.errors import DecodeError
from cdc.pipeline.core import compiled
from cdc.pipeline.pgoutput.fast import FAST_ERRORS, fast_decode
from cdc.pipeline.pgoutput.messages import MESSAGE_TYPES, PgOutputMessage, StreamStart, StreamStop
from cdc.pipeline.pgoutput.reader import Reader, show_byte

# Bound here rather than used under their imported names: CPython compiles ``imported.get()``
# as an attribute load plus a call (a bound method per message) instead of a method call.
_TYPES_BY_BYTE: Final = MESSAGE_TYPES

# The compiled fast path (cdc/pipeline/_core.pyx) when there is one; fast_decode is its
# reference (cdc.pipeline.core chooses, once).
_fast: Final[Callable[[bytes, bool], PgOutputMessage | None]] = (
    compiled.decode_fast if compiled is not None else fast_decode
)


def decode_checked(data: bytes, in_stream: bool) -> PgOutputMessage:
    """Decode with every field checked; the reference the fast path must agree with."""
    if not data:
        raise DecodeError("unknown", "type", 0, "empty message: no type byte")
    type_byte = data[0]
    kind = _TYPES_BY_BYTE.get(type_byte)
    if kind is None:
        raise DecodeError("unknown", "type", 0, f"unknown message type {show_byte(type_byte)}")
    reader = Reader(data, kind.NAME)
    message = kind.read(reader, in_stream)
    reader.done()
    return message


def decode_message(
    data: bytes | bytearray | memoryview, *, in_stream: bool = False
) -> PgOutputMessage:
    """Decode one pgoutput message.

    ``in_stream`` says the message arrived between a Stream Start and a Stream Stop: then
    Relation, Type, Insert, Update, Delete, Truncate and Message start with the Int32 xid of
    the (sub)transaction they belong to. Raises :class:`~cdc.errors.DecodeError`, and nothing
    else, for any input that is not exactly one well-formed message.
    """
    # A memoryview of a receive buffer is copied once: the fast path needs bytes.decode().
    buf = data if data.__class__ is bytes else bytes(data)
    try:
        message = _fast(buf, in_stream)
        if message is not None:
            return message
    except FAST_ERRORS:
        pass  # re-walk with the checked decoding, which names the field and offset
    return decode_checked(buf, in_stream)


class PyDecoder:
    """Decodes a sequence of messages, tracking Stream Start / Stream Stop for ``in_stream``.

    Still pure: no I/O, and a message that fails to decode leaves the state unchanged. The
    reference of the compiled ``Decoder`` (cdc/pipeline/_decoder.pxi), which does the same
    without the two Python frames (this method and :func:`decode_message`) per payload.
    """

    __slots__ = ("_in_stream",)

    def __init__(self) -> None:
        self._in_stream = False

    @property
    def in_stream(self) -> bool:
        """True between a decoded Stream Start and the next Stream Stop."""
        return self._in_stream

    def decode(self, data: bytes | bytearray | memoryview) -> PgOutputMessage:
        message = decode_message(data, in_stream=self._in_stream)
        kind = message.__class__
        if kind is StreamStart:
            self._in_stream = True
        elif kind is StreamStop:
            self._in_stream = False
        return message


# The decoder the pipeline uses: compiled where it was built (cdc.pipeline.core chooses, once).
Decoder: Final[type[PyDecoder]] = compiled.Decoder if compiled is not None else PyDecoder
