"""TupleData: the column values of a row in Insert, Update and Delete, and their decoding.

Each column becomes ``str`` (kind ``'t'``), ``bytes`` (``'b'``), ``None`` (``'n'``) or
:data:`UNCHANGED_TOAST` (``'u'``: a TOASTed value the UPDATE did not change, which the server
omits).
"""

from __future__ import annotations

from typing import Final, TypeAlias, final

from cdc.pipeline.pgoutput.reader import Reader, show_byte


@final
class UnchangedToast:
    """The value of a TOASTed column that an UPDATE did not change; the server omits it.

    There is exactly one instance, :data:`UNCHANGED_TOAST`; compare with ``is``.
    """

    __slots__ = ()

    def __new__(cls) -> UnchangedToast:
        return UNCHANGED_TOAST

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        # Pickle and copy by reference to the module global, keeping the singleton single.
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final[UnchangedToast] = object.__new__(UnchangedToast)

ColumnValue: TypeAlias = str | bytes | UnchangedToast | None
TupleData: TypeAlias = tuple[ColumnValue, ...]

# Byte values of the column kinds, compared as ints because indexing bytes yields ints.
KIND_TEXT: Final = ord("t")
KIND_NULL: Final = ord("n")
KIND_UNCHANGED: Final = ord("u")
KIND_BINARY: Final = ord("b")


def read_tuple(r: Reader, name: str) -> TupleData:
    """Int16 column count, then per column a kind byte and, for ``'t'`` and ``'b'``, an Int32
    length and that many bytes."""
    count = r.count(f"{name}.count", 1)  # every column has at least its kind byte
    values: list[ColumnValue] = []
    for i in range(count):
        start = r.pos
        kind = r.u8(f"{name}[{i}].kind")
        if kind == KIND_TEXT:
            length = r.length(f"{name}[{i}].length")
            value_start = r.pos
            r.pos += length
            values.append(r.utf8(f"{name}[{i}].value", value_start, r.pos))
        elif kind == KIND_NULL:
            values.append(None)
        elif kind == KIND_UNCHANGED:
            values.append(UNCHANGED_TOAST)
        elif kind == KIND_BINARY:
            values.append(r.raw(r.length(f"{name}[{i}].length")))
        else:
            r.fail(
                f"{name}[{i}].kind",
                f"expected one of 'n', 'u', 't', 'b', got {show_byte(kind)}",
                start,
            )
    return tuple(values)
