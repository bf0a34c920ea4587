"""A record as one line of JSON for ``cdc activity history --format json``, from a record the
reader returned. Pure.

``cdc activity --format json|csv`` (pages, exports, ``--follow``) and the web export are
rendered by PostgreSQL instead (:meth:`cdc.store.Store.export`, :meth:`Follower.start_export`:
one COPY, 15x faster than decoding and re-encoding each row here, and row values exactly as
stored).
"""

from __future__ import annotations

import json

from cdc.store.model import StoredRecord


def json_line(record: StoredRecord) -> str:
    """The record as one line of JSON (no newline)."""
    return json.dumps(record.as_json(), ensure_ascii=False, separators=(",", ":"))
