"""``cdc stats``: how much activity, by source, category, severity, table or operation, over a
window, compared with the window of the same length before it, with a trend.

Everything is read from the rollups (migration 0004), never from the records: a breakdown of a
day costs the same at 1,000 and at 100 million records. A window of up to
``MINUTE_GRAIN_UP_TO`` is counted from the per-minute rollups, one of up to ``HOUR_GRAIN_UP_TO``
from the per-hour rollups, a longer one in UTC days from the per-day rollups (folded by ``cdc
partitions``; the days not folded yet from the per-hour ones); either way the window is whole
buckets, the last one being the bucket that holds "now" (so it is still filling up).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from cdc.store.reader import Store

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE_GRAIN_UP_TO = timedelta(hours=6)
HOUR_GRAIN_UP_TO = timedelta(days=7)
# UTC days as date_bin counts them (any midnight UTC will do as the origin)
DAY_ORIGIN = sql.SQL("'2000-01-01 00:00+00'::timestamptz")
TREND_POINTS = 48  # at most; buckets are merged into steps beyond that

# What a breakdown is by, as an expression over a rollup row.
DIMENSIONS: dict[str, sql.Composable] = {
    "source": sql.SQL("source"),
    "category": sql.SQL("category"),
    "severity": sql.SQL("severity"),
    "table": sql.SQL("CASE WHEN table_name = '' THEN '' ELSE schema_name || '.' || table_name END"),
    "operation": sql.SQL("operation"),
}
DEFAULT_DIMENSIONS = ("source", "category", "severity", "table")


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in whole buckets of ``grain``; the previous window is
    ``[previous_start, start)``, of the same length."""

    grain: timedelta
    start: datetime
    end: datetime
    previous_start: datetime

    @property
    def rollup_table(self) -> str:
        if self.grain == DAY:
            return "activity_per_day"
        return "activity_per_minute" if self.grain == MINUTE else "activity_per_hour"


def window_for(now: datetime, length: timedelta) -> Window:
    """The window of ``length`` that ends with the bucket holding ``now``."""
    if length <= timedelta(0):
        raise ValueError("the window must be longer than zero")
    grain = MINUTE if length <= MINUTE_GRAIN_UP_TO else HOUR if length <= HOUR_GRAIN_UP_TO else DAY
    now = now.astimezone(UTC)
    current = now.replace(second=0, microsecond=0)
    if grain != MINUTE:
        current = current.replace(minute=0)
    if grain == DAY:
        current = current.replace(hour=0)
    end = current + grain
    buckets = math.ceil(length / grain)
    start = end - buckets * grain
    return Window(grain, start, end, start - buckets * grain)


@dataclass(frozen=True, slots=True)
class Count:
    value: str  # '' for records without that attribute (no table)
    n: int
    previous: int  # in the previous window

    @property
    def change(self) -> float | None:
        """Relative change from the previous window (None when it had none)."""
        return (self.n - self.previous) / self.previous if self.previous else None


@dataclass(frozen=True)
class ActivityStats:
    window: Window
    total: int
    previous_total: int
    breakdowns: dict[str, list[Count]] = field(default_factory=dict)
    trend_step: timedelta = HOUR
    trend: list[tuple[datetime, int]] = field(default_factory=list)  # zero-filled

    @property
    def change(self) -> float | None:
        return Count("", self.total, self.previous_total).change

    def as_json(self) -> dict[str, Any]:
        w = self.window
        return {
            "window": {
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "previous_start": w.previous_start.isoformat(),
                "grain_seconds": int(w.grain.total_seconds()),
            },
            "total": self.total,
            "previous_total": self.previous_total,
            "change": self.change,
            "breakdowns": {
                name: [
                    {"value": c.value, "n": c.n, "previous": c.previous, "change": c.change}
                    for c in counts
                ]
                for name, counts in self.breakdowns.items()
            },
            "trend_step_seconds": int(self.trend_step.total_seconds()),
            "trend": [{"start": start.isoformat(), "n": n} for start, n in self.trend],
        }


def activity_stats(
    store: Store,
    length: timedelta,
    *,
    by: tuple[str, ...] = DEFAULT_DIMENSIONS,
    now: datetime | None = None,
) -> ActivityStats:
    """Totals, breakdowns and trend of the window of ``length`` ending now (the database's
    clock unless ``now`` is given)."""
    window = window_for(now or store.now(), length)
    rollups: sql.Composable = sql.Identifier(store.schema, window.rollup_table)
    if window.grain == DAY:
        rollups = per_day_rollups(store.schema)
    params = {"previous_start": window.previous_start, "start": window.start, "end": window.end}
    rows = store.fetch(breakdown_query(rollups, by), params)
    found: dict[str, list[Count]] = {name: [] for name in by}
    per_bucket: dict[datetime, int] = {}
    for row in rows:
        groupings, values = row[: len(by)], row[len(by) : 2 * len(by)]
        bucket, n, previous = row[2 * len(by) :]
        if 0 in groupings:  # a breakdown's row: grouped by that dimension alone
            index = groupings.index(0)
            found[by[index]].append(Count(values[index], n, previous))
        else:  # a bucket's row
            per_bucket[bucket] = n + previous
    breakdowns = {
        name: sorted(counts, key=lambda c: (-c.n, -c.previous, c.value))
        for name, counts in found.items()
    }
    total = sum(n for bucket, n in per_bucket.items() if bucket >= window.start)
    previous_total = sum(n for bucket, n in per_bucket.items() if bucket < window.start)
    step, trend = trend_of(window, per_bucket)
    return ActivityStats(window, total, previous_total, breakdowns, step, trend)


def per_day_rollups(schema: str) -> sql.Composed:
    """The per-day counts of the window: the folded days from the per-day rollups, the days
    after the last folded one (today, and any not folded yet) summed from the per-hour ones
    (cdc/control/daily_rollups.py). Each day from one of them, never both."""
    return sql.SQL(
        "(SELECT bucket, source, category, severity, schema_name, table_name, operation, n "
        "FROM {per_day} WHERE bucket >= %(previous_start)s AND bucket < %(end)s "
        "AND bucket < (SELECT max(bucket) + interval '1 day' FROM {per_day}) "
        "UNION ALL "
        "SELECT date_bin('1 day', bucket, {origin}), source, category, severity, schema_name, "
        "table_name, operation, n FROM {per_hour} "
        "WHERE bucket >= %(previous_start)s AND bucket < %(end)s "
        "AND bucket >= coalesce((SELECT max(bucket) + interval '1 day' FROM {per_day}), "
        "'-infinity')) AS rollups"
    ).format(
        per_day=sql.Identifier(schema, "activity_per_day"),
        per_hour=sql.Identifier(schema, "activity_per_hour"),
        origin=DAY_ORIGIN,
    )


def breakdown_query(rollups: sql.Composable, by: tuple[str, ...]) -> sql.Composed:
    """Every breakdown and the per-bucket counts in one scan of the rollups (GROUPING SETS):
    ``GROUPING(d)`` of each dimension (0 on that dimension's rows), the dimensions' values,
    the bucket, then the counts in the window and in the window before."""
    dimensions = [DIMENSIONS[name] for name in by]
    sets = [sql.SQL("({})").format(d) for d in dimensions] + [sql.SQL("(bucket)")]
    columns = [sql.SQL("GROUPING({})").format(d) for d in dimensions] + dimensions
    return sql.SQL(
        "SELECT {columns}bucket, "
        "coalesce(sum(n) FILTER (WHERE bucket >= %(start)s), 0)::bigint, "
        "coalesce(sum(n) FILTER (WHERE bucket < %(start)s), 0)::bigint "
        "FROM {rollups} WHERE bucket >= %(previous_start)s AND bucket < %(end)s "
        "GROUP BY GROUPING SETS ({sets})"
    ).format(
        columns=sql.SQL("").join(sql.SQL("{}, ").format(c) for c in columns),
        rollups=rollups,
        sets=sql.SQL(", ").join(sets),
    )


def trend_of(
    window: Window, per_bucket: dict[datetime, int]
) -> tuple[timedelta, list[tuple[datetime, int]]]:
    """Counts of the window in at most TREND_POINTS steps of whole buckets, zero-filled."""
    buckets = round((window.end - window.start) / window.grain)
    step = window.grain * math.ceil(buckets / TREND_POINTS)
    counts: Counter[datetime] = Counter()
    for bucket, n in per_bucket.items():
        if window.start <= bucket < window.end:
            counts[window.start + ((bucket - window.start) // step) * step] += n
    starts = []
    moment = window.start
    while moment < window.end:
        starts.append(moment)
        moment += step
    return step, [(start, counts[start]) for start in starts]
