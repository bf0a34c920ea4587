# The stream's decoder, compiled (included by _core.pyx): ``Decoder`` mirrors
# ``cdc.pipeline.pgoutput.decode.PyDecoder``, its reference. The same steps as
# ``decode_message`` (the fast path, then the checked decoding for anything it does not take
# or rejects) and the same Stream Start / Stream Stop tracking, without the two Python frames
# the reference pays per payload.

cdef object _decode_checked = None
cdef object _fast_errors = None
cdef object _StreamStart = None
cdef object _StreamStop = None


cdef _load_decoder():
    global _decode_checked, _fast_errors, _StreamStart, _StreamStop
    from cdc.pipeline.pgoutput import decode, fast, messages

    _decode_checked, _fast_errors = decode.decode_checked, fast.FAST_ERRORS
    _StreamStart, _StreamStop = messages.StreamStart, messages.StreamStop


cdef class Decoder:
    """Decodes a sequence of messages, tracking Stream Start / Stream Stop for ``in_stream``
    (``cdc.pipeline.pgoutput.decode.PyDecoder``, compiled)."""

    cdef bint _in_stream

    def __init__(self):
        self._in_stream = False
        if _decode_checked is None:
            _load_decoder()

    @property
    def in_stream(self):
        """True between a decoded Stream Start and the next Stream Stop."""
        return self._in_stream

    def decode(self, data):
        cdef bytes buf = data if type(data) is bytes else bytes(data)
        try:
            message = _decode_fast(buf, self._in_stream)
        except _fast_errors:
            message = None  # re-walked by the checked decoding, which names the field
        if message is None:
            message = _decode_checked(buf, self._in_stream)
        kind = type(message)
        if kind is _StreamStart:
            self._in_stream = True
        elif kind is _StreamStop:
            self._in_stream = False
        return message
