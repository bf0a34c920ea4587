"""Partition maintenance of the activity store (``cdc partitions``): create monthly partitions
ahead, and remove the months past the retention, optionally exporting each one first.

The records table is partitioned by UTC month of ``occurred_at`` (migrations 0001 and 0003); a
DEFAULT partition catches records of months without a partition, so the sink never fails for
want of one, and ``ensure_partitions`` moves them into their month when it is created. Run this
daily (cron, a systemd timer): it is idempotent, and does nothing when nothing is due.

Removing a month is DDL, never DELETE (the records are append-only, migration 0002):

1. detach the partition, in a short transaction that also marks it with a comment;
2. export it, if asked, to ``<dir>/<schema>.<partition>.csv`` (written aside, fsynced, then
   renamed into place);
3. drop it.

A run that dies after step 1 leaves a marked, detached table; the next run finds it and
finishes steps 2 and 3 before anything else. Locks are short (detaching takes the parent's
ACCESS EXCLUSIVE lock for a catalog update; the export reads the detached table), and every
lock wait is bounded by ``LOCK_TIMEOUT`` so that maintenance never queues the sink and the
readers behind it for long.

The per-minute rollups are kept ``minute_rollups_days`` days; the per-hour and per-day rollups
as long as the records. Each run folds the closed days into the per-day rollups
(:mod:`cdc.control.daily_rollups`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect, server_message
from cdc.control.daily_rollups import closed_days_end, fold_days, stale_days
from cdc.errors import ConfigError, SinkError

log = logging.getLogger("cdc.partitions")  # log lines keep the name they had

LOCK_TIMEOUT = "10s"
DETACHED_MARK = "activity-cdc: detached past the retention; cdc partitions exports and drops it"


# What reading a store that "cdc setup" has not (fully) made raises.
_STORE_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)


@dataclass(frozen=True, slots=True)
class Partition:
    schema: str
    name: str
    from_at: datetime | None  # None: the default partition
    to_at: datetime | None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass
class PartitionPlan:
    """What a run does, computed from the catalog without changing anything."""

    table: str
    now: datetime
    ahead: int
    create: list[str] = field(default_factory=list)  # partitions to create
    remove: list[Partition] = field(default_factory=list)  # past the retention, oldest first
    leftovers: list[Partition] = field(default_factory=list)  # detached by an interrupted run
    cutoff: datetime | None = None  # records before it are past the retention
    minute_rollups_before: datetime | None = None
    fold_before: datetime | None = None  # closed days: folded into the per-day rollups
    fold: list[datetime] = field(default_factory=list)  # days whose per-day rollups are stale
    default_rows: int = 0  # records in the default partition outside the months created

    @property
    def notes(self) -> list[str]:
        if not self.default_rows:
            return []
        return [
            f"the default partition holds {self.default_rows} record(s) of months without a "
            "partition of their own; ensure_partitions moves them when it creates their month"
        ]

    def describe(self) -> list[str]:
        lines = [f"create partition {name}" for name in self.create]
        lines += [
            f"export and drop {p.qualified} (detached by an interrupted run)"
            for p in self.leftovers
        ]
        lines += [
            f"detach and drop {p.qualified} ({_month(p)}, before {self.cutoff:%Y-%m-%d})"
            for p in self.remove
        ]
        if self.fold:
            lines.append(
                f"fold the per-hour rollups of {len(self.fold)} closed day(s) "
                f"({self.fold[0]:%Y-%m-%d} .. {self.fold[-1]:%Y-%m-%d}) into per-day rollups"
            )
        return lines


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def partition_name(table: str, start: datetime) -> str:
    """The name ensure_partitions (migration 0003) gives the month starting at ``start``."""
    return f"{table[:50]}_{start:%Y_%m}"


def plan_maintenance(
    settings: Settings,
    *,
    ahead: int,
    retention_months: int | None,
    now: datetime | None = None,
) -> PartitionPlan:
    """What :func:`apply_maintenance` would do now; changes nothing."""
    with connect(settings.sink_dsn, role="sink") as conn, _store_errors(settings):
        return _plan(conn, settings, ahead, retention_months, now)


def apply_maintenance(
    settings: Settings, the_plan: PartitionPlan, *, export_dir: Path | None = None
) -> Iterator[str]:
    """Do it, saying what was done as it is done: finish leftovers, create ahead, remove the
    months past the retention (exporting each first when ``export_dir`` is given), prune the
    rollups. A failure raises after the lines of what was already done."""
    if export_dir is not None:
        _check_directory(export_dir)
    parent = sql.Identifier(settings.sink.schema_name, settings.sink.table_name)
    schema = sql.Identifier(settings.sink.schema_name)
    with connect(settings.sink_dsn, role="sink") as conn, _store_errors(settings):
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        for partition in the_plan.leftovers:
            yield from _export_and_drop(conn, partition, export_dir)
        created = conn.execute(
            sql.SQL("SELECT * FROM {}.ensure_partitions(%s)").format(schema), (the_plan.ahead,)
        ).fetchall()
        for (name,) in created:
            yield f"created partition {name}"
        for partition in the_plan.remove:
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, partition.ident)
                )
                conn.execute(
                    sql.SQL("COMMENT ON TABLE {} IS {}").format(
                        partition.ident, sql.Literal(DETACHED_MARK)
                    )
                )
            yield f"detached {partition.qualified} ({_month(partition)})"
            yield from _export_and_drop(conn, partition, export_dir)
        yield from _prune_rollups(conn, schema, the_plan)
        if the_plan.fold_before is not None:
            yield from fold_days(conn, settings.sink.schema_name, the_plan.fold_before)


def _plan(
    conn: psycopg.Connection[Any],
    settings: Settings,
    ahead: int,
    retention_months: int | None,
    now: datetime | None,
) -> PartitionPlan:
    schema, table = settings.sink.schema_name, settings.sink.table_name
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    assert now is not None
    partitions = [
        Partition(*row[:4])
        for row in conn.execute(
            sql.SQL("SELECT * FROM {}.record_partitions()").format(sql.Identifier(schema))
        )
    ]
    result = PartitionPlan(settings.sink.table, now, ahead)
    months = [p for p in partitions if p.from_at is not None]
    default = next((p for p in partitions if p.from_at is None), None)
    if default is None:
        result.create.append(f"{schema}.{table[:50]}_default")
    first = month_start(now)
    for i in range(ahead + 1):
        lower, upper = add_months(first, i), add_months(first, i + 1)
        if not any(_overlaps(p, lower, upper) for p in months):
            result.create.append(f"{schema}.{partition_name(table, lower)}")
    if retention_months is not None:
        result.cutoff = add_months(first, -retention_months)
        result.remove = [p for p in months if p.to_at is not None and p.to_at <= result.cutoff]
    result.leftovers = [
        Partition(nsp, name, None, None)
        for nsp, name in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition "
            "AND obj_description(c.oid, 'pg_class') = %s ORDER BY 2",
            (schema, DETACHED_MARK),
        )
    ]
    if default is not None:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(default.ident)).fetchone()
        result.default_rows = int(row[0]) if row else 0
    result.minute_rollups_before = now - timedelta(days=settings.store.minute_rollups_days)
    result.fold_before = closed_days_end(now)
    result.fold = stale_days(conn, schema, result.fold_before)
    return result


def _overlaps(p: Partition, lower: datetime, upper: datetime) -> bool:
    assert p.from_at is not None and p.to_at is not None
    return p.from_at < upper and p.to_at > lower


def _month(p: Partition) -> str:
    return f"{p.from_at:%Y-%m}" if p.from_at is not None else "default"


def _export_and_drop(
    conn: psycopg.Connection[Any], partition: Partition, export_dir: Path | None
) -> Iterator[str]:
    if export_dir is not None:
        path, rows = export_table(conn, partition, export_dir)
        yield f"exported {rows} records of {partition.qualified} to {path}"
    conn.execute(sql.SQL("DROP TABLE {}").format(partition.ident))
    yield f"dropped {partition.qualified}"


def export_table(
    conn: psycopg.Connection[Any], partition: Partition, directory: Path
) -> tuple[Path, int]:
    """The table as CSV with a header, in ``directory``; written aside, fsynced and renamed, so
    the file is either complete or absent. Returns the path and the number of rows."""
    safe = re.sub(r"[^\w.-]", "_", f"{partition.schema}.{partition.name}")
    target = directory / f"{safe}.csv"
    partial = directory / f".{safe}.csv.partial"
    statement = sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv, HEADER true)").format(partition.ident)
    try:
        with partial.open("wb") as out, conn.cursor() as cur:
            with cur.copy(statement) as copy:
                for block in copy:
                    out.write(block)
            rows = cur.rowcount
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        _fsync_directory(directory)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the export of {partition.qualified} to {target}: {exc.strerror}; "
            f'{partition.qualified} is kept; fix it and run "cdc partitions" again'
        ) from None
    log.info("exported %d rows of %s to %s", rows, partition.qualified, target)
    return target, rows


def _prune_rollups(
    conn: psycopg.Connection[Any], schema: sql.Identifier, the_plan: PartitionPlan
) -> Iterator[str]:
    for table, before, which in (
        ("activity_per_minute", the_plan.minute_rollups_before, "per-minute"),
        ("activity_per_hour", the_plan.cutoff, "per-hour"),
        ("activity_per_day", the_plan.cutoff, "per-day"),
    ):
        if before is None:
            continue
        cur = conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE bucket < %s").format(schema, sql.Identifier(table)),
            (before,),
        )
        if cur.rowcount:
            yield f"deleted {cur.rowcount} {which} rollup rows before {before:%Y-%m-%d %H:%M} UTC"


def _check_directory(directory: Path) -> None:
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"--export-dir {directory}: not a writable directory; create it first")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _store_errors(settings: Settings) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.LockNotAvailable:
        raise SinkError(
            f"could not lock {settings.sink.table} within {LOCK_TIMEOUT} (a long transaction "
            'is using it); what was reported as done is done; run "cdc partitions" again later'
        ) from None
    except _STORE_MISSING as exc:
        raise SinkError(
            f"the activity store {settings.sink.table} is missing or older than this version "
            f'({(exc.diag.message_primary or "").strip()}); run "cdc setup"'
        ) from None
    except psycopg.Error as exc:
        message = server_message(exc)
        raise SinkError(
            f"partition maintenance of {settings.sink.table} failed: {message}"
        ) from None
