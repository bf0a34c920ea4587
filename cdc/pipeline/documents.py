"""A row as the JSON documents of its record (``old``, ``new``, ``changes``), in jsonb's text
form: the pure Python reference, and the compiled one (cdc/pipeline/_core.pyx) chosen once
where it was built (cdc.pipeline.core). The per-relation parts (keys, kinds, converters, the
columns in jsonb's key order) come from :class:`cdc.pipeline.activity.TableMapper`.
"""

from __future__ import annotations

from collections.abc import Callable

from cdc.pipeline.core import compiled
from cdc.pipeline.pgoutput import UNCHANGED_TOAST, TupleData
from cdc.pipeline.values import JsonConverter, encode_json_string


def _other_json(value: object) -> str:
    """A column value that is not text, as row_json writes it: NULL, or a binary format
    column (not requested by the stream) as hex text."""
    if value is None:
        return "null"
    assert isinstance(value, bytes)
    return encode_json_string("\\x" + value.hex())


def _py_row_json(
    keys: tuple[str, ...],
    kinds: tuple[int, ...],
    converters: tuple[JsonConverter, ...],
    values: TupleData,
    positions: tuple[int, ...] | None,
) -> str:
    """The row as a JSON object in jsonb's text form (every column in column order, or those at
    ``positions``, in that order). The reference of cdc/pipeline/_core.pyx's row_json
    (``kinds`` is what the compiled one inlines; unused here)."""
    parts = []
    for index in range(len(values)) if positions is None else positions:
        value = values[index]
        if value is None:
            parts.append(keys[index] + "null")
        elif type(value) is str:
            parts.append(keys[index] + converters[index](value))
        elif value is UNCHANGED_TOAST:
            continue  # listed in the record's context as unavailable
        else:  # binary format column: not requested by the stream; keep it as hex text
            assert isinstance(value, bytes)
            parts.append(keys[index] + encode_json_string("\\x" + value.hex()))
    return "{" + ", ".join(parts) + "}"


def _py_update_json(
    keys: tuple[str, ...],
    changed_keys: tuple[str, ...],
    kinds: tuple[int, ...],
    converters: tuple[JsonConverter, ...],
    old: TupleData,
    new: TupleData,
    order: tuple[int, ...],
) -> tuple[str, str, list[int], list[str]]:
    """An update with the whole old row: the old and new rows' JSON, the positions of the
    changed columns and their diffs, in one pass, the columns taken in ``order`` (jsonb's key
    order). An unchanged column (most of them) is converted once and its text shared by both
    rows. The reference of cdc/pipeline/_core.pyx's."""
    old_parts: list[str] = []
    new_parts: list[str] = []
    changed: list[int] = []
    diffs: list[str] = []
    if len(old) != len(new):
        raise ValueError("the old and the new row have different numbers of columns")
    for index in order:
        before = old[index]
        after = new[index]
        if after is UNCHANGED_TOAST:  # listed in the record's context as unavailable
            if before is not UNCHANGED_TOAST:
                old_parts.append(keys[index] + _other_json(before))
            continue
        after_json = converters[index](after) if after.__class__ is str else _other_json(after)
        fragment = keys[index] + after_json
        new_parts.append(fragment)
        if before == after:
            old_parts.append(fragment)
            continue
        before_json = "null"
        if before is not UNCHANGED_TOAST:
            before_json = (
                converters[index](before) if before.__class__ is str else _other_json(before)
            )
            old_parts.append(keys[index] + before_json)
        changed.append(index)
        # the diff shows a value that is not text (binary, unavailable) as null
        diffs.append(
            changed_keys[index]
            + (after_json if after.__class__ is str or after is None else "null")
            + ', "old": '
            + (before_json if before.__class__ is str or before is None else "null")
            + "}"
        )
    return (
        "{" + ", ".join(old_parts) + "}",
        "{" + ", ".join(new_parts) + "}",
        changed,
        diffs,
    )


# The compiled versions (cdc/pipeline/_core.pyx) when there are, chosen once (cdc.pipeline.core).
_Keys = tuple[str, ...]
_Kinds = tuple[int, ...]
_Converters = tuple[JsonConverter, ...]
row_json: Callable[[_Keys, _Kinds, _Converters, TupleData, tuple[int, ...] | None], str] = (
    compiled.row_json if compiled is not None else _py_row_json
)
update_json: Callable[
    [_Keys, _Keys, _Kinds, _Converters, TupleData, TupleData, tuple[int, ...]],
    tuple[str, str, list[int], list[str]],
] = compiled.update_json if compiled is not None else _py_update_json
