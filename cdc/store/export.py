"""Records as text for ``cdc activity --follow --format json|csv`` and ``cdc activity history
--format json``, one record at a time, from the records the reader returned. Pure.

CSV: the columns of :data:`~cdc.store.STORED_COLUMNS`; NULL as an empty field, JSON values
(old, new, changes, context) as compact JSON text. A page or an export (``cdc activity
--format json|csv`` without ``--follow``, and the web export) is rendered by PostgreSQL instead
(:meth:`cdc.store.Store.export`: one COPY, 15x faster than decoding and re-encoding each row
here, and row values exactly as stored).
"""

from __future__ import annotations

import json
from typing import Any

from cdc.store.model import StoredRecord


def json_line(record: StoredRecord) -> str:
    """The record as one line of JSON (no newline)."""
    return json.dumps(record.as_json(), ensure_ascii=False, separators=(",", ":"))


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def csv_row(record: StoredRecord) -> list[Any]:
    return [csv_value(v) for v in record.as_json().values()]
