"""The per-day rollups (migration 0023): each closed UTC day's counts, folded from the per-hour
rollups by ``cdc partitions`` (the maintenance operators already run daily), so that a 30-day
statistic reads 30 rows per key instead of 720 (:mod:`cdc.store.stats`).

Folded by maintenance rather than by the sink: nothing is added to the sink's transaction (the
hot path), and the daemon's role needs no new privilege. The price: a record recorded for a day
already folded (a backlog older than a day, a backfill, ``cdc ingest`` catching up) counts in
the per-hour rollups at once but in its day only after the next fold; the fold finds every such
day by its total and folds it again. Readers take the per-day rows before the last folded day's
end and the per-hour rows after it: no day is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from cdc.sqlfiles import sql_template

DAY = timedelta(days=1)


def stale_days(conn: psycopg.Connection[Any], schema: str, before: datetime) -> list[datetime]:
    """The UTC days before ``before`` whose per-day rollups are not their per-hour ones summed
    (never folded, counted late, or pruned from the per-hour rollups)."""
    query = sql_template("store/daily_rollups_stale.sql", schema=schema)
    return [row[0] for row in conn.execute(query, {"before": before})]


def fold_days(conn: psycopg.Connection[Any], schema: str, before: datetime) -> Iterator[str]:
    """(Re)fold every stale day before ``before`` (a UTC day start), in one transaction; says
    what it did. Run by the store's owner (``cdc partitions``)."""
    with conn.transaction():
        days = stale_days(conn, schema, before)
        if not days:
            return
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE bucket = ANY(%s)").format(
                sql.Identifier(schema, "activity_per_day")
            ),
            [days],
        )
        cur = conn.execute(
            sql_template("store/daily_rollups_fold.sql", schema=schema),
            {"days": days, "first": days[0], "end": days[-1] + DAY},
        )
    span = f"{days[0]:%Y-%m-%d}" + (f" .. {days[-1]:%Y-%m-%d}" if len(days) > 1 else "")
    yield (
        f"folded the per-hour rollups of {len(days)} day(s) ({span}) into {cur.rowcount} "
        "per-day rollup rows"
    )


def closed_days_end(now: datetime) -> datetime:
    """The start of ``now``'s UTC day: every day before it is closed."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
