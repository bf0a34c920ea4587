# cython: language_level=3, boundscheck=False, wraparound=False
# A prototype, for bench/summary_doc_cost.py only: what the daemon would spend to send the
# summary's full-text document (docs/benchmarks.md, session 9). Not used by activity-cdc.
cdef bint _plain(str piece):
    cdef Py_UCS4 ch
    if not piece:
        return False
    for ch in piece:
        if not (('a' <= ch <= 'z') or ('0' <= ch <= '9') or ('A' <= ch <= 'Z')):
            return False
    return True

def summary_doc(str summary, dict cache):
    """The tsvector (binary send format) of summary from cached piece tokenisations; None when
    a piece is neither cached nor plain alphanumeric."""
    cdef dict positions = {}
    cdef int pos = 0
    cdef str piece, core
    cdef tuple entry
    cdef list lexemes
    cdef Py_ssize_t n
    for piece in summary.split(" "):
        entry = cache.get(piece)
        if entry is None:
            core = piece
            n = len(core)
            if n and core[n - 1] in ",:":
                core = core[:n - 1]
            if not _plain(core):
                return None
            pos += 1
            lexeme = core.lower().encode()
            found = positions.get(lexeme)
            if found is None:
                positions[lexeme] = [pos]
            else:
                found.append(pos)
        else:
            for lexeme, rel in entry[0]:
                found = positions.get(lexeme)
                if found is None:
                    positions[lexeme] = [pos + r for r in rel]
                else:
                    found.extend([pos + r for r in rel])
            pos += entry[1]
    lexemes = sorted(positions)
    cdef bytearray out = bytearray(len(lexemes).to_bytes(4, "big"))
    cdef list plist
    cdef int p
    for lexeme in lexemes:
        plist = positions[lexeme]
        out += lexeme
        out.append(0)
        out += len(plist).to_bytes(2, "big")
        for p in plist:
            out.append(p >> 8)
            out.append(p & 0xFF)
    return bytes(out)
