"""The JSON the API answers with, as pydantic models: they document the contract in the
OpenAPI document. The routes build plain dicts (:func:`record_json`) and the models describe
them; a test checks the two agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Path
from pydantic import BaseModel, Field

from cdc.store import StoredRecord

PathText = Path(min_length=1, max_length=256, pattern=r"^[^\x00]+$")


def record_json(record: StoredRecord) -> dict[str, Any]:
    """A record as the API gives it: the stored columns (times as ISO 8601), the table as
    ``schema.table``, and its keyset ``cursor`` and ``position`` (commit_lsn,seq). What
    PostgreSQL renders for the pages (cdc.store.queries.api_columns), here for the live
    stream's records: times as JSON writes them (no trailing zeros in the fraction)."""
    data = record.as_json()
    occurred_at = iso(record.occurred_at)
    data["occurred_at"] = occurred_at
    data["recorded_at"] = iso(record.recorded_at)
    data["table"] = record.table
    data["cursor"] = f"{occurred_at},{record.commit_lsn},{record.seq}"
    data["position"] = f"{record.commit_lsn},{record.seq}"
    return data


def iso(moment: datetime) -> str:
    """ISO 8601 as PostgreSQL's JSON writes a timestamptz: 10:00:00.12+00:00, 10:00:00+00:00."""
    text = moment.isoformat()
    if not moment.microsecond:
        return text
    head, _, rest = text.partition(".")
    return f"{head}.{rest[:6].rstrip('0')}{rest[6:]}"


class Record(BaseModel):
    occurred_at: str = Field(description="The source transaction's commit time, ISO 8601")
    recorded_at: str
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
    context: Any = Field(description="The transaction's context (actor, request claims, ...)")
    old: Any = Field(description="The row before the change, as to_jsonb renders it")
    new: Any = Field(description="The row after the change, as to_jsonb renders it")
    changes: Any = Field(description='{"column": {"old": ..., "new": ...}} of an update')
    summary: str | None
    xid: int | None
    commit_lsn: str
    seq: int
    table: str | None
    cursor: str = Field(description="Pass as `after` for the page after this record")
    position: str = Field(description="commit_lsn,seq: /api/record?lsn=&seq=, /api/live?from=")


class ActivityPage(BaseModel):
    records: list[Record]
    next: str | None = Field(description="`after` of the next page; null on the last page")
    live_from: str | None = Field(description="First page only: `from` of /api/live")


class RecordDetail(BaseModel):
    record: Record
    transaction: list[Record] = Field(description="Its transaction's records, in order")
    transaction_truncated: bool


class History(BaseModel):
    records: list[Record]


class Count(BaseModel):
    value: str
    n: int
    previous: int
    change: float | None


class Window(BaseModel):
    start: str
    end: str
    previous_start: str
    grain_seconds: int


class TrendPoint(BaseModel):
    start: str
    n: int


class Stats(BaseModel):
    window: Window
    total: int
    previous_total: int
    change: float | None
    breakdowns: dict[str, list[Count]]
    trend_step_seconds: int
    trend: list[TrendPoint]


class Slot(BaseModel):
    slot: str
    active: bool
    wal_status: str | None
    confirmed_flush_lsn: str | None
    current_lsn: str
    retained_bytes: int | None
    unconfirmed_bytes: int | None


class Health(BaseModel):
    checked_at: str
    last_commit_lsn: str | None
    acknowledged_lsn: str | None
    last_commit_at: str | None
    last_commit_age_seconds: float | None
    slot: Slot | None
    records_per_second: float
    records_last_hour: int
    dead_letters: int | None
    chain_position: int | None
    chain_updated_at: str | None
    chain_verified_at: str | None = Field(description="The last cdc verify-chain; null: never")
    chain_intact: bool | None
    chain_checked: int | None
    chain_problem: str | None
    lag_bytes: int | None
    lag_seconds: float | None
