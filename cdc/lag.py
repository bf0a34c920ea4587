"""How far behind the daemon is: WAL the slot retains, WAL not yet confirmed, and time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.errors import SlotNotFound
from cdc.provision import connect
from cdc.sqlfiles import sql_text


@dataclass(frozen=True)
class SlotLag:
    slot: str
    active: bool
    active_pid: int | None
    wal_status: str | None
    safe_wal_size: int | None
    restart_lsn: str | None
    confirmed_flush_lsn: str | None
    current_lsn: str
    retained_bytes: int | None
    unconfirmed_bytes: int | None
    last_recorded_commit_at: datetime | None
    seconds_since_last_recorded_commit: float | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.last_recorded_commit_at is not None:
            data["last_recorded_commit_at"] = self.last_recorded_commit_at.isoformat()
        return data


def slot_lag(settings: Settings) -> SlotLag:
    with connect(settings.source.dsn) as source:
        row = source.execute(
            sql_text("slot_lag.sql"),
            {"slot": settings.source.slot},
        ).fetchone()
    if row is None:
        raise SlotNotFound(
            f'replication slot "{settings.source.slot}" does not exist; run "cdc setup"'
        )
    commit_time = _last_recorded_commit(settings)
    age = (datetime.now(UTC) - commit_time).total_seconds() if commit_time else None
    return SlotLag(
        slot=row[0],
        active=row[1],
        active_pid=row[2],
        wal_status=row[3],
        safe_wal_size=row[4],
        restart_lsn=row[5],
        confirmed_flush_lsn=row[6],
        current_lsn=row[7],
        retained_bytes=row[8],
        unconfirmed_bytes=row[9],
        last_recorded_commit_at=commit_time,
        seconds_since_last_recorded_commit=age,
    )


def _last_recorded_commit(settings: Settings) -> datetime | None:
    with connect(settings.sink_dsn, role="sink") as sink:
        try:
            row = sink.execute(
                sql.SQL("SELECT commit_time FROM {}.checkpoints WHERE slot_name = %s").format(
                    sql.Identifier(settings.sink.schema_name)
                ),
                (settings.source.slot,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return row[0] if row else None
