"""The activity record: what the mapping makes of a change and the sink writes (its columns,
once, in cdc.records), the values of its ``source``, and its commit's time and LSN as text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from cdc import records
from cdc.config import SEVERITY_LEVELS
from cdc.lsn import format_lsn
from cdc.pipeline.core import mapping

SOURCE_DATABASE = "database"
SOURCE_SHADOW = "shadow"  # a table still audited by its legacy triggers (before its cutover)
SOURCE_APPLICATION = "application"
SOURCE_MIGRATION = "migration"
CUTOVER_PREFIX = "cdc.cutover"
HEARTBEAT_PREFIX = "cdc.heartbeat"
PAST_TENSE = {
    "insert": "created",
    "update": "updated",
    "delete": "deleted",
    "truncate": "truncated",
}
SEVERITIES = SEVERITY_LEVELS


class ActivityRecord(NamedTuple):
    """One row of the activity store, in the column order of the sink's COPY.

    JSON columns hold JSON text; ``commit_lsn`` its ``X/Y`` text; ``occurred_at`` ISO 8601.
    """

    occurred_at: str
    source: str
    operation: str
    action: str
    category: str
    severity: str
    schema_name: str | None
    table_name: str | None
    entity_type: str | None
    entity_id: str | None
    actor_id: str | None
    context: str | None
    old: str | None
    new: str | None
    changes: str | None
    summary: str | None
    xid: int | None
    commit_lsn: str
    seq: int


RECORD_COLUMNS = records.same_columns(
    "ActivityRecord", ActivityRecord._fields, records.RECORD_COLUMNS
)


def _py_iso(moment: datetime) -> str:
    return moment.isoformat()


# A commit's time and LSN as text, once per transaction: compiled where built
# (cdc/pipeline/_mapping.pyx), ~1.5 µs less per transaction than isoformat and the f-string.
iso_text: Callable[[datetime], str] = mapping.iso_datetime if mapping is not None else _py_iso
lsn_text: Callable[[int], str] = mapping.lsn_text if mapping is not None else format_lsn
