# A growing byte buffer for the compiled core's writers (included by _core.pyx and
# _copy_lines.pyx): text is built as UTF-8 in one allocation and turned into one Python object
# at the end, instead of a str per piece joined and encoded again. The owner frees ``data``
# with PyMem_Free.

from cpython.mem cimport PyMem_Realloc
from libc.string cimport memcpy


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _reserve(Buffer* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t wanted = buf.size + extra
    cdef Py_ssize_t capacity
    cdef char* grown
    if wanted <= buf.capacity:
        return 0
    capacity = buf.capacity * 2 if buf.capacity else 1024
    while capacity < wanted:
        capacity *= 2
    grown = <char*>PyMem_Realloc(buf.data, capacity)
    if grown == NULL:
        raise MemoryError()
    buf.data = grown
    buf.capacity = capacity
    return 0


cdef inline int _put(Buffer* buf, const char* text, Py_ssize_t n) except -1:
    _reserve(buf, n)
    memcpy(buf.data + buf.size, text, n)
    buf.size += n
    return 0


cdef inline int _put_char(Buffer* buf, char ch) except -1:
    _reserve(buf, 1)
    buf.data[buf.size] = ch
    buf.size += 1
    return 0
