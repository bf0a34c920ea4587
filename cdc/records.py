"""The columns of an activity record, once: the sink writes :data:`RECORD_COLUMNS` (in this
order, with COPY), the store adds ``recorded_at``, and the readers return
:data:`STORED_COLUMNS`. The record types of the pipeline
(:class:`cdc.pipeline.activity.ActivityRecord`) and of the store
(:class:`cdc.store.model.StoredRecord`) are checked against these when they are defined."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

RECORD_COLUMNS: Final[tuple[str, ...]] = (
    "occurred_at",
    "source",
    "operation",
    "action",
    "category",
    "severity",
    "schema_name",
    "table_name",
    "entity_type",
    "entity_id",
    "actor_id",
    "context",
    "old",
    "new",
    "changes",
    "summary",
    "xid",
    "commit_lsn",
    "seq",
)

# recorded_at: when the store wrote the row (its default, now()); it follows occurred_at.
STORED_COLUMNS: Final[tuple[str, ...]] = (
    RECORD_COLUMNS[0],
    "recorded_at",
    *RECORD_COLUMNS[1:],
)


def same_columns(kind: str, fields: Sequence[str], columns: tuple[str, ...]) -> tuple[str, ...]:
    """``columns``, after checking that a record type's fields are exactly them, in order."""
    if tuple(fields) != columns:
        raise TypeError(f"{kind} fields {tuple(fields)} are not the record columns {columns}")
    return columns
