# The replication stream's CopyData messages, compiled (included by _core.pyx):
# ``read_xlogdata`` mirrors ``cdc.pipeline.stream._py_read_xlogdata``, its reference. Nearly
# every message of a stream is an XLogData; its header is read and its payload copied out
# here, with no Python bytecode per message. Anything else goes back to the caller.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer


def read_xlogdata(object get_copy_data, list payloads):
    """Calls ``get_copy_data(1)`` and appends the payload of each XLogData message it gives
    (the bytes after the 25-byte header) to ``payloads``, until it gives anything else.
    Returns ``(nbytes, data, wal_end)``: what stopped it (``nbytes`` 0: nothing more to read;
    below 0: the end of the stream; else a message that is not a whole XLogData, for the
    caller) and the highest WAL end of the payloads taken (0: none)."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef unsigned long long wal_end = 0
    cdef unsigned long long end
    cdef Py_ssize_t nbytes
    while True:
        nbytes, data = get_copy_data(1)
        if nbytes < 25:
            return nbytes, data, wal_end
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char*>view.buf
            if view.len < 25 or p[0] != 0x77:
                return nbytes, data, wal_end
            end = _u64(p + 9)
            if end > wal_end:
                wal_end = end
            payloads.append(PyBytes_FromStringAndSize(<const char*>p + 25, view.len - 25))
        finally:
            PyBuffer_Release(&view)
