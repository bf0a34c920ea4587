"""How far behind the daemon is: WAL the slot retains, WAL not yet confirmed, and time.

:func:`slot_lag` takes one sample; :func:`over_thresholds` judges it against the limits of
``cdc lag --max-bytes/--max-seconds``; :func:`watch` samples repeatedly (``--watch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.errors import SlotNotFound
from cdc.human import human_bytes, human_seconds
from cdc.pipeline.jetstream_lag import JetStreamLag, jetstream_lag
from cdc.pipeline.jetstream_messages import checkpoint_key
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
    # [sink] kind = "jetstream": the stream and its consumers (the last recorded commit is
    # then the last one stored in the stream, from the bucket's checkpoint).
    jetstream: JetStreamLag | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.last_recorded_commit_at is not None:
            data["last_recorded_commit_at"] = self.last_recorded_commit_at.isoformat()
        data["jetstream"] = self.jetstream.as_json() if self.jetstream is not None else None
        return data

    def describe(self) -> list[str]:
        """The sample as a few lines of text (``cdc lag``)."""
        age = self.seconds_since_last_recorded_commit
        activity = f"active (pid {self.active_pid})" if self.active else "inactive"
        last = (
            f"{self.last_recorded_commit_at.isoformat()} ({human_seconds(age)} ago)"
            if self.last_recorded_commit_at is not None and age is not None
            else "none yet"
        )
        return [
            f"slot {self.slot}: {activity}, wal_status {self.wal_status}",
            f"  unconfirmed: {human_bytes(self.unconfirmed_bytes)} "
            f"(confirmed {self.confirmed_flush_lsn}, server at {self.current_lsn})",
            f"  retained:    {human_bytes(self.retained_bytes)} (restart {self.restart_lsn})",
            f"  last recorded commit: {last}",
        ] + (self.jetstream.describe() if self.jetstream is not None else [])

    def summary(self, at: datetime | None = None) -> str:
        """The sample as one line, prefixed with the time it was taken (``cdc lag --watch``)."""
        at = at or datetime.now(UTC)
        age = self.seconds_since_last_recorded_commit
        return (
            f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')} slot {self.slot} "
            f"{'active pid ' + str(self.active_pid) if self.active else 'inactive'} "
            f"unconfirmed {human_bytes(self.unconfirmed_bytes)} "
            f"retained {human_bytes(self.retained_bytes)} "
            f"last commit {'never' if age is None else human_seconds(age) + ' ago'} "
            f"wal_status {self.wal_status}"
            + (_jetstream_summary(self.jetstream) if self.jetstream is not None else "")
        )


def _jetstream_summary(lag: JetStreamLag) -> str:
    if lag.error is not None:
        return f" jetstream {lag.stream} unavailable"
    pending = sum(c.pending_messages + c.ack_pending for c in lag.consumers)
    return f" jetstream {lag.stream} last {lag.last_seq} consumers pending {pending}"


def over_thresholds(
    lag: SlotLag, *, max_bytes: int | None = None, max_seconds: float | None = None
) -> list[str]:
    """Why this sample is over the limits (empty: it is not). No recorded commit at all counts
    as over ``max_seconds``."""
    over = []
    if max_bytes is not None and (lag.unconfirmed_bytes or 0) > max_bytes:
        over.append(
            f"unconfirmed {human_bytes(lag.unconfirmed_bytes)} ({lag.unconfirmed_bytes} bytes) "
            f"> {max_bytes} bytes"
        )
    if max_seconds is not None:
        age = lag.seconds_since_last_recorded_commit
        if age is None or age > max_seconds:
            shown = "never" if age is None else f"{human_seconds(age)} ago"
            over.append(f"last recorded commit {shown} > {human_seconds(max_seconds)}")
    return over


def watch(
    settings: Settings,
    interval_s: float,
    *,
    count: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[SlotLag]:
    """A sample every ``interval_s`` seconds, ``count`` times (None: until the caller stops)."""
    taken = 0
    while count is None or taken < count:
        if taken:
            sleep(interval_s)
        yield slot_lag(settings)
        taken += 1


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
    jetstream = None
    if settings.sink.kind == "jetstream":
        jetstream = jetstream_lag(settings.sink, checkpoint_key(row[10], settings.source.slot))
        commit_time = jetstream.published_commit_time
    else:
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
        jetstream=jetstream,
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
