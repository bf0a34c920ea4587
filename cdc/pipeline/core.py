"""The hot path's compiled core, or the pure Python it mirrors: chosen once, at import.

The inner loops that run for every change and every column (decoding the hot pgoutput
messages, rendering a row and an update's diff as JSON) exist twice, as psycopg ships its
transformer twice: in pure Python (``pgoutput._fast_decode``,
``changes._py_has_unchanged_toast``, ``documents._py_row_json`` and ``_py_update_json``), the
reference, and compiled by Cython from ``_core.pyx`` (this package's ``_core``) when the
package was built with a C compiler. ``compiled`` is that module, or None where it was not
built or ``CDC_PURE_PYTHON=1`` forces the pure one (the tests run both:
tests/unit/test_core_differential.py proves they agree).

The compiled row functions inline the built-in converters of cdc.pipeline.values; a
column's *kind* (:func:`converter_kind`, resolved once per relation) says which one it has.
Any other converter (arrays, user-defined types, redaction) has kind ``CALL`` and is called as
it is, so a converter added to cdc.pipeline.values later is correct in both implementations
from the start.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final, Literal

from cdc.pipeline import values

# Kinds of column converters, numbered as cdc/pipeline/_core.pyx numbers them.
CALL: Final = 0
STRING: Final = 1
NUMBER: Final = 2
BOOL: Final = 3
RAW: Final = 4
TIMESTAMP: Final = 5
TIMESTAMPTZ: Final = 6

_KINDS: Final[dict[values.JsonConverter, int]] = {
    values.as_string: STRING,
    values.as_number: NUMBER,
    values.as_bool: BOOL,
    values.as_raw_json: RAW,
    values.as_timestamp: TIMESTAMP,
    values.as_timestamptz: TIMESTAMPTZ,
}


def converter_kind(converter: values.JsonConverter) -> int:
    """The kind of a column's converter: a built-in one the compiled core inlines, or CALL."""
    return _KINDS.get(converter, CALL)


def _load(name: str) -> ModuleType | None:
    if os.environ.get("CDC_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"cdc.pipeline.{name}")
    except ImportError:  # not built: no compiler where the package was installed
        return None


compiled: Final[ModuleType | None] = _load("_core")
# The sink's COPY data (cdc/pipeline/_copy_lines.pyx; references:
# cdc.pipeline.copy_lines._py_encode_chained_rows and _py_encode_binary_rows), built and chosen
# with the core.
copy_lines: Final[ModuleType | None] = _load("_copy_lines") if compiled is not None else None
# A row change's record (cdc/pipeline/_mapping.pyx; reference:
# cdc.pipeline.activity.ActivityMapper._py_row_change).
mapping: Final[ModuleType | None] = _load("_mapping") if compiled is not None else None
IMPLEMENTATION: Final[Literal["compiled", "python"]] = "compiled" if compiled else "python"
