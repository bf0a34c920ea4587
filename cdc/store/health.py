"""The pipeline's health as the store shows it (the dashboard, ``GET /api/health``): where the
daemon is (its checkpoint, written with the records it covers), how far behind the slot is,
records per second from the per-minute rollups, changes parked as dead letters, the hash
chain's head and its last verification (``cdc verify-chain`` keeps each outcome).

Read with the reader's connection to the sink database, nothing else: the slot is seen through
``pg_replication_slots`` (readable by every role) when the records live in the source database,
the default; with a separate sink database the slot is not visible from there and
``slot`` is None (``cdc lag`` on the source tells).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from cdc.sqlfiles import sql_text
from cdc.store.reader import Store

# Records per second: the per-minute rollups of the minute under way and the whole minutes
# before it, RATE_MINUTES of them in all.
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class SlotStatus:
    slot: str
    active: bool
    wal_status: str | None
    confirmed_flush_lsn: str | None
    current_lsn: str
    retained_bytes: int | None
    unconfirmed_bytes: int | None


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    checked_at: datetime
    # the daemon's checkpoint: the last source commit recorded (and acknowledged after it)
    last_commit_lsn: str | None
    acknowledged_lsn: str | None
    last_commit_at: datetime | None
    last_commit_age_seconds: float | None
    slot: SlotStatus | None  # None: not visible from the sink database
    records_per_second: float  # over the last RATE_MINUTES (the current one partly)
    records_last_hour: int  # in the minute under way and the 59 before
    dead_letters: int | None  # None: the reader may not see them
    chain_position: int | None  # None: no hash chain (or not visible)
    chain_updated_at: datetime | None
    # the last `cdc verify-chain` (None: never run, or not visible)
    chain_verified_at: datetime | None = None
    chain_intact: bool | None = None
    chain_checked: int | None = None
    chain_problem: str | None = None

    @property
    def lag_bytes(self) -> int | None:
        return None if self.slot is None else self.slot.unconfirmed_bytes

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("checked_at", "last_commit_at", "chain_updated_at", "chain_verified_at"):
            moment = getattr(self, name)
            data[name] = None if moment is None else moment.isoformat()
        data["lag_bytes"] = self.lag_bytes
        data["lag_seconds"] = self.last_commit_age_seconds
        return data


def pipeline_health(store: Store) -> PipelineHealth:
    settings = store.settings
    schema = settings.sink.schema_name
    now = store.now()
    checkpoint = store.fetch(
        sql.SQL(
            "SELECT commit_lsn::text, end_lsn::text, commit_time FROM {} WHERE slot_name = %s"
        ).format(sql.Identifier(schema, "checkpoints")),
        [settings.source.slot],
    )
    commit_lsn, end_lsn, commit_time = checkpoint[0] if checkpoint else (None, None, None)
    slot_rows = store.fetch(sql.SQL(sql_text("slot_lag.sql")), {"slot": settings.source.slot})
    slot = None
    if slot_rows:
        row = slot_rows[0]
        slot = SlotStatus(row[0], row[1], row[3], row[6], row[7], row[8], row[9])
    minute = now.replace(second=0, microsecond=0)
    rate_start = minute - timedelta(minutes=RATE_MINUTES - 1)
    rate_rows = store.fetch(
        sql.SQL(
            "SELECT coalesce(sum(n) FILTER (WHERE bucket >= %s), 0)::bigint, "
            "coalesce(sum(n), 0)::bigint FROM {} WHERE bucket >= %s"
        ).format(sql.Identifier(schema, "activity_per_minute")),
        [rate_start, minute - timedelta(minutes=59)],
    )
    recent, last_hour = rate_rows[0]
    elapsed = (now - rate_start).total_seconds()
    return PipelineHealth(
        checked_at=now,
        last_commit_lsn=commit_lsn,
        acknowledged_lsn=end_lsn,
        last_commit_at=commit_time,
        last_commit_age_seconds=(
            None if commit_time is None else max(0.0, (now - commit_time).total_seconds())
        ),
        slot=slot,
        records_per_second=recent / max(elapsed, 1.0),
        records_last_hour=last_hour,
        dead_letters=_optional_count(store, sql.Identifier(schema, "dead_letters")),
        **_chain_head(store),
        **_last_verification(store),
    )


def _optional_count(store: Store, table: sql.Identifier) -> int | None:
    """Rows of a table the reader may be denied, or that an older store lacks: None then."""
    try:
        with store.conn.transaction():
            row = store.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
        return None
    return int(row[0]) if row else 0


def _chain_head(store: Store) -> dict[str, Any]:
    settings = store.settings
    head = sql.Identifier(settings.sink.schema_name, f"{settings.sink.table_name}_chain_head")
    try:
        with store.conn.transaction():
            row = store.conn.execute(
                sql.SQL("SELECT position, updated_at FROM {}").format(head)
            ).fetchone()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
        row = None
    if row is None:
        return {"chain_position": None, "chain_updated_at": None}
    return {"chain_position": int(row[0]), "chain_updated_at": row[1]}


def _last_verification(store: Store) -> dict[str, Any]:
    table = sql.Identifier(store.settings.sink.schema_name, "chain_verifications")
    try:
        with store.conn.transaction():
            row = store.conn.execute(
                sql.SQL(
                    "SELECT verified_at, intact, checked, problem FROM {} "
                    "ORDER BY verified_at DESC LIMIT 1"
                ).format(table)
            ).fetchone()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
        row = None
    if row is None:
        return {}
    verified_at, intact, checked, problem = row
    return {
        "chain_verified_at": verified_at,
        "chain_intact": intact,
        "chain_checked": int(checked),
        "chain_problem": problem,
    }
