"""Records as text for an export: JSON Lines and CSV, one record at a time (so an export of
millions holds one record's text, never the file). One encoding for ``cdc activity --format
json|csv`` and the web export. Pure.

CSV: the columns of :data:`~cdc.store.STORED_COLUMNS`; NULL as an empty field, JSON values
(old, new, changes, context) as compact JSON text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from cdc.store.model import STORED_COLUMNS, StoredRecord


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


def jsonl_chunks(records: Iterable[StoredRecord], *, rows_per_chunk: int = 500) -> Iterator[str]:
    """JSON Lines, ``rows_per_chunk`` records per piece of text."""
    lines: list[str] = []
    for record in records:
        lines.append(json_line(record))
        if len(lines) == rows_per_chunk:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"


def csv_chunks(records: Iterable[StoredRecord], *, rows_per_chunk: int = 500) -> Iterator[str]:
    """CSV with a header line (RFC 4180 quoting, CRLF-free: \\n ends a row), in pieces of
    ``rows_per_chunk`` records."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STORED_COLUMNS)
    rows = 0
    for record in records:
        writer.writerow(csv_row(record))
        rows += 1
        if rows == rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            rows = 0
    if buffer.tell():
        yield buffer.getvalue()
