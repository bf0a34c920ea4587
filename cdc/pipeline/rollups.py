"""Rollups: how many records per UTC minute and per UTC hour, by source, category, severity,
table and operation, for dashboards and ``cdc stats``.

Kept incrementally by the sink: after the COPY of a flush, the flush's counts
(:func:`upsert_parameters`) are added by the statement that also moves the chain's head and
stores the checkpoint (``sql/store/flush_end.sql``), in the same sink transaction. The counts
therefore commit or roll back together with the records they count:

* a flush with a checkpoint commits records, counts and checkpoint at once;
* the chunks of a large source transaction are flushed without a checkpoint into one open sink
  transaction, each chunk adding its counts; a crash before the last chunk rolls back all of
  them, and the whole source transaction is replayed and counted again, once;
* a transaction at or below the checkpoint is skipped by the daemon, so it is never counted
  twice.

:func:`count_records` is pure (records → counts) so it is unit-tested without a database.
Records written to the store by other means than the sink are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from cdc.pipeline.activity import ActivityRecord

# bucket, source, category, severity, schema_name, table_name, operation ('' for no table)
RollupKey = tuple[datetime, str, str, str, str, str, str]

# The fields a record is counted by besides its time, taken in one C-level call per record.
_DIMENSIONS = itemgetter(
    *(
        ActivityRecord._fields.index(name)
        for name in ("source", "category", "severity", "schema_name", "table_name", "operation")
    )
)
_OCCURRED_AT = ActivityRecord._fields.index("occurred_at")


@dataclass(frozen=True, slots=True)
class RollupCounts:
    """The counts of some records, keyed by the start of their UTC minute and hour."""

    per_minute: dict[RollupKey, int]
    per_hour: dict[RollupKey, int]


def buckets(occurred_at: str) -> tuple[datetime, datetime]:
    """The starts of the UTC minute and hour of an ISO 8601 time (naive means UTC)."""
    moment = datetime.fromisoformat(occurred_at)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    minute = moment.replace(second=0, microsecond=0)
    return minute, minute.replace(minute=0)


def count_records(records: Iterable[ActivityRecord]) -> RollupCounts:
    """Per-minute and per-hour counts of the records."""
    # Counted by (minute, dimensions) in C (Counter over zipped keys): the per-record Python
    # work is one slice. A commit time as the mapper writes it ("2026-11-26T10:00:00.123+00:00",
    # UTC) names its minute in its first 16 characters; any other text (an application event's
    # own time, another offset) is kept whole and parsed once per distinct value.
    records = records if isinstance(records, list) else list(records)
    minutes = [
        text[:16] if text.endswith("+00:00") else text
        for text in map(itemgetter(_OCCURRED_AT), records)
    ]
    counted = Counter(zip(minutes, map(_DIMENSIONS, records), strict=True))
    per_minute: dict[RollupKey, int] = {}
    per_hour: dict[RollupKey, int] = {}
    seen: dict[str, tuple[datetime, datetime]] = {}
    for (minute_text, dimensions), n in counted.items():
        found = seen.get(minute_text)
        if found is None:
            found = seen[minute_text] = (
                _utc_minute(minute_text) if len(minute_text) == 16 else buckets(minute_text)
            )
        minute, hour = found
        if dimensions[3] is None or dimensions[4] is None:  # an event: '' for no table
            source, category, severity, schema, table, operation = dimensions
            dimensions = (source, category, severity, schema or "", table or "", operation)
        key = (minute, *dimensions)
        per_minute[key] = per_minute.get(key, 0) + n
        key = (hour, *dimensions)
        per_hour[key] = per_hour.get(key, 0) + n
    return RollupCounts(per_minute, per_hour)


def _utc_minute(text: str) -> tuple[datetime, datetime]:
    """``YYYY-MM-DDTHH:MM`` (UTC) → the starts of its minute and hour."""
    minute = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return minute, minute.replace(minute=0)


_COLUMNS = ("bucket", "source", "category", "severity", "schema_name", "table_name", "operation")


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of ``values`` (text, ints, or datetimes as ISO 8601), every
    element quoted: ``'{"a","b \\"c\\""}'``. The statement casts it (``%(m_source)s::text[]``),
    so the server reads it with ``array_in`` as it would read psycopg's own text dump of a
    list, while the daemon builds it with one join instead of a dumper call per element
    (psycopg's list dumping was ~30% of the sink thread's CPU under a trickle)."""
    texts = [value.isoformat() if isinstance(value, datetime) else str(value) for value in values]
    return _quoted(texts)


def _quoted(texts: list[str]) -> str:
    """:func:`array_literal` of texts: joined at once when none holds a quote or a backslash
    (the common case: names and numbers), escaped one by one otherwise."""
    if not texts:
        return "{}"
    whole = "".join(texts)
    if "\\" in whole or '"' in whole:
        texts = [text.replace("\\", "\\\\").replace('"', '\\"') for text in texts]
    return '{"' + '","'.join(texts) + '"}'


def _literals(counts: Mapping[RollupKey, int], prefix: str) -> dict[str, str]:
    """The counts as one array literal per column (:func:`array_literal` of each column's
    values, in the counts' order): the columns transposed in C, each bucket's text made once."""
    if not counts:
        return {f"{prefix}{name}": "{}" for name in (*_COLUMNS, "n")}
    buckets, *dimensions = zip(*counts, strict=True)
    iso = {bucket: bucket.isoformat() for bucket in set(buckets)}
    literals = {f"{prefix}bucket": _quoted([iso[bucket] for bucket in buckets])}
    for name, column in zip(_COLUMNS[1:], dimensions, strict=True):
        literals[f"{prefix}{name}"] = _quoted(list(column))
    literals[f"{prefix}n"] = _quoted(list(map(str, counts.values())))
    return literals


def upsert_parameters(records: list[ActivityRecord]) -> dict[str, str]:
    """The records' counts as the parameters of ``store/flush_end.sql`` (pure): one array
    literal per column; no records, empty arrays: nothing is added."""
    counts = count_records(records)
    return {**_literals(counts.per_minute, "m_"), **_literals(counts.per_hour, "h_")}
